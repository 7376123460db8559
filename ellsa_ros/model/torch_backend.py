"""The eager PyTorch backend of `ModelPolicy`: numpy in, numpy out, no gradients.

Runs on CUDA when torch has it, else on the CPU. The KV cache stays in numpy on the policy
side (shared with the onnxruntime backend): on a GPU it crosses the bus each call.
"""
from __future__ import annotations

import numpy as np
import torch

from .network import EllsaNet


class TorchBackend:
    """Runs an `EllsaNet` for the policy; called from the policy worker thread only."""

    name = "torch"

    def __init__(self, net: EllsaNet, threads: int | None = None, device: str | None = None) -> None:
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.net = net.eval().to(self.device)
        self.config = net.c
        if threads is not None:
            torch.set_num_threads(threads)
        self.queries = net.queries.detach().cpu().numpy().copy()

    def _in(self, a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.asarray(a)).to(self.device)

    @staticmethod
    def _out(t: torch.Tensor) -> np.ndarray:
        return t.cpu().numpy()

    @torch.inference_mode()
    def encode_observation(self, images: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """images (n_cam, S, S, 3) float32 in [0, 255], state (state_dim,) -> (n_cam·grid², D), (D,)."""
        img, st = self.net.encode_observation(self._in(images[None]), self._in(state[None]))
        return self._out(img[0]), self._out(st[0])

    @torch.inference_mode()
    def encode_audio(self, mel: np.ndarray) -> np.ndarray:
        """mel (MEL_CONTEXT + F, n_mels) -> (F / mel_frames_per_token, D)."""
        return self._out(self.net.encode_audio(self._in(mel[None]))[0])

    @torch.inference_mode()
    def encode_sentence(self, embedding: np.ndarray) -> np.ndarray:
        """embedding (sentence_dim,) float32 -> (D,)."""
        embedding = np.array(embedding, np.float32)  # a copy: the encoder's cached embeddings are read-only
        return self._out(self.net.encode_sentence(self._in(embedding[None]))[0])

    @torch.inference_mode()
    def step(self, ids: np.ndarray, features: np.ndarray, experts: np.ndarray, positions: np.ndarray,
             mask: np.ndarray, past_k: np.ndarray, past_v: np.ndarray,
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """One streaming call for batch 1: ids/experts/positions (T,), features (T, D), mask (T, S+T),
        past (L, 1, Hkv, S, hd) -> logits (V,), chunk (T, dof), new k and v (L, Hkv, T, hd)."""
        logits, chunk, k, v = self.net.step(
            self._in(ids[None]), self._in(features[None]), self._in(experts[None]), self._in(positions[None]),
            self._in(mask[None]), self._in(past_k), self._in(past_v))
        return self._out(logits[0]), self._out(chunk[0]), self._out(k[:, 0]), self._out(v[:, 0])
