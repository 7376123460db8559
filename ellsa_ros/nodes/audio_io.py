"""Audio in and out for the microphone and speaker nodes: sounddevice or WAV files.

Frames are int16, shaped (samples, channels). A WAV source is paced on the monotonic clock
at real time (frame k is delivered when its last sample would have been captured), so a
file behaves like a microphone. sounddevice is imported only when a device is opened: it
needs PortAudio (Debian `libportaudio2`) and lists no devices on a machine without sound.
"""
from __future__ import annotations

import queue
import threading
import time
import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ellsa_ros.runtime.speech_out import resample

FrameCallback = Callable[[np.ndarray], None]


def device_spec(device: str) -> int | str | None:
    """The `device` parameter as sounddevice takes it: None (default), an index or a name."""
    device = device.strip()
    if not device:
        return None
    return int(device) if device.isdigit() else device


def open_stream(kind: str, **kwargs) -> object:
    """A started-later sounddevice InputStream or OutputStream; OSError if there is no such device."""
    try:
        import sounddevice as sd
        return getattr(sd, kind)(**kwargs)
    except OSError:
        raise
    except Exception as e:  # noqa: BLE001 - sounddevice.PortAudioError derives from Exception only
        raise OSError(f"audio device {kwargs.get('device')!r}: {e}") from None


def read_wav(path: str | Path, sample_rate: int, channels: int) -> np.ndarray:
    """A 16-bit PCM WAV file as (samples, channels) int16 at `sample_rate` (resampled if needed)."""
    try:
        with wave.open(str(path), "rb") as w:
            if w.getsampwidth() != 2:
                raise ValueError(f"{path}: {8 * w.getsampwidth()}-bit samples, expected 16-bit PCM")
            rate, ch = w.getframerate(), w.getnchannels()
            pcm = np.frombuffer(w.readframes(w.getnframes()), np.int16).reshape(-1, ch)
    except wave.Error as e:
        raise ValueError(f"{path}: not a PCM WAV file ({e})") from None
    mono = pcm.astype(np.float32).mean(axis=1) / 32768.0
    if rate != sample_rate:
        mono = resample(mono, rate, sample_rate)
    out = (np.clip(mono, -1.0, 1.0) * 32767.0).astype(np.int16)
    return np.repeat(out[:, None], channels, axis=1)


class WavFileSource:
    """Delivers a WAV file's frames on a thread at real-time pace; silence after the end
    unless `loop`."""

    def __init__(self, path: str, sample_rate: int, frame_samples: int, channels: int,
                 on_frame: FrameCallback, loop: bool = True) -> None:
        self.pcm = read_wav(path, sample_rate, channels)
        self.frame_samples, self.channels, self.loop = frame_samples, channels, loop
        self.frame_s = frame_samples / sample_rate
        self.on_frame = on_frame
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ellsa-wav-source", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def frame(self, k: int) -> np.ndarray:
        """Frame k of the endless stream (the file, then the file again or silence)."""
        n, total = self.frame_samples, len(self.pcm)
        start = k * n
        if self.loop and total:
            idx = (start + np.arange(n)) % total
            return self.pcm[idx]
        out = np.zeros((n, self.channels), np.int16)
        part = self.pcm[start:start + n]
        out[: len(part)] = part
        return out

    def _run(self) -> None:
        t0 = time.monotonic()
        k = 0
        while not self._stop.is_set():
            due = t0 + (k + 1) * self.frame_s   # the frame's last sample is "captured" then
            delay = due - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                return
            self.on_frame(self.frame(k))
            k += 1

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=1.0)


class DeviceInput:
    """A sounddevice input stream delivering frames of `frame_samples` from its own thread."""

    def __init__(self, device: str, sample_rate: int, frame_samples: int, channels: int,
                 on_frame: FrameCallback) -> None:
        self.on_frame = on_frame
        self.overflows = 0
        self._stream = open_stream("InputStream", device=device_spec(device), samplerate=sample_rate,
                                   channels=channels, dtype="int16", blocksize=frame_samples, callback=self._callback)

    def _callback(self, indata: np.ndarray, frames: int, time_info, status) -> None:
        if status.input_overflow:
            self.overflows += 1
        self.on_frame(indata.copy())

    def start(self) -> None:
        self._stream.start()

    def close(self) -> None:
        self._stream.stop()
        self._stream.close()


class WavFileSink:
    """Writes frames to a 16-bit mono WAV file as they come; every frame counts as played."""

    def __init__(self, path: str, sample_rate: int) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._wav = wave.open(str(path), "wb")
        self._wav.setnchannels(1)
        self._wav.setsampwidth(2)
        self._wav.setframerate(sample_rate)
        self._lock = threading.Lock()
        self.on_played: FrameCallback | None = None

    def play(self, frame: np.ndarray) -> None:
        """Called with each (samples,) int16 frame of the robot's voice."""
        with self._lock:
            if self._wav is None:
                return
            self._wav.writeframes(np.ascontiguousarray(frame, np.int16).tobytes())
        if self.on_played is not None:
            self.on_played(frame)

    def close(self) -> None:
        with self._lock:
            if self._wav is not None:
                self._wav.close()
                self._wav = None


class DeviceOutput:
    """A sounddevice output stream fed from a short queue; reports each block it really played
    (silence when the queue ran dry), which is what echo handling needs."""

    def __init__(self, device: str, sample_rate: int, frame_samples: int) -> None:
        self.frame_samples = frame_samples
        self.on_played: FrameCallback | None = None
        self.dropped = 0
        self._frames: queue.Queue[np.ndarray] = queue.Queue(maxsize=50)
        self._stream = open_stream("OutputStream", device=device_spec(device), samplerate=sample_rate, channels=1,
                                   dtype="int16", blocksize=frame_samples, callback=self._callback)
        self._stream.start()

    def play(self, frame: np.ndarray) -> None:
        try:
            self._frames.put_nowait(np.asarray(frame, np.int16))
        except queue.Full:
            self.dropped += 1   # the device fell behind by a whole second: drop rather than lag

    def _callback(self, outdata: np.ndarray, frames: int, time_info, status) -> None:
        try:
            frame = self._frames.get_nowait()
        except queue.Empty:
            frame = np.zeros(frames, np.int16)
        frame = np.resize(frame, frames) if len(frame) != frames else frame
        outdata[:, 0] = frame
        if self.on_played is not None:
            self.on_played(frame.copy())

    def close(self) -> None:
        self._stream.stop()
        self._stream.close()
