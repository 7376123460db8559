"""Teacher-forced training sequences: episodes of time blocks laid out exactly as streaming runs them.

An episode is a list of `BlockExample`; `episode_segment` lays it out (prompt, then each
block's input, text output and action output) with the same builders the policy streams with,
and `collate` pads episodes into a `TrainingBatch` with the collapse mask of layout.visibility.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .config import ModelConfig
from .fast import FastTokenizer
from .layout import (
    AUDIO,
    IMAGE,
    QUERY,
    SENTENCE,
    SPECIAL_ID,
    STATE,
    Segment,
    Vocab,
    action_output,
    block_input,
    experts,
    prompt_segment,
    text_output,
    visibility,
)


@dataclass
class BlockExample:
    """One block of an episode. Ids are 0-based in their own tokenizer's vocabulary."""
    heard_ids: list[int] | None = None        # ASR path; None with `mel` for the audio path
    mel: np.ndarray | None = None             # (MEL_CONTEXT + F, n_mels) from AudioStream.push
    sentence: np.ndarray | None = None        # (sentence_dim,) embedding of the heard text; None: heard nothing
    said_ids: list[int] = field(default_factory=list)
    images: np.ndarray | None = None          # (n_cam, S, S, 3) uint8, all cameras present
    state: np.ndarray | None = None           # (state_dim,) float32
    controls: tuple[str, ...] = ()            # "<reject>", "<cancel>", "<done>"
    text_ids: list[int] = field(default_factory=list)  # what to say; empty is <silence>
    actions: np.ndarray | None = None         # (chunk, dof) target; None is <noop>
    action_ids: list[int] | None = None       # FAST ids of `actions` when already tokenized (a replayed episode)


@dataclass
class TrainingBatch:
    ids: torch.Tensor            # (B, T) int64
    experts: torch.Tensor        # (B, T) int64
    positions: torch.Tensor      # (B, T) int64
    mask: torch.Tensor           # (B, T, T) bool
    feature_index: torch.Tensor  # (B, T) int64 rows of the feature table (0: none)
    targets: torch.Tensor        # (B, T) next token to predict, -100 where none
    target_is_action: torch.Tensor  # (B, T) bool
    images: torch.Tensor         # (N, n_cam, S, S, 3) float
    states: torch.Tensor         # (N, state_dim)
    mels: list[torch.Tensor]     # per audio block (MEL_CONTEXT + F, n_mels)
    sentences: torch.Tensor      # (K, sentence_dim) sentence embeddings, one per block that has one
    chunk_slots: torch.Tensor    # (M, chunk) flat (B*T) indices of <act_q> tokens
    chunk_targets: torch.Tensor  # (M, chunk, dof)


@dataclass
class EpisodeLayout:
    """An episode's blocks laid out; only blocks from `loss_from` on are taught (the earlier
    ones are the context the streaming policy would hold when it answers them)."""
    seg: Segment
    targets: np.ndarray
    target_is_action: np.ndarray
    blocks: list[BlockExample]
    loss_from: int = 0


def episode_segment(c: ModelConfig, prompt_ids: list[int], blocks: list[BlockExample],
                    fast: FastTokenizer | None, loss_from: int = 0) -> EpisodeLayout:
    vocab = Vocab(c)
    parts = [prompt_segment(vocab.text(prompt_ids))]
    targets, is_action = [np.full(len(parts[0]), -100)], [np.zeros(len(parts[0]), bool)]
    for b, ex in enumerate(blocks):
        n_audio = 0 if ex.mel is None else (len(ex.mel) - 2) // c.mel_frames_per_token
        heard = None if ex.heard_ids is None else vocab.text(ex.heard_ids)
        if ex.sentence is not None and c.sentence_dim and np.shape(ex.sentence) != (c.sentence_dim,):
            raise ValueError(f"block {b}: sentence embedding of shape {np.shape(ex.sentence)}, the model reads "
                             f"({c.sentence_dim},)")
        inp = block_input(c, b, heard, n_audio, vocab.text(ex.said_ids), [ex.images is not None] * len(c.cameras),
                          ex.state is not None, sentence=ex.sentence is not None)
        text_ids = [SPECIAL_ID[x] for x in ex.controls] + (list(vocab.text(ex.text_ids)) or [SPECIAL_ID["<silence>"]])
        text = text_output(b, text_ids + [SPECIAL_ID["<eot>"]])
        query = c.action_head == "continuous"
        act_ids = None
        if ex.actions is not None:
            fast_ids = ex.action_ids if ex.action_ids is not None or query else fast.encode(ex.actions)
            act_ids = [] if query else list(vocab.action(fast_ids))
        act = action_output(c, b, act_ids, query)
        parts += [inp, text, act]
        # <bot> (last input token) predicts the first text token; the text predicts through <eot>
        t = np.full(len(inp) + len(text) + len(act), -100)
        t[len(inp) - 1:len(inp) - 1 + len(text)] = text.ids
        a = len(inp) + len(text)  # <boa>
        predicted = act.ids[1:] if not query or ex.actions is None else act.ids[1:2]
        t[a:a + len(predicted)] = predicted
        if b < loss_from:
            t[:] = -100
        targets.append(t)
        flag = np.zeros(len(t), bool)
        flag[a:] = True
        is_action.append(flag)
    return EpisodeLayout(Segment.concat(parts), np.concatenate(targets), np.concatenate(is_action), blocks,
                         loss_from)


