"""The reflex path: run on every audio frame, no model, so barge-in takes tens of ms.

- the user starts speaking while the robot speaks -> the robot's voice ducks at once;
- the user keeps speaking past a backchannel ("mm-hmm") -> the robot's voice is cut;
- the user stops within the backchannel length -> the voice comes back up;
- a stop word -> the voice is cut and the action queue halts at the next control tick.
The model still decides what an interruption means, in its next block.

`Reflex.hear` returns `Reflexes` (what to do); the engine applies them and emits events, so
this file holds the rules and nothing else.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from .hearing import VAD, KeywordSpotter

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
    speech_ended: bool = False
    utterance: np.ndarray | None = None   # the finished utterance, when speech ended
    duck: bool = False
    unduck: bool = False
    cut: str | None = None                # reason, when the robot's voice must stop
    halt: str | None = None               # stop word, when the actions must stop
    keywords: list[str] = field(default_factory=list)


class Reflex:
    def __init__(self, vad: VAD, keywords: KeywordSpotter | None = None,
                 config: ReflexConfig | None = None, sample_rate: int = 16000) -> None:
        self.vad = vad
        self.keywords = keywords
        self.config = config or ReflexConfig()
        self.sample_rate = sample_rate
        self.reset()

    def reset(self) -> None:
        self.vad.reset()
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

    def hear(self, frame: np.ndarray, robot_speaking: bool) -> Reflexes:
        """Called once per (echo-cleaned) microphone frame, in order."""
        c = self.config
        out = Reflexes()
        dt = len(frame) / self.sample_rate
        voiced = bool(self.vad.is_speech(frame))
        self._since_onset_s += dt
        heard = [] if self.keywords is None else [w.lower() for w in self.keywords.process(frame)]

        if voiced and not self.speaking:
            self.speaking, self._speech_s, self._cut = True, 0.0, False
            self._since_onset_s = dt
            self._peak_db = -np.inf
            out.speech_started = True
            self._utterance, self._utterance_n = list(self._preroll), self._preroll_n
            if robot_speaking:
                out.duck, self._ducked = True, True
        if self.speaking:
            self._speech_s += dt
            self._utterance.append(frame)
            self._utterance_n += len(frame)
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
            if not voiced or self._utterance_n >= c.max_utterance_s * self.sample_rate:
                out.speech_ended = True
                out.utterance = np.concatenate(self._utterance).astype(np.float32)
                self.speaking = False
                self._utterance, self._utterance_n = [], 0
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
