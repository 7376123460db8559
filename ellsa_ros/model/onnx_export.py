"""`ellsa export`: a checkpoint to ONNX graphs for the onnxruntime policy.

Graphs, with the KV cache as explicit inputs and outputs of the block step:
  step.onnx         ids, features, experts, positions, mask, past_k, past_v -> logits, chunk, new_k, new_v
  observation.onnx  images (1, n_cam, S, S, 3) float, state (1, state_dim) -> image tokens, state token
  audio.onnx        mel (1, 2 + F, n_mels) -> speech embeddings
  sentence.onnx     embedding (1, sentence_dim) -> the `<sent>` slot's feature (with sentence_dim > 0)
plus the checkpoint's config.json and the continuous head's action slots (queries.npy).
"""
from __future__ import annotations

import argparse
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import checkpoint
from .network import EllsaNet

OPSET = 18
STEP, OBSERVATION, AUDIO, SENTENCE, QUERIES = "step.onnx", "observation.onnx", "audio.onnx", "sentence.onnx", \
    "queries.npy"
STEP_INPUTS = ["ids", "features", "experts", "positions", "mask", "past_k", "past_v"]
STEP_OUTPUTS = ["logits", "chunk", "new_k", "new_v"]
STEP_AXES = {"ids": {1: "T"}, "features": {1: "T"}, "experts": {1: "T"}, "positions": {1: "T"},
             "mask": {1: "T", 2: "ST"}, "past_k": {3: "S"}, "past_v": {3: "S"},
             "chunk": {1: "T"}, "new_k": {3: "T"}, "new_v": {3: "T"}}


class _Observation(nn.Module):
    def __init__(self, net: EllsaNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, images: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.net.encode_observation(images, state)


class _Step(nn.Module):
    def __init__(self, net: EllsaNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, ids, features, experts, positions, mask, past_k, past_v):
        return self.net.step(ids, features, experts, positions, mask, past_k, past_v)


def export(net: EllsaNet, out: str | Path) -> Path:
    """Writes the graphs (and queries.npy) into `out`; returns it."""
    c, out = net.c, Path(out)
    out.mkdir(parents=True, exist_ok=True)
    net = net.eval()
    T, S = 5, 3
    L, Hkv, hd, D = c.n_layers, c.n_kv_heads, c.head_dim, c.d_model
    mask = torch.ones(1, T, S + T, dtype=torch.bool)
    step_args = (torch.zeros(1, T, dtype=torch.int64), torch.zeros(1, T, D),
                 torch.tensor([[0, 1, 0, 1, 1]]) % c.n_experts, torch.arange(S, S + T)[None], mask,
                 torch.zeros(L, 1, Hkv, S, hd), torch.zeros(L, 1, Hkv, S, hd))
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about python ints in shapes are expected here
        torch.onnx.export(_Step(net), step_args, str(out / STEP), dynamo=False, opset_version=OPSET,
                          input_names=STEP_INPUTS, output_names=STEP_OUTPUTS, dynamic_axes=STEP_AXES)
        images = torch.zeros(1, len(c.cameras), c.image_size, c.image_size, 3)
        torch.onnx.export(_Observation(net), (images, torch.zeros(1, c.state_dim)), str(out / OBSERVATION),
                          dynamo=False, opset_version=OPSET, input_names=["images", "state"],
                          output_names=["image_tokens", "state_token"])
        mel = torch.zeros(1, 2 + c.mel_frames_per_token, c.n_mels)
        torch.onnx.export(net.audio, (mel,), str(out / AUDIO), dynamo=False, opset_version=OPSET,
                          input_names=["mel"], output_names=["speech"],
                          dynamic_axes={"mel": {1: "F"}, "speech": {1: "N"}})
        if c.sentence_dim:
            torch.onnx.export(net.sentence, (torch.zeros(1, c.sentence_dim),), str(out / SENTENCE), dynamo=False,
                              opset_version=OPSET, input_names=["embedding"], output_names=["sentence_token"])
    np.save(out / QUERIES, net.queries.detach().numpy())
    return out


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", type=Path, help="checkpoint folder (config.json + model.safetensors)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: CHECKPOINT/onnx)")


def run(args: argparse.Namespace) -> int:
    out = args.out or args.checkpoint / "onnx"
    net = checkpoint.load(args.checkpoint)
    print(f"exporting {args.checkpoint} ({net.c.size}) to {out} ...", file=sys.stderr)
    export(net, out)
    shutil.copy(args.checkpoint / checkpoint.CONFIG_FILE, out / checkpoint.CONFIG_FILE)
    print(f"wrote {', '.join(p.name for p in sorted(out.iterdir()))}", file=sys.stderr)
    return 0
