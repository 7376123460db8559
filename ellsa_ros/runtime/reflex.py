"""The reflex path: run on every audio frame, no model, so barge-in takes tens of ms.

- the user starts speaking while the robot speaks -> the robot's voice ducks at once;
- the user keeps speaking past a backchannel ("mm-hmm") -> the robot's voice is cut;
- the user stops within the backchannel length -> the voice comes back up;
- a stop word -> the voice is cut and the action queue halts at the next control tick.
The model still decides what an interruption means, in its next block.

Segmentation, with a listening front end (`hearing.FrontEnd`), follows the VAD but is not
its copy: an utterance whose voiced part is shorter than the front end's `min_voiced_s` (a
knock, a noise burst the VAD opened on) is dropped; a pause shorter than its `join_pause_s`
("put the bowl... on the plate") does not end the instruction, so the utterance is handed
over only once the pause has outlasted it; the audio before the first voiced frame (less the
preroll) and the pause waited for after the last are cut off, so an utterance starts where
speech starts, not where noise opened the VAD. The duck, cut and halt rules see the VAD's own
start and end, unchanged.

`Reflex.hear` returns `Reflexes` (what to do); the engine applies them and emits events, so
this file holds the rules and nothing else.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from .hearing import VAD, FrontEnd, KeywordSpotter

DEFAULT_STOP_WORDS = ("stop", "wait", "pause", "halt")


@dataclass
class ReflexConfig:
    backchannel_s: float = 0.3     # user speech shorter than this does not cut the robot
    stop_words: tuple[str, ...] = DEFAULT_STOP_WORDS
    preroll_s: float = 0.3         # audio kept before a VAD onset, so ASR hears the first phoneme
    max_utterance_s: float = 30.0  # an utterance longer than this is cut into pieces
    # A stop word counts as a reflex only this soon after the onset of the utterance it is in:
    # "stop!" and "wait, ..." halt at once, while "wait" heard inside "...on the plate" does not.
    # Later stop words still reach the model as text, which decides in its next block.
    stop_window_s: float = 0.8
    # "Still talking" also needs the frame within this many dB of the utterance's loudest frame:
    # a model VAD's probability decays over a window or two after the last word, the level at once.
    sustain_db: float = 20.0

    def __post_init__(self) -> None:
        if self.stop_window_s <= 0:
            raise ValueError(f"stop_window_s={self.stop_window_s} must be > 0 s")
        if not (0.0 < self.backchannel_s <= 2.0):
            raise ValueError(f"backchannel_s={self.backchannel_s} must be in (0, 2] s")
        self.stop_words = tuple(w.strip().lower() for w in self.stop_words if w.strip())


@dataclass
class Reflexes:
    """What one audio frame asks for. Times are engine clock seconds."""
    speech_started: bool = False
    speech_ended: bool = False            # the VAD's end of speech (the utterance may go on after a pause)
    utterance: np.ndarray | None = None   # a finished utterance, handed over on this frame
    utterance_lag_s: float = 0.0          # audio between the utterance's end and this frame's end
    duck: bool = False
    unduck: bool = False
    cut: str | None = None                # reason, when the robot's voice must stop
    halt: str | None = None               # stop word, when the actions must stop
    keywords: list[str] = field(default_factory=list)


class Reflex:
    """`front_end`, when given, filters every frame before the VAD, the keyword spotter and the
    utterance buffer see it, and decides the segmentation (the same object wherever audio is
    heard: the engine, the data engine's heard-text pass, the benchmarks)."""

    def __init__(self, vad: VAD, keywords: KeywordSpotter | None = None,
                 config: ReflexConfig | None = None, sample_rate: int = 16000,
                 front_end: FrontEnd | None = None) -> None:
        self.vad = vad
        self.keywords = keywords
        self.config = config or ReflexConfig()
        self.sample_rate = sample_rate
        self.front_end = front_end
        fe = front_end
        if fe is not None and not (fe.min_voiced_s >= 0 and fe.join_pause_s >= 0):
            raise ValueError(f"front end: min_voiced_s={fe.min_voiced_s} and join_pause_s={fe.join_pause_s} "
                             f"must be >= 0 s")
        self._min_voiced_n = 0.0 if fe is None else fe.min_voiced_s * sample_rate
        self._join_n = 0.0 if fe is None else fe.join_pause_s * sample_rate
        self.reset()

    def reset(self) -> None:
        self.vad.reset()
        if self.front_end is not None:
            self.front_end.reset()
        if self.keywords is not None:
            self.keywords.reset()
        self.speaking = False
        self._speech_s = 0.0
        self._since_onset_s = np.inf   # audio time since the onset of the current or last utterance
        self._peak_db = -np.inf        # loudest frame of the current utterance, dBFS
        self._ducked = False
        self._cut = False
        self._preroll: deque[np.ndarray] = deque()
        self._preroll_n = 0
        self._utterance: list[np.ndarray] = []
        self._utterance_n = 0
        self._voiced_n = 0             # samples of the utterance in frames the VAD found voiced
        self._first_voiced: int | None = None   # index in `_utterance` of its first voiced frame
        self._pause_n: int | None = None        # samples since the VAD ended an utterance not yet handed over
        self._spoken = 0               # frames of `_utterance` up to the VAD's last end of speech
        self.dropped = 0               # utterances dropped as too little voiced
        self.last_speech_s = 0.0       # how long the VAD's last stretch of speech lasted

    def hear(self, frame: np.ndarray, robot_speaking: bool) -> Reflexes:
        """Called once per (echo-cleaned) microphone frame, in order."""
        c = self.config
        out = Reflexes()
        if self.front_end is not None:
            frame = self.front_end.process(frame)
        dt = len(frame) / self.sample_rate
        voiced = bool(self.vad.is_speech(frame))
        self._since_onset_s += dt
        heard = [] if self.keywords is None else [w.lower() for w in self.keywords.process(frame)]

        if voiced and not self.speaking:
            self.speaking, self._speech_s, self._cut = True, 0.0, False
            self._since_onset_s = dt
            self._peak_db = -np.inf
            out.speech_started = True
            if self._pause_n is None or self._voiced_n < self._min_voiced_n:
                # a new utterance (a burst too short to be speech before it is dropped)
                if self._pause_n is not None:
                    self.dropped += 1
                self._utterance, self._utterance_n = list(self._preroll), self._preroll_n
                self._voiced_n, self._first_voiced = 0, None
            self._pause_n = None          # else the pause was inside the utterance: it goes on
            if robot_speaking:
                out.duck, self._ducked = True, True
        elif self._pause_n is not None:
            self._utterance.append(frame)
            self._utterance_n += len(frame)
            self._pause_n += len(frame)
            if self._pause_n >= self._join_n - 1e-6:
                out.utterance, out.utterance_lag_s = self._hand_over()
        if self.speaking:
            self._speech_s += dt
            self._utterance.append(frame)
            self._utterance_n += len(frame)
            if getattr(self.vad, "voiced", True):
                self._voiced_n += len(frame)
                if self._first_voiced is None:
                    self._first_voiced = len(self._utterance) - 1
            # Cut only if the user is still making sound a backchannel length after onset: the
            # VAD's hangover after a short "mm-hmm" must not count as talking on.
            level_db = 10.0 * np.log10(float(np.mean(np.square(frame, dtype=np.float64))) + 1e-12)
            self._peak_db = max(self._peak_db, level_db)
            still_voiced = bool(getattr(self.vad, "voiced", True)) and level_db > self._peak_db - c.sustain_db
            if (self._ducked or robot_speaking) and not self._cut and still_voiced \
                    and self._speech_s >= c.backchannel_s - 1e-9:
                if robot_speaking:
                    out.cut = "barge_in"
                self._cut, self._ducked = True, False
            too_long = self._utterance_n >= c.max_utterance_s * self.sample_rate
            if not voiced or too_long:
                out.speech_ended = True
                self.speaking = False
                self.last_speech_s = self._speech_s
                self._pause_n = 0
                self._spoken = len(self._utterance)
                if too_long or self._join_n <= 0:
                    out.utterance, out.utterance_lag_s = self._hand_over()
                if self._ducked:
                    out.unduck, self._ducked = True, False
        self._preroll.append(frame)
        self._preroll_n += len(frame)
        while self._preroll and self._preroll_n - len(self._preroll[0]) >= c.preroll_s * self.sample_rate:
            self._preroll_n -= len(self._preroll.popleft())

        # Words spotted within the window of an utterance's onset; the rest are left to the model.
        if self._since_onset_s <= c.stop_window_s + 1e-9:
            out.keywords = heard
        stop = next((w for w in out.keywords if w in c.stop_words), None)
        if stop is not None:
            out.halt = stop
            if robot_speaking:
                out.cut = "stop_word"
                out.unduck = False
            self._ducked = False
        return out

    def _hand_over(self) -> tuple[np.ndarray | None, float]:
        """(The utterance from its first voiced frame, less the preroll, to the VAD's end of it,
        or None if it is too little voiced to be speech; the seconds of the pause waited for
        after it, which is no part of it). The buffer is emptied either way."""
        frames, first = self._utterance[:self._spoken], self._first_voiced
        lag_s = sum(len(f) for f in self._utterance[self._spoken:]) / self.sample_rate
        enough = self._voiced_n >= self._min_voiced_n - 1e-6 and first is not None
        self._utterance, self._utterance_n, self._voiced_n, self._first_voiced = [], 0, 0, None
        self._pause_n = None
        if self.front_end is None:
            return np.concatenate(frames).astype(np.float32), lag_s     # as the VAD cut it
        if not enough:
            self.dropped += 1
            return None, lag_s
        start, kept = first, 0
        c = self.config
        while start > 0 and kept < c.preroll_s * self.sample_rate:
            start -= 1
            kept += len(frames[start])
        return np.concatenate(frames[start:]).astype(np.float32), lag_s
