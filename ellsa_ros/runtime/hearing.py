"""What the engine needs from ears: voice activity, keyword spotting and transcription.

These are the interfaces `ellsa_ros.speech` implements with real models (silero VAD,
pocketsphinx keywords, faster-whisper). `EnergyVAD` is a dependency-free baseline so that
the engine runs before, or without, the speech stack.

Audio everywhere is float32 mono in [-1, 1] at the engine's sample rate (16 kHz).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class VAD(Protocol):
    """Streaming voice activity with its own onset/offset hysteresis.

    `voiced` is the raw decision for the last frame alone (before hysteresis): the reflexes use
    it to tell a user who is still talking from the VAD's hangover after a short "mm-hmm".
    `far_end` is set by the reflexes before each frame: whether the robot's voice is playing
    (a VAD may trust less of what it hears then; the frame is already echo-filtered).
    """

    voiced: bool
    far_end: bool

    def is_speech(self, frame: np.ndarray) -> bool:
        """Called on every audio frame, in order; True while the user is speaking."""

    def reset(self) -> None:
        """Forget all state (new episode, or after the device restarted)."""


@runtime_checkable
class KeywordSpotter(Protocol):
    """Streaming keyword spotting (stop words)."""

    def process(self, frame: np.ndarray) -> list[str]:
        """Called on every audio frame; returns the keywords recognized on this frame."""

    def reset(self) -> None:
        """Forget all state."""


@runtime_checkable
class FrontEnd(Protocol):
    """The listening front end: what stands between the microphone and the ears. It filters
    every frame (hum, rumble, DC, noise) and says how the reflex cuts utterances: one with less
    voiced audio than `min_voiced_s` is dropped, a pause shorter than `join_pause_s` (after the
    VAD's hangover) does not end one. Without a front end the reflex hands over what the VAD
    cut, as it cut it."""

    min_voiced_s: float
    join_pause_s: float

    def process(self, frame: np.ndarray) -> np.ndarray:
        """Called on every microphone frame, in order, after echo cleaning and before VAD,
        keyword spotting and the utterance buffer; returns a frame of the same length."""

    def reset(self) -> None:
        """Forget all state (new episode, another recording)."""


class Unintelligible(Exception):
    """Raised by a transcriber for an utterance whose text must not be acted on (a decoding
    that looped or ran longer than the audio could hold, audio that is no speech); `reason`
    says which, for the events."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@runtime_checkable
class Transcriber(Protocol):
    """Speech to text for one finished utterance. Slow: called off the control loop."""

    def transcribe(self, audio: np.ndarray, prompt: str = "") -> str:
        """`audio`: (n,) float32 at 16 kHz; `prompt`: vocabulary hints (object names).
        Returns "" for no speech; raises `Unintelligible` for text that must not be used."""


@dataclass
class EnergyVADConfig:
    sample_rate: int = 16000
    threshold_db: float = -35.0   # frame RMS above this (dBFS) counts as voiced
    onset_s: float = 0.04         # voiced this long before speech starts
    hangover_s: float = 0.25      # unvoiced this long before speech ends
    noise_adapt: float = 0.05     # how fast the noise floor follows quiet frames
    snr_db: float = 12.0          # voiced also means this far above the noise floor


class EnergyVAD:
    """Frame energy against a fixed threshold and an adaptive noise floor, with hysteresis.

    A baseline: it cannot tell speech from other loud sounds (and so not the robot's own voice
    from the user's); the speech stack's silero VAD with echo gating replaces it.
    """

    def __init__(self, config: EnergyVADConfig | None = None) -> None:
        self.config = config or EnergyVADConfig()
        self.reset()

    def reset(self) -> None:
        self._noise_db = -60.0
        self._voiced_s = 0.0
        self._quiet_s = 0.0
        self._active = False
        self.voiced = False
        self.far_end = False     # no use here: loud is voiced, whoever speaks

    def is_speech(self, frame: np.ndarray) -> bool:
        c = self.config
        dt = len(frame) / c.sample_rate
        rms = float(np.sqrt(np.mean(np.square(frame, dtype=np.float64)))) if len(frame) else 0.0
        level_db = 20.0 * np.log10(max(rms, 1e-9))
        voiced = level_db > c.threshold_db and level_db > self._noise_db + c.snr_db
        self.voiced = voiced
        if not voiced:
            self._noise_db += c.noise_adapt * (level_db - self._noise_db)
        if voiced:
            self._voiced_s += dt
            self._quiet_s = 0.0
            if not self._active and self._voiced_s >= c.onset_s - 1e-9:
                self._active = True
        else:
            self._quiet_s += dt
            if self._quiet_s >= c.hangover_s - 1e-9:
                self._voiced_s = 0.0
                self._active = False
            elif not self._active:
                self._voiced_s = 0.0
        return self._active


@runtime_checkable
class EchoFilter(Protocol):
    """Removes (or gates) the robot's own voice from the microphone signal."""

    def clean(self, mic: np.ndarray, played: np.ndarray) -> np.ndarray:
        """Called on every audio frame, before VAD and keyword spotting, with the microphone
        frame and the frame the robot's speaker played in the same period (zeros when silent).
        Returns the microphone frame with the robot's voice removed or attenuated."""

    def reset(self) -> None:
        """Forget all state (delay and gain estimates included)."""
