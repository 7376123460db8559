"""`ellsa train`: train the model on one or more `ellsa datagen` datasets."""
from __future__ import annotations

import argparse
import sys

from .trainer import TrainConfig, train


def configure(parser: argparse.ArgumentParser) -> None:
    d = TrainConfig.__dataclass_fields__
    parser.add_argument("--data", required=True, help="dataset directories, comma-separated")
    parser.add_argument("--out", required=True, help="run directory: checkpoints go to OUT/model (resumed if present)")
    parser.add_argument("--size", default=d["size"].default, choices=["tiny", "small", "base"])
    parser.add_argument("--action-head", default=d["action_head"].default, choices=["fast", "continuous"])
    parser.add_argument("--speech-input", default=d["speech_input"].default, choices=["text", "audio"])
    parser.add_argument("--chunk", type=int, default=None,
                        help="actions per chunk at the control rate (default: the size's, 10); longer than a block "
                             "(20 at 0.5 s blocks) keeps the arm moving while the next block is decided")
    parser.add_argument("--init-from", default="", metavar="CKPT",
                        help="start from this checkpoint's weights (a fine-tune; it may have another --chunk)")
    parser.add_argument("--block-s", type=float, default=d["block_s"].default, help="block length in seconds")
    parser.add_argument("--steps", type=int, default=d["steps"].default, help="optimizer steps in all")
    parser.add_argument("--batch", type=int, default=d["batch"].default, help="sequences per step")
    parser.add_argument("--max-blocks", type=int, default=d["max_blocks"].default,
                        help="blocks taught per sequence (a later window keeps the blocks before it as context)")
    parser.add_argument("--heard", default=d["heard"].default, choices=["truth", "asr", "mix"],
                        help="the heard text trained on: as spoken, the runtime listener's transcripts "
                             "(`ellsa datagen --transcribe`), or one or the other per episode")
    parser.add_argument("--tasks", default="",
                        help="train on these tasks of the data only, e.g. libero_spatial:0-4 (default: all)")
    parser.add_argument("--lr", type=float, default=d["lr"].default, help="peak learning rate (cosine decay)")
    parser.add_argument("--save-every", type=int, default=d["save_every"].default, help="steps between checkpoints")
    parser.add_argument("--seed", type=int, default=d["seed"].default)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda where a GPU exists")
    parser.add_argument("--bf16", action="store_true",
                        help="bfloat16 autocast of the forward pass (about 1.5x faster on a CPU with AVX512-BF16)")
    parser.add_argument("--augment-shift-px", type=int, default=0, help="random image shifts up to N px (0: none)")
    parser.add_argument("--augment-jitter", type=float, default=0.0, help="brightness/contrast jitter (0: none)")
    parser.add_argument("--ema", type=float, default=0.0,
                        help="save an exponential moving average of the weights with this decay (0: none)")
    parser.add_argument("--eval-every", type=int, default=0,
                        help="steps between closed-loop evaluations of the checkpoint; the best goes to OUT/best "
                             "(0: none)")
    parser.add_argument("--eval-tasks", default="", help="the selection set, e.g. libero_spatial:0-9,libero_object:0-9")
    parser.add_argument("--eval-init-states", default="48,49",
                        help="init states of each selection task (kept apart from ellsa eval's 0, 1, ...)")
    parser.add_argument("--eval-max-steps", type=int, default=None,
                        help="control steps per selection episode (default: the suite's limit)")
    parser.add_argument("--eval-latency-s", type=float, default=d["eval_latency_s"].default,
                        help="inference time per block in selection episodes (default: %(default)s s, "
                             "the small model's block step p95)")


def run(args: argparse.Namespace) -> int:
    try:
        cfg = config_from(args)
        folder = train(cfg)
    except (ValueError, FileNotFoundError) as e:   # bad settings or data: named, no traceback
        print(f"ellsa train: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:                       # Ctrl-C or SIGTERM: the step it stopped at is saved
        return 130
    print(f"[train] checkpoint: {folder}  (use it with --policy {folder})")
    return 0


def config_from(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(data=[s for s in args.data.split(",") if s], out=args.out, size=args.size,
                      action_head=args.action_head, speech_input=args.speech_input, block_s=args.block_s,
                      steps=args.steps, batch=args.batch, max_blocks=args.max_blocks, heard=args.heard,
                      tasks=args.tasks, lr=args.lr, save_every=args.save_every, seed=args.seed, threads=args.threads,
                      device=args.device, bf16=args.bf16,
                      augment_shift_px=args.augment_shift_px, augment_jitter=args.augment_jitter, ema=args.ema,
                      eval_every=args.eval_every, eval_tasks=args.eval_tasks,
                      eval_init_states=tuple(int(x) for x in args.eval_init_states.split(",") if x.strip()),
                      eval_max_steps=args.eval_max_steps, eval_latency_s=args.eval_latency_s,
                      init_from=args.init_from,
                      model_overrides={} if args.chunk is None else {"chunk": args.chunk})