def collate(c: ModelConfig, episodes: list[EpisodeLayout]) -> TrainingBatch:
    B, T = len(episodes), max(len(e.seg) for e in episodes)
    ids = np.full((B, T), SPECIAL_ID["<pad>"], np.int64)
    exp, pos, fidx = np.zeros((B, T), np.int64), np.tile(np.arange(T), (B, 1)), np.zeros((B, T), np.int64)
    targets, is_act = np.full((B, T), -100, np.int64), np.zeros((B, T), bool)
    mask = np.zeros((B, T, T), bool)
    mask[:, np.arange(T), np.arange(T)] = True  # padding sees itself only
    images = [ex.images for e in episodes for ex in e.blocks if ex.images is not None]
    states = [ex.state for e in episodes for ex in e.blocks if ex.state is not None]
    mels = [ex.mel for e in episodes for ex in e.blocks if ex.mel is not None]
    sentences = [ex.sentence for e in episodes for ex in e.blocks if ex.sentence is not None]
    n_img_rows = len(images) * len(c.cameras) * c.image_tokens
    base = {IMAGE: 1, STATE: 1 + n_img_rows, AUDIO: 1 + n_img_rows + len(states)}
    base[SENTENCE] = base[AUDIO] + sum((len(m) - 2) // c.mel_frames_per_token for m in mels)
    base[QUERY] = base[SENTENCE] + len(sentences)
    counters = {IMAGE: 0, STATE: 0, AUDIO: 0, SENTENCE: 0}
    slots, chunk_targets = [], []
    for i, e in enumerate(episodes):
        s, n = e.seg, len(e.seg)
        ids[i, :n], exp[i, :n], targets[i, :n], is_act[i, :n] = s.ids, experts(c, s.kind), e.targets, e.target_is_action
        mask[i, :n, :n] = visibility(s.block, np.arange(n), s.block, s.keep, np.arange(n), c.keep_blocks,
                                     c.history_tokens)
        for b, ex in enumerate(e.blocks):
            in_block = s.block == b
            if ex.images is not None:
                sel = in_block & (s.src == IMAGE)
                fidx[i, :n][sel] = base[IMAGE] + counters[IMAGE] * len(c.cameras) * c.image_tokens + s.row[sel]
                counters[IMAGE] += 1
            if ex.state is not None:
                fidx[i, :n][in_block & (s.src == STATE)] = base[STATE] + counters[STATE]
                counters[STATE] += 1
            if ex.mel is not None:
                sel = in_block & (s.src == AUDIO)
                fidx[i, :n][sel] = base[AUDIO] + counters[AUDIO] + s.row[sel]
                counters[AUDIO] += int(sel.sum())
            if ex.sentence is not None:
                fidx[i, :n][in_block & (s.src == SENTENCE)] = base[SENTENCE] + counters[SENTENCE]
                counters[SENTENCE] += 1
            q = in_block & (s.src == QUERY)
            if q.any():
                fidx[i, :n][q] = base[QUERY] + s.row[q]
                if b >= e.loss_from:   # a context block's chunk is seen, not taught
                    slots.append(i * T + np.flatnonzero(q))
                    chunk_targets.append(ex.actions)
    img_shape = (0, len(c.cameras), c.image_size, c.image_size, 3)
    return TrainingBatch(
        torch.from_numpy(ids), torch.from_numpy(exp), torch.from_numpy(pos), torch.from_numpy(mask),
        torch.from_numpy(fidx), torch.from_numpy(targets), torch.from_numpy(is_act),
        torch.from_numpy(np.asarray(images, np.float32).reshape(-1, *img_shape[1:])),
        torch.from_numpy(np.asarray(states, np.float32).reshape(-1, c.state_dim)),
        [torch.from_numpy(np.asarray(m, np.float32)) for m in mels],
        torch.from_numpy(np.asarray(sentences, np.float32).reshape(len(sentences), c.sentence_dim)),
        torch.from_numpy(np.asarray(slots, np.int64).reshape(-1, c.chunk)),
        torch.from_numpy(np.asarray(chunk_targets, np.float32).reshape(-1, c.chunk, c.dof)))
