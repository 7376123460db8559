"""The onnxruntime backend of `ModelPolicy`, over the graphs `ellsa export` writes.

The CUDA execution provider is chosen when this onnxruntime has it (onnxruntime-gpu on a GPU
host), else the CPU one. The KV cache stays in numpy on the policy side (streaming.KVCache)
and goes in and out of the step graph each call.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import checkpoint
from .config import ModelConfig
from .onnx_export import AUDIO, OBSERVATION, QUERIES, SENTENCE, STEP
from .policy import ModelPolicy
from .tokenizers_for import tokenizers_for


def providers() -> list[str]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    return ["CUDAExecutionProvider", "CPUExecutionProvider"] if "CUDAExecutionProvider" in available \
        else ["CPUExecutionProvider"]


class OnnxBackend:
    """Runs the exported graphs; called from the policy worker thread only."""

    name = "onnx"

    def __init__(self, folder: str | Path, config: ModelConfig, threads: int | None = None) -> None:
        import onnxruntime as ort

        folder = Path(folder)
        needed = (STEP, OBSERVATION, AUDIO, QUERIES) + ((SENTENCE,) if config.sentence_dim else ())
        missing = [f for f in needed if not (folder / f).is_file()]
        if missing:
            raise FileNotFoundError(f"{folder} lacks {', '.join(missing)}: write it with `ellsa export CHECKPOINT`")
        opts = ort.SessionOptions()
        # no busy-waiting: the policy shares the cores with the control loop, ROS and speech
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads is not None:
            opts.intra_op_num_threads = threads
        self.providers = providers()
        self._step = ort.InferenceSession(str(folder / STEP), opts, providers=self.providers)
        self._inputs = [i.name for i in self._step.get_inputs()]
        self._obs = ort.InferenceSession(str(folder / OBSERVATION), opts, providers=self.providers)
        self._audio = ort.InferenceSession(str(folder / AUDIO), opts, providers=self.providers)
        self._sentence = ort.InferenceSession(str(folder / SENTENCE), opts, providers=self.providers) \
            if config.sentence_dim else None
        self.config = config
        self.queries = np.load(folder / QUERIES).astype(np.float32)

    def encode_observation(self, images: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        img, st = self._obs.run(None, {"images": images[None].astype(np.float32),
                                       "state": state[None].astype(np.float32)})
        return img[0], st[0]

    def encode_audio(self, mel: np.ndarray) -> np.ndarray:
        return self._audio.run(None, {"mel": mel[None].astype(np.float32)})[0][0]

    def encode_sentence(self, embedding: np.ndarray) -> np.ndarray:
        if self._sentence is None:
            raise ValueError("this model has no sentence input (sentence_dim = 0)")
        return self._sentence.run(None, {"embedding": np.asarray(embedding, np.float32)[None]})[0][0]

    def step(self, ids, features, experts, positions, mask, past_k, past_v):
        feeds = {"ids": ids[None], "features": features[None].astype(np.float32), "experts": experts[None],
                 "positions": positions[None], "mask": mask[None], "past_k": np.ascontiguousarray(past_k),
                 "past_v": np.ascontiguousarray(past_v)}
        # the exporter drops inputs a graph does not use (`experts` with a single expert)
        logits, chunk, k, v = self._step.run(None, {n: feeds[n] for n in self._inputs})
        return logits[0], chunk[0], k[:, 0], v[:, 0]


def onnx_policy(folder: str | Path, threads: int | None = None) -> ModelPolicy:
    """A ModelPolicy over an export folder (or a checkpoint folder holding `onnx/`)."""
    folder = Path(folder)
    if not (folder / STEP).is_file() and (folder / "onnx" / STEP).is_file():
        folder = folder / "onnx"
    config = checkpoint.read_config(folder)
    return ModelPolicy(OnnxBackend(folder, config, threads), *tokenizers_for(config))
