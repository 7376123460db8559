"""Stop-word spotting with pocketsphinx's keyword search, streaming per frame.

Each word gets its own detection threshold and, for the default stop words, extra
pronunciations (the en-us model hears "stop" and "halt" with either vowel depending on the
voice). Words are looked up in the bundled CMU dictionary; a word missing from it needs a
pronunciation in the config. A little dither is added because pure digital silence (a muted
stream, a gated echo) stalls pocketsphinx's feature normalization.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ellsa_ros.speech import integrity
from ellsa_ros.speech.pcm import ENGINE_RATE_HZ, check_rate, clean_frame, to_int16

STOP_WORDS = ("stop", "wait", "pause", "halt")

# Tuned on synthetic piper / hibari / espeak-ng voices in pink noise (bench/speech.py) towards
# no misses: a missed "stop" is worse than a needless halt. The price is false hits inside other
# words ("wait" in "plate", "halt" in "bowl"); the benchmark reports how often commands trigger.
DEFAULT_THRESHOLDS = {"stop": 1e-30, "wait": 1e-10, "pause": 1e-20, "halt": 1e-15}
EXTRA_PRONUNCIATIONS = {"stop": ("S T AO P",), "pause": ("P AA Z",), "halt": ("HH AA L T",)}


@dataclass
class KeywordSpotterConfig:
    words: tuple[str, ...] = STOP_WORDS
    thresholds: dict[str, float] = field(default_factory=dict)      # word -> kws threshold (1e-40..1)
    pronunciations: dict[str, tuple[str, ...]] = field(default_factory=dict)  # word -> ARPAbet strings
    default_threshold: float = 1e-20
    kws_delay_frames: int = 3          # 10 ms frames pocketsphinx waits for a better-scoring end
    dither_rms: float = 0.003          # about -50 dBFS of white noise
    max_utterance_s: float = 30.0      # the search restarts this often so that its lattice stays small
    sample_rate: int = ENGINE_RATE_HZ

    def __post_init__(self) -> None:
        self.words = tuple(w.strip().lower() for w in self.words)
        if not self.words or any(not w or " " in w for w in self.words):
            raise ValueError(f"words must be non-empty single words, got {self.words!r}")
        for w, t in {**self.thresholds, "default": self.default_threshold}.items():
            if not 0.0 < t <= 1.0:
                raise ValueError(f"threshold for {w!r} must be in (0, 1], got {t}")
        if self.kws_delay_frames < 1:
            raise ValueError(f"kws_delay_frames must be >= 1, got {self.kws_delay_frames}")
        if not 0.0 <= self.dither_rms < 0.05:
            raise ValueError(f"dither_rms must be in [0, 0.05), got {self.dither_rms}")
        if self.max_utterance_s < 1.0:
            raise ValueError(f"max_utterance_s must be >= 1, got {self.max_utterance_s}")
        check_rate(self.sample_rate, "KeywordSpotterConfig")

    def threshold(self, word: str) -> float:
        return self.thresholds.get(word, DEFAULT_THRESHOLDS.get(word, self.default_threshold))


def cmu_pronunciations(dictionary: Path, words: set[str]) -> dict[str, list[str]]:
    """word -> its pronunciations in a CMU-format dictionary ("word(2) P H O N E S")."""
    found: dict[str, list[str]] = {}
    with open(dictionary, encoding="utf-8") as f:
        for line in f:
            head, _, phones = line.strip().partition(" ")
            word = head.split("(")[0]
            if word in words:
                found.setdefault(word, []).append(phones.strip())
    return found


class PocketsphinxKeywordSpotter:
    """Implements `runtime.hearing.KeywordSpotter`; `process` is called once per microphone frame."""

    def __init__(self, config: KeywordSpotterConfig | None = None) -> None:
        from pocketsphinx import Decoder
        self.config = c = config or KeywordSpotterConfig()
        root = integrity.verify("pocketsphinx")
        model = root / "model" / "en-us"
        prons = cmu_pronunciations(model / "cmudict-en-us.dict", set(c.words))
        missing = [w for w in c.words if w not in prons and w not in c.pronunciations]
        if missing:
            raise ValueError(f"keywords {missing} are not in the CMU dictionary; give their phones in "
                             f"KeywordSpotterConfig.pronunciations, e.g. {{'{missing[0]}': ('HH EH L OW',)}}")
        # Each pronunciation is its own dictionary entry ("stop", "stop_1", ...) so that the
        # keyword search tries all of them; hits map back to the word.
        self._entry_word: dict[str, str] = {}
        dict_lines, kws_lines = [], []
        for w in c.words:
            variants = list(c.pronunciations.get(w, ())) or prons.get(w, [])
            if w not in c.pronunciations:
                variants += [p for p in EXTRA_PRONUNCIATIONS.get(w, ()) if p not in variants]
            for i, phones in enumerate(variants):
                entry = w if i == 0 else f"{w}_{i}"
                self._entry_word[entry] = w
                dict_lines.append(f"{entry} {phones}")
                kws_lines.append(f"{entry} /{c.threshold(w):.3g}/")
        self._tmp = tempfile.TemporaryDirectory(prefix="ellsa-kws-")
        dict_path, kws_path = Path(self._tmp.name, "words.dict"), Path(self._tmp.name, "words.kws")
        dict_path.write_text("\n".join(dict_lines) + "\n")
        kws_path.write_text("\n".join(kws_lines) + "\n")
        self._decoder = Decoder(hmm=str(model / "en-us"), dict=str(dict_path), kws=str(kws_path),
                                samprate=c.sample_rate, kws_delay=c.kws_delay_frames, loglevel="FATAL")
        self._max_samples = int(c.max_utterance_s * c.sample_rate)
        self.reset()

    @property
    def words(self) -> tuple[str, ...]:
        """The words it listens for (the engine refuses stop words it does not)."""
        return self.config.words

    def reset(self) -> None:
        self._rng = np.random.default_rng(0)
        if getattr(self, "_in_utterance", False):
            self._decoder.end_utt()
        self._decoder.start_utt()
        self._in_utterance = True
        self._samples = 0

    def process(self, frame: np.ndarray) -> list[str]:
        """Called on every audio frame (any length, 16 kHz); returns the words recognized in it."""
        x = clean_frame(frame, "keyword spotter frame")
        if self.config.dither_rms > 0:
            x = x + self._rng.normal(0.0, self.config.dither_rms, len(x)).astype(np.float32)
        self._decoder.process_raw(to_int16(x).tobytes(), False, False)
        self._samples += len(x)
        hyp = self._decoder.hyp()
        heard: list[str] = []
        if hyp is not None:
            for entry in hyp.hypstr.split():
                word = self._entry_word.get(entry)
                if word is not None and word not in heard:
                    heard.append(word)
        if hyp is not None or self._samples >= self._max_samples:
            self._decoder.end_utt()
            self._decoder.start_utt()
            self._samples = 0
        return heard
