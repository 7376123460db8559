"""Silero VAD: onset and offset on real synthesized speech, frame-size independence, bad input."""
from functools import cache

import numpy as np
import pytest

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


def test_voiced_is_each_window_alone_and_reset_forgets(vad):
    """What the runtime reads: `voiced` follows the model window by window (the reflexes tell
    a user still talking from the hangover by it), `is_speech` holds on through the hangover,
    and `reset` forgets an utterance in the middle."""
    s = speech("Put the bowl on the plate.")
    audio = np.concatenate([np.zeros(RATE, np.float32), s, np.zeros(RATE, np.float32)])
    vad.reset()
    decisions, voiced = [], []
    for i in range(0, len(audio) - 320 + 1, 320):
        decisions.append(vad.is_speech(audio[i:i + 320]))
        voiced.append(vad.voiced)
    assert not any(voiced[:RATE // 320]) and any(voiced)
    last = max(i for i, v in enumerate(voiced) if v)
    off = len(decisions) - decisions[::-1].index(True)
    # after the last voiced window speech stays on for the hangover, and voiced stays off
    assert not any(voiced[last + 1:])
    assert all(decisions[last:off]) and (off - last) * 320 >= vad.config.hangover_ms / 1000 * RATE - 512
    vad.reset()
    middle = RATE + len(s) // 2
    assert [vad.is_speech(audio[i:i + 320]) for i in range(RATE, middle, 320)][-1] and vad.voiced
    vad.reset()
    assert not vad.is_speech(np.zeros(320, np.float32)) and not vad.voiced and vad.probability == 0.0


def test_speech_turns_on_after_its_start_and_off_after_the_hangover(vad):
    s = speech("Put the bowl on the plate.")
    audio = np.concatenate([np.zeros(RATE, np.float32), s, np.zeros(RATE, np.float32)])
    start, end = edges(audio)
    decisions = run(vad, audio, 320)
    on = decisions.index(True)
    # on within two 20 ms frames of the first sound (measured: in the frame after it, ~20 ms)
    assert start <= (on + 1) * 320 <= start + 0.04 * RATE
    assert not any(decisions[:start // 320])                      # nothing before it
    off = len(decisions) - decisions[::-1].index(True)            # first frame after the last True
    hangover = vad.config.hangover_ms / 1000 * RATE
    assert end + hangover < off * 320 <= end + 0.45 * RATE        # off once the hangover has passed (~360 ms)
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


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """1/f noise of unit RMS: a room's fans and motors, loud low down and quiet high up."""
    spectrum = np.fft.rfft(rng.normal(size=n))
    spectrum /= np.sqrt(np.maximum(np.arange(len(spectrum)), 1.0))
    x = np.fft.irfft(spectrum, n)
    return (x / np.sqrt(np.mean(x * x))).astype(np.float32)


@pytest.mark.parametrize("text", ["Halt!", "Stop!"])
def test_in_pink_noise_the_high_band_hears_a_soft_start_early(text):
    """"h" and "s" are at the noise level of the whole band at 20 dB SNR, above it in the band
    over 2 kHz. 0.3 s of room before the word: the floor must be known by then."""
    s = speech(text)
    pad = np.zeros(int(0.3 * RATE), np.float32)
    clean = np.concatenate([pad, s, pad])
    start, end = edges(clean)
    rms = float(np.sqrt(np.mean(np.square(clean[start:end]))))
    noisy = clean + rms / 10 * pink_noise(len(clean), np.random.default_rng(1))      # 20 dB SNR

    def onset(vad) -> int:
        d = run(vad, noisy, 320)
        assert not any(d[:start // 320])
        return next((i + 1) * 320 for i, x in enumerate(d) if x) - start

    with_band, whole_band_only = onset(make_vad()), onset(make_vad(fast_onset_band_hz=0.0))
    assert 0 < with_band <= 0.05 * RATE < whole_band_only      # measured: ~35 ms against 80-95 ms
    talking = make_vad()
    talking.far_end = True      # while the robot speaks, the high band waits (its echo's residue is sibilant)
    assert onset(talking) == whole_band_only


@pytest.mark.parametrize("level", [0.003, 0.03])
def test_pink_noise_alone_is_never_speech(level):
    vad = make_vad()
    noise = level * pink_noise(10 * RATE, np.random.default_rng(4))
    assert not any(run(vad, noise, 320))
    assert vad.withdrawn == 0                                  # no fast onset even started


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
                                 dict(sample_rate=44100), dict(webrtc_pregate=7), dict(hangover_ms=-1),
                                 dict(fast_onset_band_hz=8000.0), dict(fast_onset_band_db=0.0),
                                 dict(withdraw_quiet_ms=300.0)])
def test_bad_config_is_refused(bad):
    with pytest.raises(ValueError):
        SileroVADConfig(**bad)


def test_unknown_vad_name_lists_the_choices():
    with pytest.raises(ValueError, match="silero-ggml"):
        make_vad("webrtc")
