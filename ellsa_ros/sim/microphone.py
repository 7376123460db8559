"""The simulated robot's microphone and loudspeaker, in simulation time.

`ScriptedMicrophone` is what the robot hears: quiet room noise, and the user's scripted
utterances (synthesized by a TTS, or read from WAV recordings) placed at their times.
`Loudspeaker` records what the robot said, frame by frame, as the engine returns it.
Audio is float32 mono in [-1, 1] at 16 kHz unless stated.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ellsa_ros.runtime.speech_out import TTS, resample

VOICE_RMS = 1e-3    # a loudspeaker frame above this RMS counts as the robot speaking


def synthesize(tts: TTS, text: str, sample_rate: int = 16000) -> np.ndarray:
    """The whole utterance `text` spoken by `tts`, resampled to `sample_rate`."""
    chunks = [np.asarray(c, np.float32).reshape(-1) for c in tts.synthesize(text)]
    audio = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    if audio.size == 0:
        raise RuntimeError(f"the TTS produced no audio for {text!r}")
    return resample(audio, int(tts.sample_rate), sample_rate)


def read_wav(path: str | Path, sample_rate: int = 16000) -> np.ndarray:
    """A recording as mono float32 at `sample_rate`; names the file when it cannot be read."""
    import soundfile

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"WAV file not found: {path}")
    try:
        audio, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, soundfile.LibsndfileError) as e:
        raise ValueError(f"cannot read audio file {path}: {e}") from None
    if audio.shape[0] == 0:
        raise ValueError(f"audio file {path} holds no samples")
    return resample(audio.mean(axis=1), int(rate), sample_rate)


@dataclass(frozen=True)
class Utterance:
    """What the user said, and when it is in the microphone stream (simulation seconds)."""
    t_start: float
    t_end: float
    kind: str       # "say" | "ask" | "stop"
    text: str


class ScriptedMicrophone:
    """Room noise plus utterances placed at scripted times. Read in order by the stepped loop."""

    def __init__(self, sample_rate: int = 16000, noise_rms: float = 0.003, speech_peak: float = 0.5,
                 seed: int = 0) -> None:
        # Some noise always: pure digital silence is nothing a real microphone delivers, and
        # keyword spotters misbehave on it.
        if not 0.0 <= noise_rms < 0.1:
            raise ValueError(f"noise_rms={noise_rms} must be in [0, 0.1)")
        if not 0.0 < speech_peak <= 1.0:
            raise ValueError(f"speech_peak={speech_peak} must be in (0, 1]")
        self.sample_rate = sample_rate
        self.noise_rms = noise_rms
        self.speech_peak = speech_peak
        self._rng = np.random.default_rng(seed)
        self._clips: list[tuple[int, np.ndarray]] = []   # (first sample index, audio)
        self.utterances: list[Utterance] = []
        self._heard: list[np.ndarray] = []

    def place(self, at_s: float, audio: np.ndarray, kind: str, text: str) -> Utterance:
        """Puts `audio` (float32 at this microphone's rate) into the stream from `at_s` on,
        scaled so that its peak is `speech_peak`."""
        audio = np.asarray(audio, np.float32)
        peak = float(np.max(np.abs(audio))) if audio.size else 0.0
        if peak > 0:
            audio = audio * (self.speech_peak / peak)
        start = int(round(at_s * self.sample_rate))
        self._clips.append((start, audio))
        u = Utterance(at_s, at_s + len(audio) / self.sample_rate, kind, text)
        self.utterances.append(u)
        return u

    def __call__(self, t0: float, n: int) -> np.ndarray:
        """The n samples captured from `t0` (s); the SteppedLoop's microphone."""
        first = int(round(t0 * self.sample_rate))
        out = (self.noise_rms * self._rng.standard_normal(n)).astype(np.float32)
        for start, audio in self._clips:
            lo, hi = max(first, start), min(first + n, start + len(audio))
            if lo < hi:
                out[lo - first:hi - first] += audio[lo - start:hi - start]
        out = np.clip(out, -1.0, 1.0)
        self._heard.append(out)
        return out

    def recording(self) -> np.ndarray:
        """Everything read so far, in order: what the robot heard."""
        return np.concatenate(self._heard) if self._heard else np.zeros(0, np.float32)


class Loudspeaker:
    """Keeps every frame of the robot's voice with its start time (the loop's on_speaker)."""

    def __init__(self, sample_rate: int = 16000) -> None:
        self.sample_rate = sample_rate
        self.frames: list[tuple[float, np.ndarray]] = []

    def __call__(self, t0: float, frame: np.ndarray) -> None:
        self.frames.append((t0, np.asarray(frame, np.float32)))

    def recording(self) -> np.ndarray:
        return np.concatenate([f for _, f in self.frames]) if self.frames else np.zeros(0, np.float32)

    def voiced_spans(self) -> list[tuple[float, float]]:
        """(start, end) simulation seconds of each frame in which the robot's voice was audible."""
        out = []
        for t0, f in self.frames:
            if f.size and float(np.sqrt(np.mean(np.square(f, dtype=np.float64)))) > VOICE_RMS:
                out.append((t0, t0 + len(f) / self.sample_rate))
        return out
