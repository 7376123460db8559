"""Training-time image augmentation: shifts move the picture, jitter stays in its bounds, off
is the identity, and the same generator gives the same views."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ellsa_ros.train.augment import Augment


def frames(n=3, cams=2, size=16):
    rng = np.random.default_rng(0)
    return torch.from_numpy(rng.integers(0, 255, (n, cams, size, size, 3)).astype(np.float32))


def test_off_is_the_identity():
    x = frames()
    assert Augment()(x) is x


def test_a_shift_moves_the_picture_by_whole_pixels_within_the_bound():
    x = frames(n=8)
    y = Augment(shift_px=2)(x, torch.Generator().manual_seed(1))
    assert y.shape == x.shape and y.dtype == x.dtype
    for i in range(8):
        for c in range(2):
            # the interior of each view is the original moved by some (dy, dx) in [-2, 2]
            src, out = x[i, c].numpy(), y[i, c].numpy()
            found = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                     if np.array_equal(out[4:12, 4:12], src[4 + dy:12 + dy, 4 + dx:12 + dx])]
            assert found, (i, c)
    assert not torch.equal(x, y)


def test_jitter_stays_in_its_bounds_and_the_generator_decides():
    x = frames()
    a = Augment(jitter=0.2)
    y1, y2 = a(x, torch.Generator().manual_seed(3)), a(x, torch.Generator().manual_seed(3))
    assert torch.equal(y1, y2) and not torch.equal(x, y1)
    assert float(y1.min()) >= 0.0 and float(y1.max()) <= 255.0
    ratio = y1.mean(dim=(2, 3, 4)) / x.mean(dim=(2, 3, 4))
    assert float(ratio.min()) >= 0.8 - 1e-4 and float(ratio.max()) <= 1.2 + 1e-4


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="shift_px=-1"):
        Augment(shift_px=-1)
    with pytest.raises(ValueError, match="jitter=1.5"):
        Augment(jitter=1.5)
