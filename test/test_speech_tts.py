"""The three voices behind runtime.speech_out.TTS, resampling, and the missing-backend errors."""
import numpy as np
import pytest

from ellsa_ros.runtime.speech_out import TTS, SpeechOutput
from ellsa_ros.speech import make_tts
from ellsa_ros.speech import tts as tts_module


@pytest.fixture(scope="module", params=["hibari", "piper", "espeak"])
def voice(request):
    return make_tts(request.param)


def test_each_backend_streams_one_chunk_per_sentence_at_its_rate(voice):
    assert isinstance(voice, TTS)
    chunks = list(voice.synthesize("The bowl is on the plate. Now I will open the drawer."))
    audio = np.concatenate(chunks)
    assert all(c.dtype == np.float32 for c in chunks)
    assert len(chunks) >= 2                                    # streamed, not one block at the end
    seconds = len(audio) / voice.sample_rate
    assert 2.0 < seconds < 8.0                                 # about 13 words of speech
    assert 0.05 < np.max(np.abs(audio)) <= 1.0
    assert list(voice.synthesize("   ")) == []


def test_resampled_to_the_engine_rate_keeps_the_duration():
    native = make_tts("hibari")
    at16 = make_tts("hibari", sample_rate=16000)
    assert at16.sample_rate == 16000
    a = np.concatenate(list(native.synthesize("Stop right there.")))
    b = np.concatenate(list(at16.synthesize("Stop right there.")))
    assert abs(len(b) - len(a) * 16000 / native.sample_rate) <= 1


def test_speech_output_plays_hibari_frame_by_frame():
    out = SpeechOutput(make_tts("hibari"), sample_rate=16000, frame_samples=320, synchronous=True)
    out.say("Okay, picking up the bowl.")
    frames, finished = [], None
    while finished is None and len(frames) < 1000:
        f, finished = out.next_frame()
        frames.append(f)
    assert finished == "Okay, picking up the bowl."
    assert sum(np.any(f != 0) for f in frames) > 25            # over half a second of sound


def test_unknown_backend_and_missing_espeak_name_what_to_do(monkeypatch):
    with pytest.raises(ValueError, match="hibari.*piper.*espeak"):
        make_tts("festival")
    monkeypatch.setattr(tts_module.shutil, "which", lambda _name: None)
    with pytest.raises(tts_module.TTSUnavailable, match="apt-get install espeak-ng"):
        make_tts("espeak")


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="voice"):
        make_tts("hibari", voice="nobody")
    with pytest.raises(ValueError, match="words_per_minute"):
        make_tts("espeak", words_per_minute=5)
    with pytest.raises(ValueError, match="sample_rate"):
        make_tts("espeak", sample_rate=12345)


def test_piper_without_variation_repeats_itself():
    from ellsa_ros.speech.tts import PiperTTS
    steady = PiperTTS(vary=False)
    runs = [np.concatenate(list(steady.synthesize("Put the bowl on the plate."))) for _ in range(2)]
    assert len(runs[0]) > 0.5 * steady.sample_rate and np.array_equal(runs[0], runs[1])
