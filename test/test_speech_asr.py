"""faster-whisper transcripts with the pinned tiny.en model, loaded by path."""
from functools import cache

import numpy as np
import pytest

from ellsa_ros.runtime.hearing import Transcriber
from ellsa_ros.speech import make_transcriber
from ellsa_ros.speech.asr import WhisperConfig
from ellsa_ros.speech.pcm import resample


@cache
def speech(text: str) -> np.ndarray:
    from ellsa_ros.speech.tts import HibariTTS
    tts = HibariTTS()
    return resample(np.concatenate(list(tts.synthesize(text))), tts.sample_rate, 16000)


@pytest.fixture(scope="module")
def asr():
    return make_transcriber(vocabulary=("cream cheese", "basket"))


def test_transcribes_a_command(asr):
    assert isinstance(asr, Transcriber)
    text = asr.transcribe(speech("Move the cream cheese to the basket."), prompt="black bowl")
    words = text.lower().replace(".", "").split()
    assert {"cream", "cheese", "basket"} <= set(words)


def test_silence_too_short_and_broken_audio_give_empty_text(asr):
    assert asr.transcribe(np.zeros(16000, np.float32)) == ""
    assert asr.transcribe(np.zeros(100, np.float32)) == ""
    assert asr.transcribe(np.full(800, np.nan, np.float32)) == ""


def test_gpu_config_and_bad_config(tmp_path):
    (tmp_path / "model.bin").write_bytes(b"")
    gpu = WhisperConfig.gpu(str(tmp_path))
    assert (gpu.device, gpu.compute_type) == ("cuda", "float16")
    with pytest.raises(ValueError, match="no model.bin"):
        WhisperConfig(model_path=str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="compute_type"):
        WhisperConfig(compute_type="int4")
    with pytest.raises(ValueError, match="model_path"):
        make_transcriber(device="cuda")
    with pytest.raises(ValueError, match="whisper"):
        make_transcriber("vosk")


def test_a_run_repeats_where_the_fallback_samples():
    """Whisper falls back to sampling on hard audio (babble); a seeded model gives the same
    transcripts for the same utterances in the same order."""
    x = speech("Put the black bowl between the plate and the ramekin on the cookie box.")
    noisy = (x + np.random.default_rng(0).normal(0, 0.3 * np.std(x), len(x))).astype(np.float32)
    runs = []
    for _ in range(2):
        asr = make_transcriber(temperatures=(1.0,), cpu_threads=1)   # always sampling
        runs.append([asr.transcribe(noisy) for _ in range(3)])
    assert runs[0] == runs[1]
    assert len(set(runs[0])) > 1, runs[0]   # it did sample: the same audio gave other words
