"""The robot's voice: text -> TTS -> PCM frames, duckable and cuttable within one frame.

`SpeechOutput` is pulled one frame at a time by the audio path (the same frame size as the
microphone's), so a cut takes effect on the very next frame it returns. Text is split at
punctuation and rendered sentence by sentence on a thread, so the first words play while
the rest is still being synthesized.
"""
from __future__ import annotations

import re
import threading
from collections import deque
from typing import Iterator, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class TTS(Protocol):
    """A text-to-speech backend."""

    sample_rate: int

    def synthesize(self, text: str) -> Iterator[np.ndarray]:
        """Yields float32 mono chunks in [-1, 1] at `sample_rate`, as soon as each is ready."""


_SENTENCE = re.compile(r"(?<=[.!?;:,])\s+")


def split_sentences(text: str) -> list[str]:
    """Splits at punctuation followed by space; keeps short pieces together with the next."""
    parts = [p.strip() for p in _SENTENCE.split(text.strip()) if p.strip()]
    out: list[str] = []
    for p in parts:
        if out and len(out[-1]) < 12:
            out[-1] = f"{out[-1]} {p}"
        else:
            out.append(p)
    return out


def resample(audio: np.ndarray, src_hz: int, dst_hz: int) -> np.ndarray:
    """Linear-interpolation resampling (speech band only; good enough for a speaker path)."""
    if src_hz == dst_hz or len(audio) == 0:
        return audio.astype(np.float32, copy=False)
    n_out = int(round(len(audio) * dst_hz / src_hz))
    x_old = np.arange(len(audio), dtype=np.float64) / src_hz
    x_new = np.arange(n_out, dtype=np.float64) / dst_hz
    return np.interp(x_new, x_old, audio).astype(np.float32)


class SpeechOutput:
    """Streams the robot's speech as fixed-size frames.

    Called from two sides: `say()` by the engine when a Decision carries text; `next_frame()`
    by the audio path once per frame. `duck()`, `unduck()` and `cut()` come from reflexes.
    """

    def __init__(self, tts: TTS, sample_rate: int = 16000, frame_samples: int = 320,
                 duck_gain: float = 0.25, synchronous: bool = False) -> None:
        self.tts = tts
        self.sample_rate = sample_rate
        self.frame_samples = frame_samples
        self.duck_gain = duck_gain
        # synchronous=True renders on the caller's thread: deterministic, for stepped clocks.
        self.synchronous = synchronous
        self._lock = threading.Lock()
        self._pcm: deque[np.ndarray] = deque()
        self._buffer = np.zeros(0, np.float32)
        self._utterance = 0          # bumps on every cut: renders of older utterances are discarded
        self._rendering = 0
        self._gain = 1.0
        self._text = ""
        self._speaking = False
        self._played_text = ""

    # --- control -------------------------------------------------------------------------

    def say(self, text: str) -> None:
        """Queues text after whatever is still being said."""
        text = text.strip()
        if not text:
            return
        with self._lock:
            utt = self._utterance
            self._text = f"{self._text} {text}".strip()
            self._rendering += 1
        if self.synchronous:
            self._render(text, utt)
        else:
            threading.Thread(target=self._render, args=(text, utt), daemon=True,
                             name="ellsa-tts").start()

    def cut(self) -> bool:
        """Silences the robot from the next frame on. Returns True if it was speaking."""
        with self._lock:
            was = self._speaking or bool(self._pcm) or len(self._buffer) > 0 or self._rendering > 0
            self._utterance += 1
            self._pcm.clear()
            self._buffer = np.zeros(0, np.float32)
            self._rendering = 0
            self._speaking = False
            self._gain = 1.0
            self._text = ""
            return was

    def duck(self) -> None:
        with self._lock:
            self._gain = self.duck_gain

    def unduck(self) -> None:
        with self._lock:
            self._gain = 1.0

    @property
    def speaking(self) -> bool:
        """True while speech is playing or still being rendered."""
        with self._lock:
            return self._speaking or bool(self._pcm) or len(self._buffer) > 0 or self._rendering > 0

    @property
    def ducked(self) -> bool:
        with self._lock:
            return self._gain < 1.0

    def take_spoken_text(self) -> str:
        """Text whose speech finished since the last call (what the robot said)."""
        with self._lock:
            t, self._played_text = self._played_text, ""
            return t

    # --- audio path ----------------------------------------------------------------------

    def next_frame(self) -> tuple[np.ndarray, str | None]:
        """Returns (frame, finished_text): one frame of PCM (zeros when silent), and the text
        of the utterance that ended on this frame, if one did."""
        n = self.frame_samples
        with self._lock:
            while len(self._buffer) < n and self._pcm:
                self._buffer = np.concatenate([self._buffer, self._pcm.popleft()])
            if len(self._buffer) == 0:
                finished = None
                if self._rendering == 0 and (self._speaking or self._text):
                    finished, self._speaking = self._text, False
                    self._played_text = f"{self._played_text} {self._text}".strip()
                    self._text = ""
                return np.zeros(n, np.float32), finished
            self._speaking = True
            frame = self._buffer[:n]
            self._buffer = self._buffer[n:]
            if len(frame) < n:
                frame = np.concatenate([frame, np.zeros(n - len(frame), np.float32)])
            return (frame * self._gain).astype(np.float32), None

    # --- rendering -----------------------------------------------------------------------

    def _render(self, text: str, utterance: int) -> None:
        try:
            for sentence in split_sentences(text):
                for chunk in self.tts.synthesize(sentence):
                    pcm = resample(np.asarray(chunk, np.float32), self.tts.sample_rate, self.sample_rate)
                    with self._lock:
                        if utterance != self._utterance:
                            return
                        self._pcm.append(np.clip(pcm, -1.0, 1.0))
        finally:
            with self._lock:
                if utterance == self._utterance:
                    self._rendering -= 1
