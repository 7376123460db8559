"""The robot's own voice out of its microphone: reference-based echo cancellation and gating.

The speaker path is learned from the played signal, not assumed: every `hop_ms` while the robot
speaks, the delay is found by cross-correlating the microphone with the played reference over
the last `window_ms`, and a short FIR echo path after that delay is fitted by least squares
(normal equations, smoothed across estimates so that uncorrelated user speech averages out).
Each frame then has the predicted echo subtracted; what remains passes only when it is louder
than `gate_db` relative to the predicted echo (the user talking over the robot), otherwise it is
attenuated by `gate_attenuation_db` so that VAD and keyword spotting stay quiet on self-speech.
Before the path is known, a frame passes only if the microphone is louder than anything the
speaker played within the delay range.

Works sample-exactly on frames of any size, with no added latency.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ellsa_ros.speech.pcm import ENGINE_RATE_HZ, check_rate, clean_frame


@dataclass
class EchoFilterConfig:
    sample_rate: int = ENGINE_RATE_HZ
    max_delay_ms: float = 300.0        # speaker buffer + air path + microphone buffer
    taps_ms: float = 16.0              # echo path length after the delay (early reflections)
    window_ms: float = 1000.0          # analysis window for delay and path estimates
    hop_ms: float = 250.0              # how often the estimate is refreshed while the robot speaks
    min_correlation: float = 0.3       # below this peak correlation the estimate is not trusted
    smoothing: float = 0.5             # weight of the previous statistics at each refresh
    gate_db: float = -6.0              # residual must be above predicted echo + this to pass
    gate_attenuation_db: float = -40.0
    reference_floor_db: float = -60.0  # played frames quieter than this count as silence (dBFS)

    def __post_init__(self) -> None:
        check_rate(self.sample_rate, "EchoFilterConfig", (8000, 16000))
        for name in ("max_delay_ms", "taps_ms", "window_ms", "hop_ms"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.window_ms < 2 * self.taps_ms:
            raise ValueError(f"window_ms ({self.window_ms}) must be at least twice taps_ms ({self.taps_ms})")
        if not 0.0 < self.min_correlation < 1.0 or not 0.0 <= self.smoothing < 1.0:
            raise ValueError(f"min_correlation must be in (0, 1) and smoothing in [0, 1), got "
                             f"{self.min_correlation}, {self.smoothing}")
        if self.gate_attenuation_db > 0:
            raise ValueError(f"gate_attenuation_db must be <= 0, got {self.gate_attenuation_db}")

    def samples(self, ms: float) -> int:
        return int(round(ms * self.sample_rate / 1000.0))


PRE_TAPS = 4   # taps before the estimated delay: the peak of a fractional delay spreads backwards


class ReferenceEchoFilter:
    """Implements `runtime.hearing.EchoFilter`; `clean` is called once per microphone frame."""

    def __init__(self, config: EchoFilterConfig | None = None) -> None:
        self.config = c = config or EchoFilterConfig()
        self._max_delay = c.samples(c.max_delay_ms)
        self._taps = c.samples(c.taps_ms) + PRE_TAPS
        self._window = c.samples(c.window_ms)
        self._hop = c.samples(c.hop_ms)
        self._history = self._window + self._max_delay + self._taps
        self._gate_ratio = 10.0 ** (c.gate_db / 10.0)
        self._gate_gain = np.float32(10.0 ** (c.gate_attenuation_db / 20.0))
        self._floor = 10.0 ** (c.reference_floor_db / 10.0)
        self.reset()

    def reset(self) -> None:
        self._ref = np.zeros(self._history, np.float32)   # played, oldest first
        self._mic = np.zeros(self._window, np.float32)
        self._since_estimate = 0
        self._auto: np.ndarray | None = None               # (taps,) reference autocorrelation
        self._cross: np.ndarray | None = None              # (taps,) mic-reference cross-correlation
        self.delay_samples: int | None = None
        self.path: np.ndarray | None = None                # (taps,) FIR echo path after delay - PRE_TAPS
        self.correlation = 0.0
        self.gated_frames = 0

    @property
    def delay_ms(self) -> float | None:
        return None if self.delay_samples is None else 1000.0 * self.delay_samples / self.config.sample_rate

    @property
    def gain(self) -> float | None:
        """Largest tap of the echo path: the speaker-to-microphone gain of the direct path."""
        return None if self.path is None else float(np.max(np.abs(self.path)))

    def clean(self, mic: np.ndarray, played: np.ndarray) -> np.ndarray:
        """Called per frame with the microphone frame and what the speaker played in the same
        period (zeros when silent), both (n,) float32 at `sample_rate`. Returns the cleaned frame."""
        m = clean_frame(mic, "echo filter microphone frame")
        r = clean_frame(played, "echo filter played frame")
        if len(m) != len(r):
            raise ValueError(f"microphone frame has {len(m)} samples but the played frame {len(r)}; "
                             f"pass the speaker frame of the same period")
        n = len(m)
        if n == 0:
            return m
        if n > self._window:
            raise ValueError(f"frame of {n} samples is longer than window_ms ({self._window} samples)")
        self._ref = np.concatenate([self._ref[n:], r])
        self._mic = np.concatenate([self._mic[n:], m])
        recent = self._ref[-(n + self._max_delay + self._taps):]
        if float(np.mean(np.square(recent))) < self._floor:
            return m                                           # nothing the speaker played can be in this frame
        self._since_estimate += n
        if self._since_estimate >= self._hop:
            self._since_estimate = 0
            self._estimate()
        if self.path is None:
            loudest = max(float(np.mean(np.square(recent[i:i + n]))) for i in range(0, len(recent) - n + 1, n))
            if float(np.mean(np.square(m))) < loudest:
                self.gated_frames += 1
                return m * self._gate_gain
            return m
        echo = self._predict(n)
        residual = (m - echo).astype(np.float32)
        if float(np.dot(residual, residual)) < self._gate_ratio * float(np.dot(echo, echo)):
            self.gated_frames += 1
            return residual * self._gate_gain
        return residual

    def _predict(self, n: int) -> np.ndarray:
        """Echo in the newest n microphone samples: the path applied to the delayed reference."""
        lag = self.delay_samples - PRE_TAPS                     # path tap k sees reference[t - lag - k]
        end = len(self._ref) - lag
        segment = self._ref[end - n - self._taps + 1:min(end, len(self._ref))]
        if lag < 0:                                             # taps ahead of now see nothing played yet
            segment = np.concatenate([segment, np.zeros(-lag, np.float32)])   # (n + taps - 1,)
        return np.convolve(segment, self.path, mode="valid").astype(np.float32)

    def _estimate(self) -> None:
        """Delay by cross-correlation, then the FIR path by least squares at that delay."""
        w, taps = self._window, self._taps
        mic = self._mic.astype(np.float64)
        ref = self._ref[-(w + self._max_delay):].astype(np.float64)     # ref[j] is played at t - max_delay + j
        size = 1 << int(np.ceil(np.log2(len(ref) + w)))
        xc = np.fft.irfft(np.fft.rfft(ref, size).conj() * np.fft.rfft(mic, size), size)
        # Lag d (mic delayed by d against ref): mic[i] ~ ref[i + max_delay - d].
        lags = np.arange(self._max_delay + 1)
        corr = xc[(lags - self._max_delay) % size]
        energy = np.cumsum(np.concatenate([[0.0], ref * ref]))
        ref_norm = np.sqrt(energy[self._max_delay - lags + w] - energy[self._max_delay - lags] + 1e-12)
        rho = corr / (ref_norm * np.sqrt(float(mic @ mic)) + 1e-12)
        d = int(np.argmax(rho))
        self.correlation = float(rho[d])
        if self.correlation < self.config.min_correlation:
            return
        if self.delay_samples is None or abs(d - self.delay_samples) > PRE_TAPS // 2:
            self._auto = self._cross = None                   # the path moved: start the averages again
        self.delay_samples = d
        # Normal equations of the FIR fit over the window, from correlations (Toeplitz form):
        # tap k applies to the reference at lag d - PRE_TAPS + k, i.e. ref index i + base - k.
        base = self._max_delay - d + PRE_TAPS
        cross = xc[(np.arange(taps) - base) % size]                        # (taps,)
        seg = ref[max(base - taps, 0):base + w]
        auto_r = np.fft.irfft(np.abs(np.fft.rfft(seg, size)) ** 2, size)[:taps]   # (taps,) autocorrelation
        auto_full = auto_r[np.abs(np.arange(taps)[:, None] - np.arange(taps)[None, :])]   # (taps, taps)
        a = self.config.smoothing
        if self._auto is None:
            self._auto, self._cross = auto_full, cross
        else:
            self._auto = a * self._auto + (1 - a) * auto_full
            self._cross = a * self._cross + (1 - a) * cross
        ridge = 1e-3 * float(np.trace(self._auto)) / taps + 1e-9
        self.path = np.linalg.solve(self._auto + ridge * np.eye(taps), self._cross).astype(np.float32)
