"""Streaming state of the model: the KV cache with the layout metadata of every cached token.

The cache is numpy so that the torch and the onnxruntime backends share it (torch reads it
without a copy). Keys and values live in preallocated buffers (L, Hkv, capacity, hd) that
double when full; appending writes in place. After each block the entries no later block can
see any more (aged pixels, actions, speech embeddings; text beyond the history budget) are
evicted, so a block step costs the new block plus the kept history, not the whole episode.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .config import ModelConfig
from .layout import Segment, visibility


@dataclass
class KVCache:
    n_layers: int
    n_kv_heads: int
    head_dim: int
    capacity: int = 512
    length: int = 0
    next_position: int = 0  # absolute stream position of the next token (never reused)
    k: np.ndarray = field(init=False)
    v: np.ndarray = field(init=False)
    block: np.ndarray = field(init=False)
    keep: np.ndarray = field(init=False)
    position: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self._allocate(self.capacity)

    @classmethod
    def for_config(cls, c: ModelConfig) -> KVCache:
        return cls(c.n_layers, c.n_kv_heads, c.head_dim)

    def _allocate(self, capacity: int) -> None:
        old = self.length and (self.k, self.v, self.block, self.keep, self.position)
        shape = (self.n_layers, self.n_kv_heads, capacity, self.head_dim)
        self.k, self.v = np.zeros(shape, np.float32), np.zeros(shape, np.float32)
        self.block, self.keep, self.position = (np.zeros(capacity, np.int64) for _ in range(3))
        if old:
            n = self.length
            self.k[:, :, :n], self.v[:, :, :n] = old[0][:, :, :n], old[1][:, :, :n]
            self.block[:n], self.keep[:n], self.position[:n] = old[2][:n], old[3][:n], old[4][:n]
        self.capacity = capacity

    def reset(self) -> None:
        """Called at the start of an episode: forget everything."""
        self.length = 0
        self.next_position = 0

    def past(self) -> tuple[np.ndarray, np.ndarray]:
        """Cached keys and values as (L, 1, Hkv, S, hd) views."""
        n = self.length
        return self.k[:, None, :, :n], self.v[:, None, :, :n]

    def positions_for(self, seg: Segment) -> np.ndarray:
        return self.next_position + np.arange(len(seg), dtype=np.int64)

    def mask_for(self, seg: Segment, c: ModelConfig) -> np.ndarray:
        """(T, S+T) attention mask of the segment's tokens over cache + themselves."""
        n = self.length
        q_pos = self.positions_for(seg)
        return visibility(seg.block, q_pos, np.concatenate([self.block[:n], seg.block]),
                          np.concatenate([self.keep[:n], seg.keep]), np.concatenate([self.position[:n], q_pos]),
                          c.keep_blocks, c.history_tokens)

    def append(self, seg: Segment, k_new: np.ndarray, v_new: np.ndarray) -> None:
        """Stores the keys and values (L, Hkv, T, hd) the model computed for `seg`."""
        t = len(seg)
        if self.length + t > self.capacity:
            self._allocate(max(2 * self.capacity, self.length + t))
        a, b = self.length, self.length + t
        self.k[:, :, a:b], self.v[:, :, a:b] = k_new, v_new
        self.block[a:b], self.keep[a:b], self.position[a:b] = seg.block, seg.keep, self.positions_for(seg)
        self.length = b
        self.next_position += t

    def evict(self, next_block: int, c: ModelConfig) -> int:
        """Called after a block: drops what queries of `next_block` (and later) cannot see; returns the count."""
        n = self.length
        if n == 0:
            return 0
        visible = visibility(np.asarray([next_block]), np.asarray([self.next_position]), self.block[:n],
                             self.keep[:n], self.position[:n], c.keep_blocks, c.history_tokens)[0]
        if visible.all():
            return 0
        idx = np.flatnonzero(visible)
        m = len(idx)
        self.k[:, :, :m], self.v[:, :, :m] = self.k[:, :, idx], self.v[:, :, idx]
        self.block[:m], self.keep[:m], self.position[:m] = self.block[idx], self.keep[idx], self.position[idx]
        self.length = m
        return n - m
