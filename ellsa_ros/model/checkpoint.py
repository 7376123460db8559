"""Checkpoints: a folder with `config.json` (format version + ModelConfig) and `model.safetensors`.

Loading checks the format version, then every tensor name and shape against the network the
config builds, and fails naming the first mismatches. Weights may be stored as float16 to
halve the file (the network always runs in float32).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .config import ModelConfig
from .network import EllsaNet

FORMAT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


class CheckpointError(ValueError):
    pass


def save(net: EllsaNet, folder: str | Path, half: bool = False) -> Path:
    """Writes the checkpoint folder; returns it."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    meta = {"format_version": FORMAT_VERSION, "config": json.loads(net.c.to_json())}
    (folder / CONFIG_FILE).write_text(json.dumps(meta, indent=1, sort_keys=True), encoding="utf-8")
    dtype = torch.float16 if half else torch.float32
    tensors = {k: v.detach().to(dtype).contiguous() for k, v in net.state_dict().items()}
    save_file(tensors, str(folder / WEIGHTS_FILE), metadata={"format_version": str(FORMAT_VERSION)})
    return folder


def read_config(folder: str | Path) -> ModelConfig:
    folder = Path(folder)
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"{folder} is not a checkpoint: {CONFIG_FILE} is missing")
    meta = json.loads(path.read_text(encoding="utf-8"))
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{path}: format_version {version!r}, this code reads version {FORMAT_VERSION}")
    try:
        return ModelConfig.from_dict(meta["config"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: bad config: {e}") from e


def load(folder: str | Path) -> EllsaNet:
    """Builds the network from the checkpoint's config and loads its weights (float32)."""
    folder = Path(folder)
    config = read_config(folder)
    net = EllsaNet(config)
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise CheckpointError(f"{folder}: {WEIGHTS_FILE} is missing")
    stored = load_file(str(weights))
    expected = net.state_dict()
    problems = [f"missing {k}" for k in expected if k not in stored]
    problems += [f"unexpected {k}" for k in stored if k not in expected]
    problems += [f"{k}: checkpoint {tuple(stored[k].shape)} vs model {tuple(v.shape)}"
                 for k, v in expected.items() if k in stored and stored[k].shape != v.shape]
    if problems:
        more = f" (+{len(problems) - 5} more)" if len(problems) > 5 else ""
        raise CheckpointError(f"{weights} does not match its config: {'; '.join(problems[:5])}{more}")
    net.load_state_dict({k: v.to(torch.float32) for k, v in stored.items()})
    return net.eval()
