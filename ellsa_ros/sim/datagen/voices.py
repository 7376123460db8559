"""The user's voices and the room they speak in: TTS voices at varied rates, background noise,
and the microphone track that mixes them.

A voice is written `backend[:variant][@rate]`, e.g. `espeak:en-us+f2@1.1`, `piper`, `hibari`.
Backends come from `ellsa_ros.speech.make_tts`. Where the speech stack is not importable,
`EspeakCommandTTS` runs the Debian `espeak-ng` program directly (espeak only); other
backends are then refused at construction with the reason.
Audio is float32 mono in [-1, 1] at 16 kHz unless said otherwise.
"""
from __future__ import annotations

import io
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ellsa_ros.runtime.speech_out import resample

SAMPLE_RATE = 16000
BACKENDS = ("espeak", "piper", "hibari")
NOISE_KINDS = ("none", "white", "pink", "brown", "hum")
ESPEAK_WPM = 165   # espeak-ng's words per minute at rate 1.0


@dataclass(frozen=True)
class Voice:
    backend: str
    variant: str = ""
    rate: float = 1.0     # speaking-rate factor: 1.2 is 20% faster

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"voice backend {self.backend!r} is not one of {BACKENDS}")
        if not 0.5 <= self.rate <= 2.0:
            raise ValueError(f"voice rate {self.rate} must be within 0.5-2.0")

    @property
    def name(self) -> str:
        return f"{self.backend}{':' + self.variant if self.variant else ''}@{self.rate:.2f}"

    def at_rate(self, rate: float) -> Voice:
        return Voice(self.backend, self.variant, rate)


def parse_voice(text: str) -> Voice:
    """'espeak:en-us+f2@1.1' -> Voice('espeak', 'en-us+f2', 1.1)."""
    spec, _, rate = text.strip().partition("@")
    backend, _, variant = spec.partition(":")
    try:
        return Voice(backend, variant, float(rate) if rate else 1.0)
    except ValueError as e:
        raise ValueError(f"bad voice {text!r}: {e}; write backend[:variant][@rate], e.g. espeak:en-us+f2@1.1") \
            from None


class EspeakCommandTTS:
    """Fallback TTS: the `espeak-ng` program, for when `ellsa_ros.speech` cannot be imported."""

    sample_rate = 22050

    def __init__(self, variant: str = "en-us", wpm: int = ESPEAK_WPM) -> None:
        if shutil.which("espeak-ng") is None:
            raise RuntimeError("espeak-ng is not installed (apt-get install espeak-ng)")
        self.variant, self.wpm = variant or "en-us", int(wpm)

    def synthesize(self, text: str) -> Iterator[np.ndarray]:
        import soundfile

        wav = subprocess.run(["espeak-ng", "-v", self.variant, "-s", str(self.wpm), "--stdout", text],
                             check=True, capture_output=True).stdout
        audio, rate = soundfile.read(io.BytesIO(wav), dtype="float32")
        self.sample_rate = rate
        yield audio


def _speech_stack_tts(backend: str, variant: str):
    try:
        from ellsa_ros.speech import make_tts
    except ImportError:
        return None
    if variant:
        try:
            return make_tts(name=backend, voice=variant)
        except TypeError:
            pass
    return make_tts(name=backend)


class VoiceBox:
    """Synthesizes text in any of its voices; backends are built once, on first use."""

    def __init__(self) -> None:
        self._tts: dict[tuple[str, str], object] = {}
        self.fallbacks: set[str] = set()

    def check(self, voice: Voice) -> None:
        """Called at configuration time: builds the backend, or raises naming why it cannot."""
        self._backend(voice)

    def synthesize(self, voice: Voice, text: str) -> np.ndarray:
        """`text` in `voice`, at 16 kHz, peak-normalized to 0.9; never empty."""
        tts = self._backend(voice)
        audio = np.concatenate([np.asarray(c, np.float32).reshape(-1) for c in tts.synthesize(text)] or
                               [np.zeros(0, np.float32)])
        # speed change by resampling: the pitch moves with the rate, as in a faster talker's voice
        audio = resample(audio, int(round(tts.sample_rate * voice.rate)), SAMPLE_RATE)
        audio = _trim(audio)
        if len(audio) == 0:
            raise RuntimeError(f"voice {voice.name} produced no audio for {text!r}")
        return (0.9 * audio / max(float(np.abs(audio).max()), 1e-6)).astype(np.float32)

    def _backend(self, voice: Voice):
        key = (voice.backend, voice.variant)
        if key not in self._tts:
            tts = _speech_stack_tts(voice.backend, voice.variant)
            if tts is None:
                if voice.backend != "espeak":
                    raise RuntimeError(f"voice {voice.name}: ellsa_ros.speech (make_tts) is not available, "
                                       "and only espeak has a fallback")
                tts = EspeakCommandTTS(voice.variant)
                self.fallbacks.add("espeak-ng command")
            self._tts[key] = tts
        return self._tts[key]


def _trim(audio: np.ndarray, threshold: float = 1e-3) -> np.ndarray:
    """Drops leading and trailing silence, so an utterance's times are its speech."""
    loud = np.flatnonzero(np.abs(audio) > threshold * max(float(np.abs(audio).max(initial=0.0)), 1e-9))
    return audio[loud[0]:loud[-1] + 1] if len(loud) else audio[:0]


def background_noise(kind: str, n: int, level_dbfs: float, rng: np.random.Generator) -> np.ndarray:
    """`n` samples of room noise with RMS `level_dbfs`: white, pink (1/f), brown (1/f^2, a fan or
    traffic rumble) or mains hum (50/60 Hz and harmonics)."""
    if kind not in NOISE_KINDS:
        raise ValueError(f"noise kind {kind!r} is not one of {NOISE_KINDS}")
    if kind == "none" or n == 0:
        return np.zeros(n, np.float32)
    if kind == "hum":
        t = np.arange(n) / SAMPLE_RATE
        f0 = 50.0 if rng.random() < 0.5 else 60.0
        x = sum(np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 2 * np.pi)) / k for k in (1, 2, 3, 5))
        x = x + 0.05 * rng.standard_normal(n)
    else:
        spectrum = np.fft.rfft(rng.standard_normal(n))
        f = np.maximum(np.fft.rfftfreq(n, 1.0 / SAMPLE_RATE), 20.0)
        spectrum *= {"white": 1.0, "pink": 1.0 / np.sqrt(f), "brown": 1.0 / f}[kind]
        x = np.fft.irfft(spectrum, n)
    x = np.asarray(x, np.float64)
    rms = float(np.sqrt(np.mean(x ** 2))) or 1.0
    return (x / rms * 10 ** (level_dbfs / 20.0)).astype(np.float32)


def mix_microphone(duration_s: float, speech: list[tuple[float, np.ndarray, float]], noise: np.ndarray) -> np.ndarray:
    """The microphone track from time 0: `speech` items (start s, audio, gain) over `noise`,
    clipped to [-1, 1] and returned as int16 (what a 16-bit capture stores)."""
    n = int(round(duration_s * SAMPLE_RATE))
    mic = np.zeros(n, np.float32)
    mic[:min(n, len(noise))] += noise[:n]
    for start_s, audio, gain in speech:
        i = int(round(start_s * SAMPLE_RATE))
        j = min(n, i + len(audio))
        if i < n:
            mic[i:j] += gain * audio[:j - i]
    return (np.clip(mic, -1.0, 1.0) * 32767.0).astype(np.int16)
