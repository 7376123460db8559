"""The eager PyTorch backend of `ModelPolicy`: numpy in, numpy out, no gradients."""
from __future__ import annotations

import numpy as np
import torch

from .network import EllsaNet


class TorchBackend:
    """Runs an `EllsaNet` for the policy; called from the policy worker thread only."""

    name = "torch"

    def __init__(self, net: EllsaNet, threads: int | None = None) -> None:
        self.net = net.eval()
        self.config = net.c
        if threads is not None:
            torch.set_num_threads(threads)
        with torch.inference_mode():
            self.queries = net.queries.detach().numpy().copy()

    @torch.inference_mode()
    def encode_observation(self, images: np.ndarray, state: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """images (n_cam, S, S, 3) float32 in [0, 255], state (state_dim,) -> (n_cam·grid², D), (D,)."""
        img, st = self.net.encode_observation(torch.from_numpy(images[None]), torch.from_numpy(state[None]))
        return img[0].numpy(), st[0].numpy()

    @torch.inference_mode()
    def encode_audio(self, mel: np.ndarray) -> np.ndarray:
        """mel (MEL_CONTEXT + F, n_mels) -> (F / mel_frames_per_token, D)."""
        return self.net.encode_audio(torch.from_numpy(mel[None]))[0].numpy()

    @torch.inference_mode()
    def step(self, ids: np.ndarray, features: np.ndarray, experts: np.ndarray, positions: np.ndarray,
             mask: np.ndarray, past_k: np.ndarray, past_v: np.ndarray,
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """One streaming call for batch 1: ids/experts/positions (T,), features (T, D), mask (T, S+T),
        past (L, 1, Hkv, S, hd) -> logits (V,), chunk (T, dof), new k and v (L, Hkv, T, hd)."""
        logits, chunk, k, v = self.net.step(
            torch.from_numpy(ids[None]), torch.from_numpy(features[None]), torch.from_numpy(experts[None]),
            torch.from_numpy(positions[None]), torch.from_numpy(mask[None]),
            torch.from_numpy(past_k), torch.from_numpy(past_v))
        return logits[0].numpy(), chunk[0].numpy(), k[:, 0].numpy(), v[:, 0].numpy()
