"""Test doubles for the collaborators of the engine (the engine itself is never faked).

- ToneTTS: a TTS that renders each character as 40 ms of a 440 Hz tone;
- ScriptedPolicy: a policy that answers blocks by rules, and records what it saw;
- ScriptedKeywords: a keyword spotter that "hears" a word on a given frame;
- speech_like(): a loud band of noise that an energy VAD hears as speech.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from ellsa_ros.runtime.blocks import Block
from ellsa_ros.runtime.policy import Decision

SR = 16000


class ToneTTS:
    sample_rate = 16000

    def __init__(self, s_per_char: float = 0.04) -> None:
        self.s_per_char = s_per_char

    def synthesize(self, text: str) -> Iterator[np.ndarray]:
        n = int(len(text) * self.s_per_char * self.sample_rate)
        t = np.arange(n) / self.sample_rate
        yield (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


class ScriptedPolicy:
    """`rule(block) -> Decision`; every block seen is kept in `blocks`."""

    def __init__(self, rule: Callable[[Block], Decision], latency_s: float = 0.0) -> None:
        self.rule = rule
        self.latency_s = latency_s
        self.blocks: list[Block] = []
        self.resets = 0

    def reset(self) -> None:
        self.resets += 1
        self.blocks.clear()

    def step(self, block: Block) -> Decision:
        self.blocks.append(block)
        return self.rule(block)


class ScriptedKeywords:
    """Reports `word` on the frame that ends at or after each time in `at_s`."""

    def __init__(self, at_s: list[float], word: str = "stop", frame_s: float = 0.02) -> None:
        self.at_s, self.word, self.frame_s = sorted(at_s), word, frame_s
        self.t = 0.0

    def reset(self) -> None:
        self.t = 0.0

    def process(self, frame: np.ndarray) -> list[str]:
        self.t += len(frame) / SR
        if self.at_s and self.t + 1e-9 >= self.at_s[0]:
            self.at_s.pop(0)
            return [self.word]
        return []


def speech_like(n: int, seed: int = 0, level: float = 0.2) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (level * rng.standard_normal(n)).astype(np.float32)


def mic_from_segments(segments: list[tuple[float, float]], seed: int = 0) -> Callable[[float, int], np.ndarray]:
    """A microphone that hears speech-like noise inside [start, end) segments and quiet elsewhere."""
    rng = np.random.default_rng(seed)

    def mic(t0: float, n: int) -> np.ndarray:
        t = t0 + np.arange(n) / SR
        out = (0.001 * rng.standard_normal(n)).astype(np.float32)
        for a, b in segments:
            inside = (t >= a) & (t < b)
            out[inside] = speech_like(int(inside.sum()), seed=int(t0 * 1000))[: int(inside.sum())]
        return out
    return mic


def chunk(n: int = 20, value: float = 0.1, dof: int = 7) -> np.ndarray:
    a = np.full((n, dof), value, np.float32)
    a[:, -1] = -1.0
    return a
