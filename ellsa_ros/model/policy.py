"""`ModelPolicy`: the runtime Policy that streams time blocks through the SA-MoE model.

Per block: the block's speech (ASR text, or the audio encoder's embeddings), images and state
are laid out after the previous blocks in the KV cache; the model then greedily decodes its
text segment (controls, words or `<silence>`, then `<eot>`) and its action segment (FAST
tokens constrained to action tokens and `<eoa>`, or the parallel chunk head, or `<noop>`).
With a sentence encoder, a block that heard something also gets the projected sentence
embedding of the heard text in its `<sent>` slot (the encoder is shared by every session and
embeds each distinct text once). Tokens whose logits nobody needs (forced tokens, known
markers) are fed together with the next call; the closing `<eoa>` is fed with the next block.
The backend (torch or onnxruntime) only runs `encode_*` and `step`; everything here is
shared by both.
"""
from __future__ import annotations

from collections import deque
from typing import Protocol

import numpy as np

from ellsa_ros.runtime.blocks import Block
from ellsa_ros.runtime.policy import Decision

from .config import ModelConfig
from .encoders import AudioStream
from .fast import FastTokenizer
from .inputs import camera_images, heard_text, microphone, proprioception, truncated
from .layout import (
    AUDIO,
    CONTROLS,
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
    tokens,
)
from .sentence import SentenceEncoder, shared_encoder
from .streaming import KVCache
from .text_tokenizer import TextTokenizer

GENERATED_CHARS = 1000  # how much of its own recent speech the policy recognises in block.said
STREAM_RECORD = 4096  # tokens of (block, id) kept for inspection, oldest out first
EOT, EOA, SILENCE, NOOP, ACT_Q = (SPECIAL_ID[t] for t in ("<eot>", "<eoa>", "<silence>", "<noop>", "<act_q>"))


