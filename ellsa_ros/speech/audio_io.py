"""Where sound comes from and goes to: sound-card streams (PortAudio via sounddevice) and WAV
files played at real-time pace, all as float32 mono frames at the engine rate.

A device is chosen by index or by (part of) its name; a device that does not exist raises
`AudioDeviceError` listing the devices that do. When a device cannot run at 16 kHz, the stream
opens at the device's own rate and resamples each block.
"""
from __future__ import annotations

import queue
import time
import wave
from pathlib import Path
from typing import Iterator

import numpy as np

from ellsa_ros.speech.pcm import ENGINE_RATE_HZ, clean_frame, resample, to_int16


class AudioDeviceError(RuntimeError):
    """No such audio device, or it cannot do what was asked."""


def refresh_devices() -> None:
    """Makes PortAudio enumerate devices again (it lists them once, when sounddevice is imported):
    call after plugging a device in or after starting a sound server."""
    import sounddevice as sd
    sd._terminate()      # sounddevice's documented way to re-scan: re-initialize PortAudio
    sd._initialize()


def list_devices(kind: str) -> list[tuple[int, str, int, float]]:
    """(index, name, channels, default rate) of the devices that can do `kind` ("input" | "output")."""
    import sounddevice as sd
    key = "max_input_channels" if kind == "input" else "max_output_channels"
    return [(i, d["name"], int(d[key]), float(d["default_samplerate"]))
            for i, d in enumerate(sd.query_devices()) if d[key] > 0]


def find_device(spec: int | str | None, kind: str) -> int | None:
    """The device index for an index, an exact or partial name (case-insensitive), or None (default)."""
    if kind not in ("input", "output"):
        raise ValueError(f"kind must be 'input' or 'output', got {kind!r}")
    if spec is None:
        return None
    devices = list_devices(kind)
    if isinstance(spec, str) and spec.strip().isdigit():
        spec = int(spec)
    if isinstance(spec, int):
        match = [d for d in devices if d[0] == spec]
    else:
        exact = [d for d in devices if d[1].lower() == spec.lower()]
        match = exact or [d for d in devices if spec.lower() in d[1].lower()]
    if len(match) == 1:
        return match[0][0]
    listing = "; ".join(f"{i}: {name} ({ch} ch, {rate:.0f} Hz)" for i, name, ch, rate in devices) or \
        "none (PortAudio sees no sound card; on a headless machine start PulseAudio with a null sink)"
    what = "matches more than one" if match else "matches no"
    raise AudioDeviceError(f"{kind} device {spec!r} {what} device; {kind} devices: {listing}")


def _open_rate(device: int | None, kind: str, want: int) -> int:
    """`want` if the device takes it, else the device's default rate (we resample)."""
    import sounddevice as sd
    check = sd.check_input_settings if kind == "input" else sd.check_output_settings
    try:
        check(device=device, samplerate=want, channels=1, dtype="float32")
        return want
    except sd.PortAudioError:
        return int(sd.query_devices(device, kind)["default_samplerate"])


class MicrophoneStream:
    """A sound-card input: `read()` returns the next frame of `frame_samples` at `sample_rate`.

    PortAudio calls back on its own thread; frames wait in a bounded queue (latest wins when
    the reader falls behind, and `dropped` counts what was lost)."""

    def __init__(self, device: int | str | None = None, sample_rate: int = ENGINE_RATE_HZ,
                 frame_samples: int = 320, queue_frames: int = 64) -> None:
        import sounddevice as sd
        if frame_samples <= 0:
            raise ValueError(f"frame_samples must be > 0, got {frame_samples}")
        self.sample_rate, self.frame_samples = sample_rate, frame_samples
        self.device = find_device(device, "input")
        self.device_rate = _open_rate(self.device, "input", sample_rate)
        self._queue: queue.Queue[np.ndarray] = queue.Queue(maxsize=queue_frames)
        self._pending = np.zeros(0, np.float32)
        self.dropped = 0
        self.overflows = 0
        block = int(round(frame_samples * self.device_rate / sample_rate))
        self._stream = sd.InputStream(device=self.device, samplerate=self.device_rate, channels=1,
                                      dtype="float32", blocksize=block, callback=self._callback)

    def _callback(self, indata: np.ndarray, frames: int, time_info: object, status: object) -> None:
        if status and getattr(status, "input_overflow", False):
            self.overflows += 1
        block = indata[:, 0].copy()
        while True:
            try:
                self._queue.put_nowait(block)
                return
            except queue.Full:
                try:
                    self._queue.get_nowait()
                    self.dropped += 1
                except queue.Empty:
                    pass

    def __enter__(self) -> MicrophoneStream:
        self._stream.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stream.stop()
        self._stream.close()

    def read(self, timeout_s: float = 1.0) -> np.ndarray:
        """Blocks until one frame is available; raises TimeoutError if the device delivers nothing."""
        while len(self._pending) < self.frame_samples:
            try:
                block = self._queue.get(timeout=timeout_s)
            except queue.Empty:
                raise TimeoutError(f"no audio from input device {self.device} for {timeout_s} s") from None
            if self.device_rate != self.sample_rate:
                block = resample(block, self.device_rate, self.sample_rate)
            self._pending = np.concatenate([self._pending, clean_frame(block, "microphone block")])
        frame, self._pending = self._pending[:self.frame_samples], self._pending[self.frame_samples:]
        return frame


