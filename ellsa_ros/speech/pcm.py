"""PCM frames as the speech stack takes them: checks, repair, rebuffering and resampling.

Every stream entry point runs frames through `clean_frame`, so that clipped, silent or NaN
audio from a driver or a file never reaches a model as something it cannot take.
"""
from __future__ import annotations

import math

import numpy as np

ENGINE_RATE_HZ = 16000


def clean_frame(frame: np.ndarray, what: str = "audio frame") -> np.ndarray:
    """Returns a float32 mono copy in [-1, 1]: NaN and inf become 0, values are clipped, int16
    input is scaled. Raises ValueError for shapes that are not mono."""
    a = np.asarray(frame)
    if a.ndim == 2 and 1 in a.shape:
        a = a.reshape(-1)
    if a.ndim != 1:
        raise ValueError(f"{what}: expected mono samples of shape (n,), got shape {a.shape}")
    if a.dtype == np.int16:
        return a.astype(np.float32) / 32768.0
    if not np.issubdtype(a.dtype, np.floating):
        raise ValueError(f"{what}: expected float32 in [-1, 1] or int16 samples, got dtype {a.dtype}")
    a = np.nan_to_num(a.astype(np.float32), nan=0.0, posinf=1.0, neginf=-1.0)
    return np.clip(a, -1.0, 1.0)


def to_int16(frame: np.ndarray) -> np.ndarray:
    return (np.clip(frame, -1.0, 1.0) * 32767.0).astype(np.int16)


def check_rate(sample_rate: int, what: str, allowed: tuple[int, ...] = (ENGINE_RATE_HZ,)) -> int:
    if sample_rate not in allowed:
        raise ValueError(f"{what}: sample_rate={sample_rate} Hz is not supported (takes {allowed} Hz); "
                         f"resample first (ellsa_ros.speech.pcm.resample, or open the audio stream at 16000 Hz)")
    return sample_rate


class Rebuffer:
    """Cuts frames of any size into fixed windows (the model's, e.g. 512 samples = 32 ms)."""

    def __init__(self, window: int) -> None:
        if window <= 0:
            raise ValueError(f"window must be > 0 samples, got {window}")
        self.window = window
        self._pending = np.zeros(0, np.float32)

    def push(self, frame: np.ndarray) -> list[np.ndarray]:
        """Called per incoming frame; returns the whole windows completed by it (may be none)."""
        buf = np.concatenate([self._pending, frame]) if len(self._pending) else frame
        n = len(buf) // self.window
        out = [buf[i * self.window:(i + 1) * self.window] for i in range(n)]
        self._pending = buf[n * self.window:].copy()
        return out

    def reset(self) -> None:
        self._pending = np.zeros(0, np.float32)


def _sinc_weights(src_hz: int, dst_hz: int, taps_per_side: int) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Filter weights for one period of the rational ratio: (L, K) weights and (K,) offsets."""
    key = (src_hz, dst_hz, taps_per_side)
    if key not in _WEIGHTS:
        g = math.gcd(src_hz, dst_hz)
        up, down = dst_hz // g, src_hz // g                  # L outputs span M inputs
        ratio = min(1.0, dst_hz / src_hz)                    # cutoff as a fraction of the input Nyquist
        half = int(math.ceil(taps_per_side / ratio))
        offsets = np.arange(-half + 1, half + 1)             # (K,)
        r = np.arange(up)
        frac = (r * down / up) - np.floor(r * down / up)     # (L,)
        x = frac[:, None] - offsets[None, :]                 # (L, K) distance in input samples
        w = np.sinc(x * ratio) * ratio * (0.5 + 0.5 * np.cos(np.pi * np.clip(x / half, -1, 1)))
        _WEIGHTS[key] = (w.astype(np.float32), offsets, up, down)
    return _WEIGHTS[key]


_WEIGHTS: dict[tuple[int, int, int], tuple[np.ndarray, np.ndarray, int, int]] = {}


def resample(audio: np.ndarray, src_hz: int, dst_hz: int, taps_per_side: int = 8) -> np.ndarray:
    """Band-limited resampling of a whole signal (windowed-sinc polyphase, Hann window).

    For TTS output (22.05 / 24 kHz to 16 kHz), files and device streams; the cutoff sits at
    the lower of the two Nyquist rates so that downsampling does not alias."""
    if src_hz <= 0 or dst_hz <= 0:
        raise ValueError(f"sample rates must be positive, got {src_hz} -> {dst_hz} Hz")
    audio = np.asarray(audio, np.float32)
    if src_hz == dst_hz or len(audio) == 0:
        return audio.copy()
    w, offsets, up, down = _sinc_weights(src_hz, dst_hz, taps_per_side)
    n_out = int(len(audio) * up // down)
    n = np.arange(n_out, dtype=np.int64)
    base = (n // up) * down + ((n % up) * down) // up
    padded = np.concatenate([np.zeros(len(offsets), np.float32), audio, np.zeros(len(offsets), np.float32)])
    out = np.empty(n_out, np.float32)
    step = 8192                                           # bounds the (n, K) temporaries
    for i in range(0, n_out, step):
        idx = base[i:i + step, None] + offsets[None, :] + len(offsets)
        out[i:i + step] = np.einsum("nk,nk->n", padded[idx], w[n[i:i + step] % up])
    return out
