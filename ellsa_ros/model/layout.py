"""Token layout of the streaming time blocks, and who may attend to whom.

One stream: a prompt prefix, then per block

    <bos>[speech]<eos> <boi>[image][state]<eoi> <bot>[text | <silence>]<eot> <boa>[action | <noop>]<eoa>

The unified vocabulary is [special tokens][text BPE][action BPE]. Speech is either ASR text
tokens or `<audio>` slots filled by the audio encoder; images and state are `<img>`/`<state>`
slots filled by their encoders, with `<no_img>`/`<no_state>` when a modality is missing; the
continuous action head reads `<act_q>` slots. What the robot actually said, when it differs
from what the model generated (cut off, or spoken by someone else), enters the speech segment
after `<robot>`.

With a sentence encoder (`sentence_dim` > 0) a block that heard something also gets one `<sent>`
slot after the heard text, filled with the projected sentence embedding of that text. It is
kept by the collapse like the heard text itself, so an instruction's meaning stays visible after
its block aged out. `<sent>` is the last id of the vocabulary, present only with the encoder:
the ids of every other token are the same with and without it, and so are old checkpoints.

Collapse (as an attention mask, so that streaming equals a full forward pass): a query in
block q sees all tokens of blocks q-K+1..q; of older blocks only the markers and the text
(heard and said), at most `history_tokens` of them, oldest out first; the prompt always.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import SEGMENT_KINDS, ModelConfig

SPECIALS = ("<pad>", "<bos>", "<eos>", "<boi>", "<eoi>", "<bot>", "<eot>", "<boa>", "<eoa>", "<silence>", "<noop>",
            "<reject>", "<cancel>", "<done>", "<img>", "<no_img>", "<state>", "<no_state>", "<audio>", "<act_q>",
            "<robot>", "<prompt>")
SPECIAL_ID = {name: i for i, name in enumerate(SPECIALS)}
CONTROLS = ("<reject>", "<cancel>", "<done>")
MARKERS = ("<bos>", "<eos>", "<boi>", "<eoi>", "<bot>", "<eot>", "<boa>", "<eoa>", "<prompt>", "<robot>")

# what survives when a block ages out of the last K
DROP, KEEP, ALWAYS = 0, 1, 2
# feature sources of slot tokens
NO_FEATURE, IMAGE, STATE, AUDIO, QUERY, SENTENCE = 0, 1, 2, 3, 4, 5
KIND = {name: i for i, name in enumerate(SEGMENT_KINDS)}
PROMPT_BLOCK = -1


class Vocab:
    """Id ranges of the unified vocabulary: [specials][text][action], then `<sent>` (the sentence
    slot) when the model has a sentence encoder."""

    def __init__(self, c: ModelConfig) -> None:
        self.text_base = len(SPECIALS)
        self.action_base = self.text_base + c.text_vocab_size
        self.action_end = self.action_base + c.action_vocab_size
        self.sentence: int | None = self.action_end if c.sentence_dim else None
        self.size = self.action_end + (1 if c.sentence_dim else 0)

    def text(self, ids) -> np.ndarray:
        return np.asarray(ids, dtype=np.int64) + self.text_base

    def action(self, ids) -> np.ndarray:
        return np.asarray(ids, dtype=np.int64) + self.action_base

    def is_text(self, i: int) -> bool:
        return self.text_base <= i < self.action_base

    def is_action(self, i: int) -> bool:
        return self.action_base <= i < self.action_end


@dataclass
class Segment:
    """A run of tokens with everything needed to embed and mask them. All arrays (T,)."""
    ids: np.ndarray
    kind: np.ndarray     # index into SEGMENT_KINDS (decides the expert)
    keep: np.ndarray     # DROP / KEEP / ALWAYS
    block: np.ndarray    # block index, PROMPT_BLOCK for the prompt
    src: np.ndarray      # feature source (NO_FEATURE, IMAGE, ...)
    row: np.ndarray      # row within that source's features for this block

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, sel: slice) -> Segment:
        return Segment(self.ids[sel], self.kind[sel], self.keep[sel], self.block[sel], self.src[sel], self.row[sel])

    @staticmethod
    def concat(parts: list[Segment]) -> Segment:
        return Segment(*(np.concatenate([getattr(p, f) for p in parts]) for f in
                         ("ids", "kind", "keep", "block", "src", "row")))


def tokens(ids, kind: str, block: int, keep=KEEP, src=NO_FEATURE, row=None) -> Segment:
    """A segment of given ids (special names or ints), all of one kind."""
    ids = np.asarray([SPECIAL_ID[i] if isinstance(i, str) else int(i) for i in ids], dtype=np.int64)
    n = len(ids)
    keep_arr = np.asarray(keep, dtype=np.int64) if np.ndim(keep) else np.full(n, keep, dtype=np.int64)
    return Segment(ids, np.full(n, KIND[kind], dtype=np.int64), keep_arr, np.full(n, block, dtype=np.int64),
                   np.full(n, src, dtype=np.int64), np.zeros(n, np.int64) if row is None else np.asarray(row, np.int64))


def prompt_segment(prompt_ids: np.ndarray) -> Segment:
    return tokens(["<prompt>", *prompt_ids], "prompt", PROMPT_BLOCK, keep=ALWAYS)


def block_input(c: ModelConfig, block: int, heard_ids: np.ndarray | None, audio_tokens: int,
                said_ids: np.ndarray | None, cameras_present: list[bool], state_present: bool,
                sentence: bool = False) -> Segment:
    """Speech and image segments of a block and the `<bot>` that opens its text output.

    heard_ids: text-vocabulary ids already offset (ASR path), or None on the audio path where
    `audio_tokens` `<audio>` slots are laid out instead; an empty speech segment is `<silence>`.
    sentence: the block heard text and the model embeds it: a kept `<sent>` slot follows it.
    """
    parts = [tokens(["<bos>"], "speech", block)]
    if heard_ids is not None and len(heard_ids):
        parts.append(tokens(heard_ids, "speech", block))
    elif heard_ids is None and audio_tokens:
        parts.append(tokens(["<audio>"] * audio_tokens, "speech", block, DROP, AUDIO, np.arange(audio_tokens)))
    else:
        parts.append(tokens(["<silence>"], "speech", block))
    if sentence:
        slot = Vocab(c).sentence
        if slot is None:
            raise ValueError("a sentence slot needs a model with a sentence encoder (sentence_dim > 0)")
        parts.append(tokens([slot], "speech", block, KEEP, SENTENCE, [0]))
    if said_ids is not None and len(said_ids):
        parts.append(tokens(["<robot>", *said_ids], "speech", block))
    parts += [tokens(["<eos>"], "speech", block), tokens(["<boi>"], "image", block)]
    for cam, present in enumerate(cameras_present):
        if present:
            n = c.image_tokens
            parts.append(tokens(["<img>"] * n, "image", block, DROP, IMAGE, cam * n + np.arange(n)))
        else:
            parts.append(tokens(["<no_img>"], "image", block, DROP))
    if state_present:
        parts.append(tokens(["<state>"], "state", block, DROP, STATE, [0]))
    else:
        parts.append(tokens(["<no_state>"], "state", block, DROP))
    parts.append(tokens(["<eoi>"], "image", block))
    parts.append(tokens(["<bot>"], "text", block))
    return Segment.concat(parts)


def text_output(block: int, ids: list[int]) -> Segment:
    """Text-out tokens (controls, text or `<silence>`) up to and including `<eot>`."""
    return tokens(list(ids), "text", block)


def action_output(c: ModelConfig, block: int, ids: list[int] | None, query: bool) -> Segment:
    """`<boa>`, then FAST ids, or `<act_q>` slots (continuous head), or `<noop>` (ids None), then `<eoa>`."""
    if ids is None:
        return tokens(["<boa>", "<noop>", "<eoa>"], "action", block)
    if query:
        body = tokens(["<act_q>"] * c.chunk, "action", block, DROP, QUERY, np.arange(c.chunk))
    else:
        body = tokens(ids, "action", block, DROP)
    return Segment.concat([tokens(["<boa>"], "action", block), body, tokens(["<eoa>"], "action", block)])


def experts(c: ModelConfig, kind: np.ndarray) -> np.ndarray:
    table = np.asarray([c.routing[k] for k in SEGMENT_KINDS], dtype=np.int64)
    return table[kind]


def visibility(q_block: np.ndarray, q_pos: np.ndarray, k_block: np.ndarray, k_keep: np.ndarray, k_pos: np.ndarray,
               keep_blocks: int, history_tokens: int) -> np.ndarray:
    """(T, S) bool: may the query at (block, position) attend to each key."""
    causal = k_pos[None, :] <= q_pos[:, None]
    recent = k_block[None, :] > (q_block[:, None] - keep_blocks)
    always = (k_keep == ALWAYS)[None, :]
    aged = np.zeros_like(causal)
    order = np.argsort(k_pos)
    for qb in np.unique(q_block):
        rows = q_block == qb
        candidate = (k_keep[order] == KEEP) & (k_block[order] <= qb - keep_blocks)
        newest_first = np.cumsum(candidate[::-1])[::-1]  # candidates at or after each key
        within = np.zeros(len(k_pos), dtype=bool)
        within[order] = candidate & (newest_first <= history_tokens)
        aged[rows] = within[None, :]
    return causal & (recent | always | aged)
