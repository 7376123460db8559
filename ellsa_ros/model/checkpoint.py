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


def warm_start(net: EllsaNet, folder: str | Path) -> list[str]:
    """Loads a checkpoint's weights into `net`, a network of the same config but for the chunk
    length: a fine-tune that changes how many actions a chunk holds keeps everything the model
    learned and starts the new action slots from the last old one (a chunk's later actions
    resemble its last). Returns the names of tensors that were reshaped. Any other difference
    in config is refused, naming the fields."""
    old = read_config(folder)
    ignore = {"chunk"}
    differ = sorted(f for f, v in vars(old).items() if f not in ignore and getattr(net.c, f) != v)
    if differ:
        raise CheckpointError(f"{folder}: cannot start from it, its config differs in "
                              + ", ".join(f"{f} ({getattr(old, f)!r} there, {getattr(net.c, f)!r} here)"
                                          for f in differ))
    stored = load(folder).state_dict()
    reshaped = []
    target = net.state_dict()
    for k, v in target.items():
        w = stored[k]
        if w.shape != v.shape:   # only the chunk's slots can differ: the config check said so
            n = min(w.shape[0], v.shape[0])
            w = torch.cat([w[:n], w[n - 1:n].expand(v.shape[0] - n, *w.shape[1:])]) if v.shape[0] > n else w[:n]
            reshaped.append(k)
        target[k] = w.clone()
    net.load_state_dict(target)
    return reshaped
