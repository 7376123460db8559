"""`ellsa bench datagen`: how fast the data engine makes training data, and what it costs on disk.

Makes a small dataset of one task in a temporary directory with one worker (the simulator
built beforehand and not timed) and reports, per worker: seconds and demonstrations per hour,
simulated control steps per wall second (physics, two cameras rendered and compressed at the
stored frame rate, speech synthesis), and blocks per wall second at the given block length;
and per demonstration: stored frames (per camera) and bytes on disk, and bytes per block.
Blocks per second per worker times the worker count is the rate of a run that has a core per
worker.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--suite", default="libero_spatial")
    parser.add_argument("--task", type=int, default=0)
    parser.add_argument("--episodes", type=int, default=3, help="demonstrations to make")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--block-s", type=float, default=1.0, help="block length for the block counts")
    parser.add_argument("--frame-hz", type=float, default=4.0, help="camera frames stored per second")
    parser.add_argument("--patterns", default="", help="pattern shares (default: every pattern)")
    parser.add_argument("--voices", default="espeak:en-us+f2,espeak:en-us+m3",
                        help="user voices (default: espeak variants, which need no model files)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="keep the dataset here (default: a temporary directory)")


def measure(args: argparse.Namespace) -> dict:
    from ellsa_ros.sim.datagen import generate as gen
    from ellsa_ros.sim.datagen.inspect import dataset_counts
    from ellsa_ros.sim.datagen.patterns import PatternShares
    from ellsa_ros.sim.datagen.rollout import RolloutConfig
    from ellsa_ros.sim.datagen.voices import parse_voice

    if args.episodes < 1:
        raise SystemExit("need --episodes >= 1")
    with tempfile.TemporaryDirectory(prefix="ellsa-bench-datagen-") as tmp:
        out = args.out or Path(tmp)
        config = gen.DatagenConfig(
            out=out, suites=(args.suite,), tasks=str(args.task), episodes_per_task=args.episodes,
            shard_size=args.episodes, image_size=args.image_size, seed=args.seed,
            rollout=RolloutConfig(voices=tuple(parse_voice(v) for v in args.voices.split(",")), frame_hz=args.frame_hz),
            shares=PatternShares.parse(args.patterns) if args.patterns else PatternShares())
        print("building the simulator (not timed)", file=sys.stderr)
        built = time.perf_counter()
        gen._env_for(config, args.suite, args.task)
        build_s = time.perf_counter() - built
        start = time.perf_counter()
        manifest = gen.generate(config, progress=True)
        wall_s = time.perf_counter() - start
        counts = dataset_counts(out, args.block_s)
    kept = counts["episodes"]
    task = manifest["tasks"][f"{args.suite}/{args.task}"]
    return {
        "blocks_per_s_per_worker": round(counts["blocks"] / wall_s, 3),
        "bytes_per_block": counts["bytes_per_block"],
        "sim_steps_per_s_per_worker": round(counts["steps"] / wall_s, 2),
        "demos_per_hour_per_worker": round(3600.0 * kept / wall_s, 1),
        "s_per_demo": round(wall_s / kept, 2) if kept else None,
        "bytes_per_demo": round(counts["bytes"] / kept) if kept else None,
        "frames_per_demo": round(counts["frames"] / kept, 1) if kept else None, "frame_hz": args.frame_hz,
        "demos": kept, "attempts": task["attempts"], "discarded": task["discarded"],
        "blocks": counts["blocks"], "steps": counts["steps"], "wall_s": round(wall_s, 2),
        "sim_build_s": round(build_s, 2), "block_s": args.block_s, "image_size": args.image_size,
        "suite": args.suite, "task_id": args.task, "cameras": 2,
    }