class Backend(Protocol):
    config: ModelConfig
    queries: np.ndarray  # (chunk, D) the continuous head's action slots
    name: str

    def encode_observation(self, images: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...
    def encode_audio(self, mel: np.ndarray) -> np.ndarray: ...
    def encode_sentence(self, embedding: np.ndarray) -> np.ndarray: ...
    def step(self, ids, features, experts, positions, mask, past_k, past_v): ...


class ModelPolicy:
    """Implements runtime.policy.Policy; `step` is called once per block by a policy worker."""

    def __init__(self, backend: Backend, text: TextTokenizer, fast: FastTokenizer | None,
                 sentences: SentenceEncoder | None = None) -> None:
        """`sentences`: the sentence encoder when the model reads one (sentence_dim > 0); None
        takes the process's shared one."""
        c = backend.config
        if text.vocab_size != c.text_vocab_size:
            raise ValueError(f"text tokenizer has {text.vocab_size} tokens, the model {c.text_vocab_size}")
        if c.action_head == "fast" and (fast is None or fast.vocab_size != c.action_vocab_size):
            got = None if fast is None else fast.vocab_size
            raise ValueError(f"FAST tokenizer has {got} tokens, the model {c.action_vocab_size}")
        if c.sentence_dim:
            sentences = sentences or shared_encoder()
            if sentences.dim != c.sentence_dim:
                raise ValueError(f"sentence encoder gives {sentences.dim}-d embeddings, the model reads "
                                 f"{c.sentence_dim}")
        self.backend, self.config, self.text, self.fast = backend, c, text, fast
        self.sentences = sentences if c.sentence_dim else None
        self.vocab = Vocab(c)
        self.cache = KVCache.for_config(c)
        self.audio = AudioStream(c)
        self._prompt_ids = truncated(text.encode(c.prompt), 4 * c.max_heard_tokens, "prompt")
        ids = np.arange(self.vocab.size)
        self._text_ids = (ids >= self.vocab.text_base) & (ids < self.vocab.action_base)
        self._action_ids = (ids >= self.vocab.action_base) & (ids < self.vocab.action_end)
        self.reset()

    def new_session(self) -> ModelPolicy:
        """A policy over the same backend and tokenizers (the weights are held once) with its own
        streaming state (KV cache, audio context, what it said): one per robot on a policy server.
        The backends run concurrent calls from several session threads."""
        return ModelPolicy(self.backend, self.text, self.fast, self.sentences)

    @property
    def block_s(self) -> float:
        """The block length the model was trained at: front ends run the engine at it."""
        return self.config.block_s

    @property
    def state_dim(self) -> int:
        """Values in one proprioception sample: front ends refuse a state source of another size."""
        return self.config.state_dim

    def reset(self) -> None:
        """Called before an episode: forget the cache, the audio context and what was said."""
        self.cache.reset()
        self.audio.reset()
        self._block = 0
        self._generated = ""
        self._feed: list[tuple[Segment, np.ndarray]] = []
        self._calls = 0
        self._choices: deque[int] | None = None
        self.stream: deque[tuple[int, int]] = deque(maxlen=STREAM_RECORD)  # (block, token id) as fed

    # -- one block -------------------------------------------------------------------------
    def step(self, block: Block) -> Decision:
        """Called once per block, in order; returns the model's Decision for it."""
        return self.replay(block, None)

    def replay(self, block: Block, choices: list[int] | None) -> Decision:
        """As `step`, but the decoded tokens are `choices` (unified ids, in order: text segment then
        action segment) instead of the greedy ones; the model still runs every call greedy decoding
        would. Replays a recorded episode, and fixes decoded lengths for benchmarks."""
        c = self.config
        images, present = camera_images(c, block)
        state = proprioception(c, block)
        audio = microphone(c, block)
        self._choices = deque(choices) if choices is not None else None
        try:
            return self._block_step(block, images, present, state, audio)
        except Exception:
            self.reset()  # a half-fed block would corrupt every later one: start a fresh stream
            raise

    def _block_step(self, block: Block, images: np.ndarray, present: list[bool], state: np.ndarray | None,
                    audio: np.ndarray) -> Decision:
        c, b = self.config, self._block
        self._calls = 0
        if self.cache.next_position == 0:
            self._queue(prompt_segment(self.vocab.text(self._prompt_ids)))
        self.cache.evict(self._feed[0][0].block.min() if self._feed else b, c)
        img_feat, state_feat = self.backend.encode_observation(images, np.zeros(c.state_dim, np.float32)
                                                               if state is None else state)
        sources = {IMAGE: img_feat, STATE: state_feat[None]}
        words_heard = heard_text(block.heard)
        sentence = self.sentences is not None and bool(words_heard)
        if sentence:
            sources[SENTENCE] = self.backend.encode_sentence(self.sentences.embed(words_heard))[None]
        if c.speech_input == "text":
            heard_ids = self.text.encode(words_heard)
            heard = self.vocab.text(truncated(heard_ids, c.max_heard_tokens, "heard text"))
            n_audio = 0
        else:
            heard, mel = None, self.audio.push(audio)
            n_audio = (len(mel) - 2) // c.mel_frames_per_token
            if n_audio:
                sources[AUDIO] = self.backend.encode_audio(mel)
        said = None
        # speech the model did not generate itself (the engine's rejection template, a reflex) is news to it
        if block.said and _normal(block.said) not in self._generated:
            said = self.vocab.text(truncated(self.text.encode(block.said), c.max_heard_tokens, "said text"))
        seg = block_input(c, b, heard, n_audio, said, present, state is not None, sentence)
        self._queue(seg, sources)
        controls, words = self._decode_text(b)
        actions, info = self._decode_actions(b, forced_noop="<reject>" in controls or "<done>" in controls)
        text = self.text.decode(words)
        self._generated = (self._generated + " " + _normal(text))[-GENERATED_CHARS:]
        self._block += 1
        info.update(block=b, backend=self.backend.name, calls=self._calls, cached=self.cache.length,
                    text_tokens=len(words), heard_tokens=0 if heard is None else len(heard), sentence=sentence)
        reject = (text or "the instruction cannot be carried out") if "<reject>" in controls else None
        info.update(controls=controls, text_ids=words)
        return Decision(actions=actions, say=text, reject=reject, cancel="<cancel>" in controls,
                        done="<done>" in controls, info=info)

    def _decode_text(self, b: int) -> tuple[list[str], list[int]]:
        controls: list[str] = []
        words: list[int] = []
        for _ in range(self.config.max_text_tokens + len(CONTROLS) + 1):
            allowed = np.zeros(self.vocab.size, bool)
            allowed[EOT] = bool(words or controls)
            allowed[self._text_ids] = True
            if not words:
                allowed[SILENCE] = True
                for name in CONTROLS:
                    allowed[SPECIAL_ID[name]] = name not in controls
            if len(words) >= self.config.max_text_tokens:
                allowed[:] = False
                allowed[EOT] = True
            tok = self._choose(allowed)
            self._queue(tokens([tok], "text", b))
            if tok == EOT:
                break
            if tok == SILENCE:
                self._queue(tokens([self._forced(EOT)], "text", b))
                break
            if self.vocab.is_text(tok):
                words.append(tok - self.vocab.text_base)
            else:
                controls.append(next(n for n in CONTROLS if SPECIAL_ID[n] == tok))
        return controls, words

    def _decode_actions(self, b: int, forced_noop: bool) -> tuple[np.ndarray | None, dict]:
        c = self.config
        self._queue(tokens(["<boa>"], "action", b))
        if forced_noop:
            self._queue(tokens([self._forced(NOOP), self._forced(EOA)], "action", b))
            return None, {"action_tokens": 0}
        if c.action_head == "continuous":
            allowed = np.zeros(self.vocab.size, bool)
            allowed[[NOOP, ACT_Q]] = True
            if self._choose(allowed) == NOOP:
                self._queue(tokens(["<noop>", self._forced(EOA)], "action", b))
                return None, {"action_tokens": 0}
            seg = action_output(c, b, [], query=True)[1:]  # <boa> is already fed
            self._forced(EOA)
            self._queue(seg, {QUERY: self.backend.queries})
            _, chunk = self._run()
            return chunk[seg.src == QUERY].astype(np.float32), {"action_tokens": c.chunk}
        ids: list[int] = []
        while True:
            allowed = np.zeros(self.vocab.size, bool)
            if len(ids) < c.max_action_tokens:
                allowed[self._action_ids] = True
            allowed[NOOP] = not ids
            allowed[EOA] = bool(ids)
            tok = self._choose(allowed)
            self._queue(tokens([tok], "action", b, keep=0 if self.vocab.is_action(tok) else 1))
            if tok == NOOP:
                self._queue(tokens([self._forced(EOA)], "action", b))
                return None, {"action_tokens": 0}
            if tok == EOA:
                break
            ids.append(tok - self.vocab.action_base)
        actions, repaired = self.fast.decode(ids)
        return actions, {"action_tokens": len(ids), "action_ids": ids, "fast_repaired": repaired}

    # -- feeding the model -----------------------------------------------------------------
    def _queue(self, seg: Segment, sources: dict[int, np.ndarray] | None = None) -> None:
        """Adds tokens to feed with the next call; slot tokens take their rows from `sources`."""
        feats = np.zeros((len(seg), self.config.d_model), np.float32)
        for src, table in (sources or {}).items():
            sel = seg.src == src
            feats[sel] = table[seg.row[sel]]
        self._feed.append((seg, feats))

    def _choose(self, allowed: np.ndarray) -> int:
        """Greedy choice among the allowed ids for the next token (feeds the queue first)."""
        if allowed.sum() == 1:
            return self._forced(int(np.flatnonzero(allowed)[0]))
        logits, _ = self._run()
        if self._choices is None:
            return int(np.argmax(np.where(allowed, logits, -np.inf)))
        if not self._choices:
            raise ValueError("replay choices ran out before the block's segments were complete")
        tok = int(self._choices.popleft())
        if not allowed[tok]:
            raise ValueError(f"replay choice {tok} is not allowed at this point of the block")
        return tok

    def _forced(self, tok: int) -> int:
        """A token the layout forces; a replay may list it or not."""
        if self._choices and self._choices[0] == tok:
            self._choices.popleft()
        return tok

    def _run(self) -> tuple[np.ndarray, np.ndarray]:
        seg = Segment.concat([s for s, _ in self._feed])
        feats = np.concatenate([f for _, f in self._feed])
        self._feed = []
        mask = self.cache.mask_for(seg, self.config)
        past_k, past_v = self.cache.past()
        logits, chunk, k, v = self.backend.step(seg.ids, feats, experts(self.config, seg.kind),
                                                self.cache.positions_for(seg), mask, past_k, past_v)
        self.cache.append(seg, k, v)
        self.stream.extend(zip(seg.block.tolist(), seg.ids.tolist()))
        self._calls += 1
        return logits, chunk


def _normal(text: str) -> str:
    return " ".join(text.lower().split())
