"""Where camera frames come from: OpenCV capture (device, file, URL) or a test pattern.

A source is `read() -> (H, W, 3) uint8 RGB | None` (None: no frame now, or the file ended)
and `close()`. The camera node calls `read()` once per frame period.
"""
from __future__ import annotations

from typing import Protocol

import numpy as np


class FrameSource(Protocol):
    def read(self) -> np.ndarray | None:
        """Called once per frame period; returns an upright RGB frame of the configured size."""

    def close(self) -> None:
        """Releases the device."""


class ColourBars:
    """Colour bars that scroll one column per frame, with a frame counter in the first row.

    The counter (a little-endian uint32 in the red channel of pixels 0–3) lets a receiver
    tell which frame it got, and so count lost frames.
    """

    def __init__(self, width: int, height: int) -> None:
        x = np.arange(width)
        bars = np.stack([(x * 255 // max(width - 1, 1)), (x * 7) % 256, 255 - (x * 3) % 256], axis=-1)
        self._base = np.broadcast_to(bars.astype(np.uint8), (height, width, 3)).copy()
        self.index = 0

    def read(self) -> np.ndarray:
        frame = np.roll(self._base, self.index % self._base.shape[1], axis=1)
        frame[0, :4, 0] = np.frombuffer(np.uint32(self.index).tobytes(), np.uint8)
        self.index += 1
        return frame

    def close(self) -> None:
        pass


def pattern_index(frame: np.ndarray) -> int:
    """The frame counter a ColourBars source wrote into `frame`."""
    return int(np.frombuffer(np.ascontiguousarray(frame[0, :4, 0]).tobytes(), np.uint32)[0])


class OpenCVSource:
    """cv2.VideoCapture of a device index, a file or a URL; BGR -> RGB, resized if needed."""

    def __init__(self, source: str, width: int, height: int, loop: bool = True) -> None:
        import cv2
        self._cv2 = cv2
        self.size = (width, height)
        self.loop = loop
        self.is_file = not source.isdigit() and "://" not in source
        self._cap = cv2.VideoCapture(int(source) if source.isdigit() else source)
        if not self._cap.isOpened():
            raise OSError(f"cannot open video source {source!r}")
        if source.isdigit():
            self._cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
            self._cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)

    def read(self) -> np.ndarray | None:
        ok, bgr = self._cap.read()
        if not ok and self.is_file and self.loop:
            self._cap.set(self._cv2.CAP_PROP_POS_FRAMES, 0)
            ok, bgr = self._cap.read()
        if not ok:
            return None
        if (bgr.shape[1], bgr.shape[0]) != self.size:
            bgr = self._cv2.resize(bgr, self.size, interpolation=self._cv2.INTER_AREA)
        return self._cv2.cvtColor(bgr, self._cv2.COLOR_BGR2RGB)

    def close(self) -> None:
        self._cap.release()


def open_source(source: str, width: int, height: int, loop: bool = True) -> FrameSource:
    """Called once at node start with the `source` parameter."""
    if source == "test_pattern":
        return ColourBars(width, height)
    return OpenCVSource(source, width, height, loop)
