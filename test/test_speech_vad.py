"""Silero VAD: onset and offset on real synthesized speech, frame-size independence, bad input."""
from functools import cache

import numpy as np
import pytest

from ellsa_ros.runtime.hearing import VAD
from ellsa_ros.speech import make_vad
from ellsa_ros.speech.pcm import resample
from ellsa_ros.speech.vad import SileroVADConfig

RATE = 16000


@cache
def speech(text: str) -> np.ndarray:
    from ellsa_ros.speech.tts import HibariTTS
    tts = HibariTTS()
    return resample(np.concatenate(list(tts.synthesize(text))), tts.sample_rate, RATE)


def edges(audio: np.ndarray) -> tuple[int, int]:
    loud = np.nonzero(np.abs(audio) > 0.02 * np.abs(audio).max())[0]
    return int(loud[0]), int(loud[-1])


@pytest.fixture(scope="module")
def vad():
    return make_vad("silero")


def run(vad, audio: np.ndarray, frame: int) -> list[bool]:
    vad.reset()
    return [vad.is_speech(audio[i:i + frame]) for i in range(0, len(audio) - frame + 1, frame)]


def test_implements_the_runtime_interface(vad):
    assert isinstance(vad, VAD)


def test_speech_turns_on_after_its_start_and_off_after_the_hangover(vad):
    s = speech("Put the bowl on the plate.")
    audio = np.concatenate([np.zeros(RATE, np.float32), s, np.zeros(RATE, np.float32)])
    start, end = edges(audio)
    decisions = run(vad, audio, 320)
    on = decisions.index(True)
    assert start <= (on + 1) * 320 <= start + 0.25 * RATE          # on within 250 ms of the first sound
    assert not any(decisions[:start // 320])                      # nothing before it
    off = len(decisions) - decisions[::-1].index(True)            # first frame after the last True
    assert end < off * 320 <= end + 0.6 * RATE                      # off once the hangover has passed
    assert not any(decisions[off:])


def test_decisions_do_not_depend_on_the_callers_frame_size():
    vad = make_vad("silero", fast_onset=False)
    s = speech("Open the top drawer.")
    audio = np.concatenate([np.zeros(8000, np.float32), s, np.zeros(16000, np.float32)])
    def onsets(frame):
        d = run(vad, audio, frame)
        return [(i + 1) * frame for i in range(1, len(d)) if d[i] and not d[i - 1]]
    # the model decides per 512-sample window; whatever the frame, speech starts in the same window
    assert {o // 512 for o in onsets(512)} == {o // 512 for o in onsets(256)} != set()
    assert {o // 512 for o in onsets(1024)} == {o // 512 + (o // 512) % 2 for o in onsets(512)}


def test_silence_noise_and_broken_frames_are_not_speech(vad):
    vad.reset()
    rng = np.random.default_rng(0)
    frames = [np.zeros(320, np.float32), np.full(320, np.nan, np.float32), np.full(320, 5.0, np.float32),
              np.zeros(0, np.float32)] + [rng.normal(0, 0.01, 320).astype(np.float32) for _ in range(100)]
    decisions, probabilities = [], []
    for f in frames:
        decisions.append(vad.is_speech(f))
        probabilities.append(vad.probability)
    assert max(probabilities) < vad.config.onset_threshold         # the model never heard speech
    assert not any(decisions[-90:])                                 # a rise from silence is withdrawn


def test_fast_onset_starts_before_the_model_alone_and_a_bang_is_withdrawn():
    audio = np.concatenate([np.zeros(RATE, np.float32), speech("Stop!"), np.zeros(RATE, np.float32)])
    fast, model_only = run(make_vad(), audio, 320), run(make_vad(fast_onset=False), audio, 320)
    assert fast.index(True) < model_only.index(True)
    vad = make_vad()
    bang = np.random.default_rng(2).normal(0, 0.3, 960).astype(np.float32)   # 60 ms of broadband noise
    decisions = run(vad, np.concatenate([np.zeros(RATE, np.float32), bang, np.zeros(RATE, np.float32)]), 320)
    on = decisions.index(True)
    assert on * 320 >= RATE and not any(decisions[on + 8:])                   # gone within 160 ms
    assert vad.withdrawn == 1


def test_pregate_and_ggml_backend_find_the_same_utterance():
    s = speech("Pick up the black bowl.")
    audio = np.concatenate([np.zeros(RATE, np.float32), s, np.zeros(RATE, np.float32)])
    start, _ = edges(audio)
    for v in (make_vad("silero", webrtc_pregate=2), make_vad("silero-ggml")):
        d = run(v, audio, 512)
        assert start <= (d.index(True) + 1) * 512 <= start + 0.3 * RATE
    gated = make_vad("silero", webrtc_pregate=3)
    run(gated, np.zeros(RATE, np.float32), 512)
    assert gated.gated_windows == gated.windows == RATE // 512


@pytest.mark.parametrize("bad", [dict(backend="torch"), dict(onset_threshold=0.2, offset_threshold=0.4),
                                 dict(sample_rate=44100), dict(webrtc_pregate=7), dict(hangover_ms=-1)])
def test_bad_config_is_refused(bad):
    with pytest.raises(ValueError):
        SileroVADConfig(**bad)


def test_unknown_vad_name_lists_the_choices():
    with pytest.raises(ValueError, match="silero-ggml"):
        make_vad("webrtc")
