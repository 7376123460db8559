"""`ellsa train`: train the model on one or more `ellsa datagen` datasets."""
from __future__ import annotations

import argparse

from .trainer import TrainConfig, train


def configure(parser: argparse.ArgumentParser) -> None:
    d = TrainConfig.__dataclass_fields__
    parser.add_argument("--data", required=True, help="dataset directories, comma-separated")
    parser.add_argument("--out", required=True, help="run directory: checkpoints go to OUT/model (resumed if present)")
    parser.add_argument("--size", default=d["size"].default, choices=["tiny", "small", "base"])
    parser.add_argument("--action-head", default=d["action_head"].default, choices=["fast", "continuous"])
    parser.add_argument("--speech-input", default=d["speech_input"].default, choices=["text", "audio"])
    parser.add_argument("--block-s", type=float, default=d["block_s"].default, help="block length in seconds")
    parser.add_argument("--steps", type=int, default=d["steps"].default, help="optimizer steps in all")
    parser.add_argument("--batch", type=int, default=d["batch"].default, help="sequences per step")
    parser.add_argument("--max-blocks", type=int, default=d["max_blocks"].default,
                        help="blocks taught per sequence (a later window keeps the blocks before it as context)")
    parser.add_argument("--heard", default=d["heard"].default, choices=["truth", "asr", "mix"],
                        help="the heard text trained on: as spoken, the runtime listener's transcripts "
                             "(`ellsa datagen --transcribe`), or one or the other per episode")
    parser.add_argument("--lr", type=float, default=d["lr"].default, help="peak learning rate (cosine decay)")
    parser.add_argument("--save-every", type=int, default=d["save_every"].default, help="steps between checkpoints")
    parser.add_argument("--seed", type=int, default=d["seed"].default)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda where a GPU exists")


def run(args: argparse.Namespace) -> int:
    cfg = TrainConfig(data=[s for s in args.data.split(",") if s], out=args.out, size=args.size,
                      action_head=args.action_head, speech_input=args.speech_input, block_s=args.block_s,
                      steps=args.steps, batch=args.batch, max_blocks=args.max_blocks, heard=args.heard, lr=args.lr,
                      save_every=args.save_every, seed=args.seed, threads=args.threads, device=args.device)
    folder = train(cfg)
    print(f"[train] checkpoint: {folder}  (use it with --policy {folder})")
    return 0
