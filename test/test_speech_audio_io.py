"""WAV sources and sinks, device lookup errors, and a real PortAudio loopback through PulseAudio."""
import os
import shutil
import subprocess
import threading
import time
from functools import cache

import numpy as np
import pytest
import soundfile as sf

from ellsa_ros.speech.audio_io import (
    AudioDeviceError,
    MicrophoneStream,
    SpeakerStream,
    WavFileSink,
    WavFileSource,
    find_device,
    read_wav,
    refresh_devices,
)
from ellsa_ros.speech.pcm import resample


@cache
def speech(text: str) -> np.ndarray:
    from ellsa_ros.speech.tts import HibariTTS
    tts = HibariTTS()
    return resample(np.concatenate(list(tts.synthesize(text))), tts.sample_rate, 16000)


def test_wav_sink_then_source_round_trip(tmp_path):
    audio = speech("Put the bowl on the plate.")
    path = tmp_path / "said.wav"
    with WavFileSink(path, realtime=False) as sink:
        for i in range(0, len(audio), 320):
            sink.write(audio[i:i + 320])
    frames = list(WavFileSource(path, frame_samples=320, realtime=False))
    assert all(len(f) == 320 for f in frames)
    back = np.concatenate(frames)[:len(audio)]
    assert np.max(np.abs(back - audio)) < 2 / 32768              # 16-bit quantization only


def test_wav_source_resamples_and_mixes_down(tmp_path):
    t = np.arange(44100) / 44100
    tone = 0.5 * np.sin(2 * np.pi * 300 * t)
    sf.write(tmp_path / "stereo.wav", np.stack([tone, tone], axis=1), 44100)
    mono = read_wav(tmp_path / "stereo.wav")
    assert len(mono) == 16000
    assert np.max(np.abs(mono[200:-200] - 0.5 * np.sin(2 * np.pi * 300 * np.arange(16000) / 16000)[200:-200])) < 2e-3


def test_wav_sink_survives_nan_and_clipping(tmp_path):
    with WavFileSink(tmp_path / "bad.wav", realtime=False) as sink:
        sink.write(np.array([np.nan, 4.0, -4.0, 0.5], np.float32))
    assert read_wav(tmp_path / "bad.wav").tolist() == pytest.approx([0.0, 1.0, -1.0, 0.5], abs=1e-4)


def test_missing_wav_and_missing_device_say_what_exists(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.wav"):
        WavFileSource(tmp_path / "nothing.wav")
    with pytest.raises(AudioDeviceError, match="no-such-card.*input devices: "):
        find_device("no-such-card", "input")


@pytest.fixture(scope="module")
def pulse(tmp_path_factory):
    """A private PulseAudio server with a 16 kHz null sink whose monitor is the default source."""
    exe = shutil.which("pulseaudio")
    assert exe is not None, "PulseAudio is not installed: ./install.sh installs pulseaudio and pulseaudio-utils"
    runtime = tmp_path_factory.mktemp("pulse")
    env = dict(os.environ, PULSE_RUNTIME_PATH=str(runtime), HOME=str(runtime))
    cmd = [exe, "--daemonize=yes", "--exit-idle-time=-1", "-n",
           "--load=module-null-sink sink_name=robot_spk rate=16000",
           "--load=module-native-protocol-unix", "--load=module-always-sink"]
    started = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=30)
    assert started.returncode == 0, f"PulseAudio could not start: {started.stderr.strip()[-300:]}"
    saved = {k: os.environ.get(k) for k in ("PULSE_RUNTIME_PATH", "PULSE_SINK", "PULSE_SOURCE")}
    os.environ.update(PULSE_RUNTIME_PATH=str(runtime), PULSE_SINK="robot_spk", PULSE_SOURCE="robot_spk.monitor")
    refresh_devices()            # PortAudio lists ALSA's "pulse" device only while a server answers
    yield
    subprocess.run([exe, "--kill"], env=env, capture_output=True, timeout=30)
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    refresh_devices()


def test_speech_played_through_portaudio_comes_back_from_the_monitor(pulse):
    find_device("pulse", "output")   # install.sh installs libasound2-plugins: PortAudio sees "pulse"
    said = speech("Stop right there.")
    played = np.concatenate([np.zeros(8000, np.float32), said, np.zeros(16000, np.float32)])
    recorded: list[np.ndarray] = []
    with MicrophoneStream("pulse", frame_samples=320) as mic:
        done = threading.Event()

        def record():
            while not done.is_set():
                recorded.append(mic.read(timeout_s=2.0))
        reader = threading.Thread(target=record, daemon=True)
        reader.start()
        with SpeakerStream("pulse") as speaker:
            for i in range(0, len(played), 320):
                speaker.write(played[i:i + 320])
        time.sleep(0.5)                     # let the tail of what was played come back
        done.set()
        reader.join(timeout=5)
    got = np.concatenate(recorded)
    assert len(got) >= len(played) // 2
    # The recording holds the played speech: find it by cross-correlation and compare.
    xc = np.correlate(got, said, mode="valid")
    lag = int(np.argmax(xc))
    segment = got[lag:lag + len(said)]
    rho = float(segment @ said / (np.linalg.norm(segment) * np.linalg.norm(said) + 1e-9))
    assert rho > 0.9
