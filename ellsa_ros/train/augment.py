"""Image augmentation for training: the camera never sits exactly where it sat in the demos.

Random shifts (pad by replicating the border, crop back: DrQ's and QueST's few-pixel shifts)
and brightness/contrast jitter, drawn independently per image and camera. Training only: the
policy at run time sees the images as they are.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Augment:
    """shift_px: largest shift in pixels (0: none); jitter: largest relative change of
    brightness and of contrast (0: none)."""
    shift_px: int = 0
    jitter: float = 0.0

    def __post_init__(self) -> None:
        if self.shift_px < 0 or not 0.0 <= self.jitter < 1.0:
            raise ValueError(f"augment shift_px={self.shift_px} must be >= 0 and jitter={self.jitter} in [0, 1)")

    @property
    def on(self) -> bool:
        return self.shift_px > 0 or self.jitter > 0

    def __call__(self, images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """images (N, n_cam, S, S, 3) in [0, 255] -> the same shape, augmented."""
        if not self.on or images.numel() == 0:
            return images
        N, C, S, _, _ = images.shape
        x = images.reshape(N * C, S, S, 3).permute(0, 3, 1, 2).float()   # (N·C, 3, S, S)
        if self.shift_px:
            p = self.shift_px
            padded = F.pad(x, (p, p, p, p), mode="replicate")
            dx = torch.randint(0, 2 * p + 1, (N * C,), generator=generator)
            dy = torch.randint(0, 2 * p + 1, (N * C,), generator=generator)
            rows = (dy[:, None] + torch.arange(S)[None, :])                  # (N·C, S)
            cols = (dx[:, None] + torch.arange(S)[None, :])
            idx = torch.arange(N * C)[:, None, None]
            x = padded.permute(0, 2, 3, 1)[idx, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
        if self.jitter:
            j = self.jitter
            bright = 1.0 + (torch.rand(N * C, 1, 1, 1, generator=generator) * 2 - 1) * j
            contrast = 1.0 + (torch.rand(N * C, 1, 1, 1, generator=generator) * 2 - 1) * j
            mean = x.mean(dim=(1, 2, 3), keepdim=True)
            x = ((x - mean) * contrast + mean) * bright
        x = x.clamp(0.0, 255.0)
        return x.permute(0, 2, 3, 1).reshape(N, C, S, S, 3).to(images.dtype)
