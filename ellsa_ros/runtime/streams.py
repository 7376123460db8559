"""Input streams: the audio ring, latest-frame slots per camera, the joint state.

Every sample arrives with a capture stamp on the engine clock. A sample that is malformed
(wrong rate, size, shape, dtype, non-finite values, a stamp going backwards) raises
`InputError` naming what was wrong; the engine turns that into an `InvalidInput` event and
drops the sample, so bad data never reaches the policy or the arm.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np


class InputError(ValueError):
    """A sample was refused. `stream` names the input it came from."""

    def __init__(self, stream: str, reason: str) -> None:
        super().__init__(f"{stream}: {reason}")
        self.stream = stream
        self.reason = reason


def _check_stamp(stream: str, stamp: float, last: float | None) -> None:
    if not np.isfinite(stamp):
        raise InputError(stream, f"stamp {stamp} is not finite")
    if last is not None and stamp < last:
        raise InputError(stream, f"stamp {stamp:.6f} s is earlier than the previous one ({last:.6f} s)")


class AudioRing:
    """The last `capacity_s` of microphone audio, mono float32, frames of 20–32 ms."""

    FRAME_MS_MIN = 20.0
    FRAME_MS_MAX = 32.0

    def __init__(self, sample_rate: int = 16000, capacity_s: float = 10.0) -> None:
        self.sample_rate = sample_rate
        self.capacity_s = capacity_s
        self._frames: deque[tuple[float, np.ndarray]] = deque()
        self.last_stamp: float | None = None

    def validate(self, frame: np.ndarray, stamp: float, sample_rate: int | None = None) -> np.ndarray:
        """Returns the frame as float32 (n,) in [-1, 1], or raises InputError."""
        if sample_rate is not None and sample_rate != self.sample_rate:
            raise InputError("audio", f"sample rate {sample_rate} Hz, expected {self.sample_rate} Hz")
        a = np.asarray(frame)
        if a.ndim == 2 and a.shape[1] == 1:
            a = a[:, 0]
        if a.ndim != 1:
            raise InputError("audio", f"frame shape {a.shape}, expected mono (samples,)")
        ms = 1000.0 * len(a) / self.sample_rate
        if not (self.FRAME_MS_MIN - 1e-6 <= ms <= self.FRAME_MS_MAX + 1e-6):
            raise InputError("audio", f"frame of {len(a)} samples ({ms:.1f} ms), "
                                      f"expected 20–32 ms at {self.sample_rate} Hz")
        if a.dtype == np.int16:
            a = a.astype(np.float32) / 32768.0
        elif a.dtype in (np.float32, np.float64):
            a = a.astype(np.float32)
            if not np.all(np.isfinite(a)):
                raise InputError("audio", "frame contains NaN or inf")
            a = np.clip(a, -1.0, 1.0)
        else:
            raise InputError("audio", f"dtype {a.dtype}, expected int16 or float32")
        _check_stamp("audio", stamp, self.last_stamp)
        return a

    def push(self, frame: np.ndarray, stamp: float) -> None:
        """`frame` must already be validated; `stamp` is the capture time of its first sample."""
        self._frames.append((stamp, frame))
        self.last_stamp = stamp
        while self._frames and self._frames[0][0] < stamp - self.capacity_s:
            self._frames.popleft()

    def read(self, t0: float, t1: float) -> np.ndarray:
        """The frames whose first sample lies in [t0, t1), concatenated."""
        parts = [f for s, f in self._frames if t0 - 1e-9 <= s < t1 - 1e-9]
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)

    def age(self, now: float) -> float | None:
        if self.last_stamp is None:
            return None
        return now - self.last_stamp


@dataclass
class Latest:
    value: np.ndarray
    stamp: float


class FrameSlot:
    """The latest image of one camera: (H, W, 3) uint8 RGB, upright."""

    def __init__(self, name: str, shape: tuple[int, int] | None = None) -> None:
        self.name = name
        self.shape = shape   # (H, W) if fixed
        self.latest: Latest | None = None

    def put(self, frame: np.ndarray, stamp: float) -> None:
        a = np.asarray(frame)
        if a.ndim != 3 or a.shape[2] != 3:
            raise InputError(self.name, f"image shape {a.shape}, expected (H, W, 3) RGB")
        if a.dtype != np.uint8:
            raise InputError(self.name, f"image dtype {a.dtype}, expected uint8")
        if self.shape is not None and a.shape[:2] != tuple(self.shape):
            h, w = self.shape
            raise InputError(self.name, f"image size {a.shape[1]}x{a.shape[0]}, expected {w}x{h}")
        _check_stamp(self.name, stamp, self.latest.stamp if self.latest else None)
        self.latest = Latest(a, stamp)

    def age(self, now: float) -> float | None:
        return None if self.latest is None else now - self.latest.stamp


class StateSlot:
    """The latest joint state or proprioception vector, float32 (dim,)."""

    def __init__(self, name: str = "state", dim: int | None = None) -> None:
        self.name = name
        self.dim = dim
        self.latest: Latest | None = None

    def put(self, value: np.ndarray, stamp: float) -> None:
        a = np.asarray(value, dtype=np.float64)
        if a.ndim != 1:
            raise InputError(self.name, f"shape {a.shape}, expected a vector")
        if self.dim is not None and a.shape[0] != self.dim:
            raise InputError(self.name, f"{a.shape[0]} values, expected {self.dim}")
        if not np.all(np.isfinite(a)):
            bad = [i for i in range(len(a)) if not np.isfinite(a[i])]
            raise InputError(self.name, f"non-finite values at indices {bad}")
        _check_stamp(self.name, stamp, self.latest.stamp if self.latest else None)
        self.latest = Latest(a.astype(np.float32), stamp)

    def age(self, now: float) -> float | None:
        return None if self.latest is None else now - self.latest.stamp
