"""Checks and prepares a runtime Block's raw inputs before any forward pass.

Non-finite audio or state, images that are not (H, W, 3), and a state of the wrong size raise a
ValueError naming the input; images of another size are resized (bilinear) to the model's.
"""
from __future__ import annotations

import logging

import numpy as np

from ellsa_ros.runtime.blocks import Block

from .config import ModelConfig

log = logging.getLogger(__name__)


def resize_bilinear(image: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (size, size, 3) float32 in [0, 255], pixel centres aligned."""
    h, w = image.shape[:2]
    img = image.astype(np.float32)
    if (h, w) == (size, size):
        return img
    ys = np.clip((np.arange(size) + 0.5) * h / size - 0.5, 0, h - 1)
    xs = np.clip((np.arange(size) + 0.5) * w / size - 0.5, 0, w - 1)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    fy, fx = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
    top = img[y0][:, x0] * (1 - fx) + img[y0][:, x1] * fx
    bottom = img[y1][:, x0] * (1 - fx) + img[y1][:, x1] * fx
    return top * (1 - fy) + bottom * fy


def camera_images(c: ModelConfig, block: Block) -> tuple[np.ndarray, list[bool]]:
    """(n_cam, S, S, 3) float32 images (zeros where missing) and which cameras are present."""
    out = np.zeros((len(c.cameras), c.image_size, c.image_size, 3), np.float32)
    present = []
    for i, cam in enumerate(c.cameras):
        img = block.images.get(cam) if block.images else None
        if img is None:
            present.append(False)
            continue
        img = np.asarray(img)
        if img.ndim != 3 or img.shape[2] != 3 or img.shape[0] < 1 or img.shape[1] < 1:
            raise ValueError(f"block {block.index}: image {cam!r} has shape {img.shape}, expected (H, W, 3)")
        if img.dtype != np.uint8:
            if not np.isfinite(img).all():
                raise ValueError(f"block {block.index}: image {cam!r} contains non-finite values")
            img = np.clip(img, 0, 255).astype(np.uint8)
        out[i] = resize_bilinear(img, c.image_size)
        present.append(True)
    return out, present


def proprioception(c: ModelConfig, block: Block) -> np.ndarray | None:
    if block.state is None:
        return None
    s = np.asarray(block.state, dtype=np.float32).reshape(-1)
    if s.shape != (c.state_dim,):
        raise ValueError(f"block {block.index}: state has {s.size} values, the model expects {c.state_dim}")
    if not np.isfinite(s).all():
        raise ValueError(f"block {block.index}: state contains non-finite values {s.tolist()}")
    return s


def microphone(c: ModelConfig, block: Block) -> np.ndarray:
    a = np.asarray(block.audio, dtype=np.float32).reshape(-1)
    if block.sample_rate != c.sample_rate:
        raise ValueError(f"block {block.index}: audio at {block.sample_rate} Hz, the model expects {c.sample_rate} Hz")
    if not np.isfinite(a).all():
        raise ValueError(f"block {block.index}: audio contains non-finite samples")
    return a


def truncated(ids: list[int], limit: int, what: str) -> list[int]:
    """Keeps the first `limit` ids, warning when text was cut."""
    if len(ids) > limit:
        log.warning("%s has %d tokens; keeping the first %d", what, len(ids), limit)
        return ids[:limit]
    return ids


def heard_text(text: str) -> str:
    """What the model reads of the user's words: lower case, single spaces, no final full stop.
    ASR writes "Pick up the bowl." where typed text and the training data say "pick up the bowl"."""
    t = " ".join(text.lower().split())
    return t[:-1] if t.endswith(".") else t