class SpeakerStream:
    """A sound-card output: `write(frame)` blocks until the device has room (real-time pace)."""

    def __init__(self, device: int | str | None = None, sample_rate: int = ENGINE_RATE_HZ) -> None:
        import sounddevice as sd
        self.sample_rate = sample_rate
        self.device = find_device(device, "output")
        self.device_rate = _open_rate(self.device, "output", sample_rate)
        self._stream = sd.OutputStream(device=self.device, samplerate=self.device_rate, channels=1, dtype="float32")
        self.underflows = 0

    def __enter__(self) -> SpeakerStream:
        self._stream.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stream.stop()
        self._stream.close()

    def write(self, frame: np.ndarray) -> None:
        x = clean_frame(frame, "speaker frame")
        if self.device_rate != self.sample_rate:
            x = resample(x, self.sample_rate, self.device_rate)
        if self._stream.write(x.reshape(-1, 1)):
            self.underflows += 1


class _Pace:
    """Sleeps so that frame k is handed over no earlier than k * frame duration after start."""

    def __init__(self, realtime: bool) -> None:
        self.realtime, self._t0, self._sent_s = realtime, None, 0.0

    def wait(self, duration_s: float) -> None:
        if not self.realtime:
            return
        if self._t0 is None:
            self._t0 = time.monotonic()
        delay = self._t0 + self._sent_s - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        self._sent_s += duration_s


def read_wav(path: str | Path, sample_rate: int = ENGINE_RATE_HZ) -> np.ndarray:
    """A whole WAV file as float32 mono at `sample_rate` (channels averaged, resampled)."""
    import soundfile as sf
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no WAV file at {path}")
    audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    mono = clean_frame(audio.mean(axis=1), f"WAV {path.name}")
    return resample(mono, rate, sample_rate) if rate != sample_rate else mono


class WavFileSource:
    """Frames from a WAV file, at real-time pace unless `realtime=False` (tests, simulation)."""

    def __init__(self, path: str | Path, frame_samples: int = 320, sample_rate: int = ENGINE_RATE_HZ,
                 realtime: bool = True) -> None:
        if frame_samples <= 0:
            raise ValueError(f"frame_samples must be > 0, got {frame_samples}")
        self.audio = read_wav(path, sample_rate)
        self.sample_rate, self.frame_samples, self.realtime = sample_rate, frame_samples, realtime

    def __iter__(self) -> Iterator[np.ndarray]:
        pace, n = _Pace(self.realtime), self.frame_samples
        for i in range(0, len(self.audio), n):
            frame = self.audio[i:i + n]
            if len(frame) < n:
                frame = np.concatenate([frame, np.zeros(n - len(frame), np.float32)])
            pace.wait(n / self.sample_rate)
            yield frame


class WavFileSink:
    """Writes frames to a 16-bit WAV file, consuming them at real-time pace like a speaker would."""

    def __init__(self, path: str | Path, sample_rate: int = ENGINE_RATE_HZ, realtime: bool = True) -> None:
        self.path, self.sample_rate = Path(path), sample_rate
        self._pace = _Pace(realtime)
        self._wav = wave.open(str(self.path), "wb")
        self._wav.setnchannels(1)
        self._wav.setsampwidth(2)
        self._wav.setframerate(sample_rate)
        self.samples_written = 0

    def write(self, frame: np.ndarray) -> None:
        x = clean_frame(frame, "WAV sink frame")
        self._pace.wait(len(x) / self.sample_rate)
        self._wav.writeframes(to_int16(x).tobytes())
        self.samples_written += len(x)

    def close(self) -> None:
        self._wav.close()

    def __enter__(self) -> WavFileSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
