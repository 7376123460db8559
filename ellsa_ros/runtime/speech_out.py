"""The robot's voice: text -> TTS -> PCM frames, duckable, pausable and cuttable within one frame.

`SpeechOutput` is pulled one frame at a time by the audio path (the same frame size as the
microphone's), so a duck, pause or cut takes effect on the very next frame it returns. Text is
split at punctuation and rendered sentence by sentence on a thread, so the first words play
while the rest is still being synthesized.

A pause keeps the place in the sentence: it goes back to the start of the word being played
(the last pause in the voice, found from the audio itself, so it works for any TTS), and
`resume` plays on from there, so a word the user talked over is said again whole and nothing
is lost.
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


MAX_REWIND_S = 2.0     # a pause goes back at most this far for the start of a word
_GAP_S = 0.03          # this much quiet in the voice separates two words
_QUIET = 0.1           # quiet: a 10 ms window below this fraction of the loudest one (-20 dB)

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


def word_start(played: np.ndarray, sample_rate: int) -> int:
    """How many of the last samples of `played` belong to the word still being said: back to
    the end of the last gap of `_GAP_S` quiet (0 when the voice is in a gap right now; all of
    `played` when it holds no gap)."""
    w = max(1, sample_rate // 100)
    n = len(played) // w
    if n == 0:
        return len(played)
    tail = played[len(played) - n * w:].astype(np.float64).reshape(n, w)
    rms = np.sqrt(np.mean(np.square(tail), axis=1))
    quiet = rms < _QUIET * max(float(rms.max()), 1e-6)
    if quiet[-1]:
        return 0
    need = max(1, int(round(_GAP_S * sample_rate / w)))
    run = 0
    for i in range(n - 1, -1, -1):
        run = run + 1 if quiet[i] else 0
        if run >= need:
            return (n - i - run) * w    # from the window after the gap's last one
    return len(played)


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
        self._paused = False
        self._history = np.zeros(0, np.float32)    # what was played lately, for a pause to go back in
        self.replayed_s = 0.0                      # how far the last pause went back

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
            self._paused = False
            self._history = np.zeros(0, np.float32)
            return was

    def pause(self) -> bool:
        """Silences the robot from the next frame on, keeping its place: the audio from the start
        of the word being played is put back, to be played again by `resume`. Returns True if
        it was speaking (and is now paused)."""
        with self._lock:
            if self._paused or not (self._speaking or self._pcm or len(self._buffer) or self._rendering):
                return False
            back = word_start(self._history, self.sample_rate)
            self._buffer = np.concatenate([self._history[len(self._history) - back:], self._buffer])
            self._history = np.zeros(0, np.float32)
            self._paused = True
            self.replayed_s = back / self.sample_rate
            return True

    def resume(self) -> bool:
        """Plays on from where `pause` left off, at full gain. Returns True if it was paused."""
        with self._lock:
            was, self._paused, self._gain = self._paused, False, 1.0
            return was

    @property
    def paused(self) -> bool:
        with self._lock:
            return self._paused

    def duck(self) -> None:
        with self._lock:
            self._gain = self.duck_gain

    def unduck(self) -> None:
        with self._lock:
            self._gain = 1.0

    @property
    def speaking(self) -> bool:
        """True while speech is playing, paused or still being rendered (the robot holds its turn)."""
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
            if self._paused:
                return np.zeros(n, np.float32), None
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
            self._history = np.concatenate([self._history, frame])[-int(MAX_REWIND_S * self.sample_rate):]
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
