"""Reference-based echo handling: the path is learned, self-speech is gated, the user passes."""
from functools import cache

import numpy as np
import pytest

from ellsa_ros.runtime.hearing import EchoFilter
from ellsa_ros.speech import make_echo_filter, make_vad
from ellsa_ros.speech.echo import EchoFilterConfig
from ellsa_ros.speech.pcm import resample

RATE, FRAME = 16000, 320


@cache
def speech(text: str) -> np.ndarray:
    from ellsa_ros.speech.tts import HibariTTS
    tts = HibariTTS()
    return resample(np.concatenate(list(tts.synthesize(text))), tts.sample_rate, RATE)


def robot_voice() -> np.ndarray:
    return np.concatenate([speech("I am placing the bowl on the plate now, and then I will open the drawer."),
                           speech("Let me know if you want something else moved.")])


def through_room(played: np.ndarray, delay: int, gain: float) -> np.ndarray:
    mic = np.zeros(len(played), np.float32)
    mic[delay:] += gain * played[:-delay]
    mic[delay + 60:] += 0.3 * gain * played[:-(delay + 60)]          # one early reflection
    return mic + np.random.default_rng(0).normal(0, 1e-3, len(mic)).astype(np.float32)


def run(echo, vad, mic, played):
    """Frame by frame as the runtime's reflexes do: the VAD is told when the robot's voice plays."""
    fired = []
    for i in range(0, len(mic) - FRAME + 1, FRAME):
        vad.far_end = bool(np.any(played[i:i + FRAME]))
        fired.append(vad.is_speech(echo.clean(mic[i:i + FRAME], played[i:i + FRAME])))
    return fired


def test_learns_delay_and_gain_and_keeps_vad_quiet_on_self_speech():
    played = robot_voice()
    mic = through_room(played, delay=592, gain=0.4)                    # 37 ms
    echo, vad = make_echo_filter(), make_vad()
    assert isinstance(echo, EchoFilter)
    fired = run(echo, vad, mic, played)
    assert abs(echo.delay_ms - 37.0) <= 0.5
    assert echo.gain == pytest.approx(0.4, rel=0.1)
    assert sum(fired) == 0
    vad.reset()
    assert sum(vad.is_speech(mic[i:i + FRAME]) for i in range(0, len(mic) - FRAME + 1, FRAME)) > 50   # unfiltered


def test_user_talking_over_the_robot_still_reaches_the_vad():
    played = robot_voice()
    mic = through_room(played, delay=400, gain=0.5)
    user = speech("Stop! Put it down.")
    at = 2 * RATE
    scale = np.sqrt(np.mean(mic[RATE:3 * RATE] ** 2)) / np.sqrt(np.mean(user ** 2))
    mic[at:at + len(user)] += scale * user                             # as loud as the echo
    fired = run(make_echo_filter(), make_vad(), mic, played)
    first = fired.index(True) * FRAME
    assert at <= first <= at + len(user)


def test_without_reference_the_microphone_passes_unchanged():
    echo = make_echo_filter()
    mic = np.random.default_rng(1).normal(0, 0.1, FRAME).astype(np.float32)
    assert np.array_equal(echo.clean(mic, np.zeros(FRAME, np.float32)), mic)
    assert echo.delay_ms is None and echo.gated_frames == 0


def test_before_the_path_is_known_quieter_mic_is_gated():
    echo = make_echo_filter()
    played = np.full(FRAME, 0.5, np.float32)
    out = echo.clean(0.1 * played, played)
    assert np.max(np.abs(out)) < 0.001 and echo.gated_frames == 1


def test_mismatched_frames_and_bad_config_are_refused():
    echo = make_echo_filter()
    with pytest.raises(ValueError, match="played frame"):
        echo.clean(np.zeros(320, np.float32), np.zeros(160, np.float32))
    with pytest.raises(ValueError):
        EchoFilterConfig(sample_rate=44100)
    with pytest.raises(ValueError, match="window_ms"):
        EchoFilterConfig(window_ms=10, taps_ms=16)
