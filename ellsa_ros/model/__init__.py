"""The unified model: ELLSA's SA-MoE in PyTorch, its tokenizers, checkpoints and ONNX export.

Other rooms load models only through `load_policy`.
"""
from __future__ import annotations

from pathlib import Path

ASSETS = Path(__file__).parent / "assets"
DEFAULT_CHECKPOINT = ASSETS / "default"


def load_policy(path: str | Path | None = None, backend: str = "torch", threads: int | None = 1):
    """A runtime Policy running the model at `path` (a checkpoint folder, or for backend "onnx"
    a folder written by `ellsa export`); None is the embedded default checkpoint.

    `threads`: torch intra-op threads for the process (None leaves torch's choice). One is the
    default: on a 2-core robot computer two torch threads fight the control loop and each
    other, and a block step was measured several times slower."""
    if backend not in ("torch", "onnx"):
        raise ValueError(f"backend must be 'torch' or 'onnx', got {backend!r}")
    if path is None:
        if not (DEFAULT_CHECKPOINT / "config.json").is_file():
            raise FileNotFoundError(f"no embedded default checkpoint ships yet ({DEFAULT_CHECKPOINT} is missing); "
                                    "pass the path of a trained checkpoint")
        path = DEFAULT_CHECKPOINT
    path = Path(path)
    if backend == "onnx":
        from .onnx_policy import onnx_policy
        return onnx_policy(path)
    from . import checkpoint
    from .policy import ModelPolicy
    from .tokenizers_for import tokenizers_for
    from .torch_backend import TorchBackend

    net = checkpoint.load(path)
    return ModelPolicy(TorchBackend(net, threads=threads), *tokenizers_for(net.c))
