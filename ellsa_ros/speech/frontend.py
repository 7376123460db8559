"""The listening front end: what is not speech leaves the microphone signal before VAD, stop
words and ASR, and the rules that cut the rest into utterances.

A robot arm's room hums: mains at 50/60 Hz, motors and fans at 100-200 Hz and their
harmonics, rumble, a DC offset from a cheap interface. A Butterworth high-pass takes out mains,
rumble and DC. The segmentation settings go to the engine's reflex (see
`runtime.reflex`). The filter streams per frame with its state kept, so the engine, the data
engine's heard-text pass and the benchmarks hear exactly what one `ListeningFrontEnd` makes of
the same samples.

Chosen on `ellsa bench listen`'s tuned-on voices at 15 dB SNR (hum, fan, babble), WER of what
the policy receives. With the VAD's room-level gate over a 10th-percentile floor (a first
batch, with shorter clip tails): no filter 4.9%, high-pass 80 Hz 5.5%, 120 Hz 6.5%, 200 Hz
8.1%, 300 Hz 12.8%; 200 Hz followed by WebRTC's noise suppressor (`webrtc-noise-gain` 1.3.0, a
DSP estimator) at level 1 16.9%, at level 3 35.8%: what a higher cut-off or the suppressor
takes away is the level difference between speech and babble that gate works on. Over a median
floor (the shipped gate): 80 Hz 6.0%, 120 Hz 5.2%, 200 Hz 5.7%. So: 120 Hz (mains, rumble and
DC out, the motor's fundamental down) and no denoiser (none that was tried helped; none would
ship weights here).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ellsa_ros.speech.pcm import ENGINE_RATE_HZ, check_rate, clean_frame


@dataclass(frozen=True)
class FrontEndConfig:
    highpass_hz: float = 120.0     # 0: no high-pass
    highpass_order: int = 4
    # Segmentation (`runtime.reflex`), measured on the tuned-on voices at 15 dB: without the VAD's
    # room-level gate and this, 99 of 117 instructions had a spurious utterance before them; with
    # the gate, none either way, but dropping bursts of less voiced audio than this took WER from
    # 6.3% to 5.5% (babble 9.0% -> 6.7%). A join window of 0.8 s split 10 of the 117 (those with
    # a 0.8-1.0 s pause in them), 1.0 s none; it is also how long after the last word the
    # instruction reaches the policy.
    min_voiced_s: float = 0.2
    join_pause_s: float = 1.0
    sample_rate: int = ENGINE_RATE_HZ

    def __post_init__(self) -> None:
        if not 0.0 <= self.highpass_hz < 1000.0:
            raise ValueError(f"highpass_hz={self.highpass_hz} must be in [0, 1000) Hz")
        if self.highpass_order not in (2, 4, 6, 8):
            raise ValueError(f"highpass_order={self.highpass_order} must be 2, 4, 6 or 8")
        if not (self.min_voiced_s >= 0 and 0 <= self.join_pause_s <= 3.0):
            raise ValueError(f"need min_voiced_s >= 0 and join_pause_s in [0, 3] s, got {self.min_voiced_s}, "
                             f"{self.join_pause_s}")
        check_rate(self.sample_rate, "FrontEndConfig")


class ListeningFrontEnd:
    """Implements `runtime.hearing.FrontEnd`: `process` is called once per microphone frame, in
    order, and returns the filtered frame (same length, float32)."""

    def __init__(self, config: FrontEndConfig | None = None) -> None:
        from scipy import signal
        self.config = c = config or FrontEndConfig()
        self.min_voiced_s, self.join_pause_s = c.min_voiced_s, c.join_pause_s
        self._sosfilt = signal.sosfilt
        self._sos = None
        if c.highpass_hz > 0:
            self._sos = signal.butter(c.highpass_order, c.highpass_hz, "highpass", fs=c.sample_rate, output="sos")
        self.reset()

    def reset(self) -> None:
        """Forget the filter state (new episode, another recording)."""
        self._zi = None if self._sos is None else np.zeros((self._sos.shape[0], 2))

    def identity(self) -> dict:
        """What decides the output (stored with transcripts made through this front end)."""
        return {"front_end": type(self).__name__, **asdict(self.config)}

    def process(self, frame: np.ndarray) -> np.ndarray:
        """One frame (float32 in [-1, 1] or int16, 16 kHz) -> the filtered frame, float32."""
        x = clean_frame(frame, "front end frame")
        if self._sos is not None and len(x):
            y, self._zi = self._sosfilt(self._sos, x, zi=self._zi)
            x = np.clip(y, -1.0, 1.0).astype(np.float32)
        return x
