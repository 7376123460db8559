"""`ellsa datagen`: make duplex training data from scripted LIBERO demonstrations, or inspect it.

    ellsa datagen --suites libero_spatial,libero_object --episodes-per-task 100 --out data/duplex --seed 0
    ellsa datagen ... --workers 8                  # a local Ray of 8 CPUs, one simulator each
    ellsa datagen ... --ray HEAD:6379              # on a Ray cluster (--out on a shared file system)
    ellsa datagen --inspect data/duplex            # counts, and data/duplex/contact_sheet.png
    ellsa datagen --transcribe data/duplex         # what the runtime hears, beside each shard

A run that stops (Ctrl-C, a crash, a reboot) is resumed by running the same command again:
finished shards are kept, the rest are made. More demonstrations per task can be added later
by raising --episodes-per-task with otherwise the same settings. Shards whose worker died twice
are listed as not made (exit status 1); running the same command again makes them.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ellsa_ros.sim.cluster import ClusterError, add_parallel_arguments


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--suites", default="libero_spatial,libero_object", help="comma-separated LIBERO suites")
    parser.add_argument("--tasks", default="all", help="task ids in each suite: all, 0-3, 0,2 (default all)")
    parser.add_argument("--episodes-per-task", type=int, default=100, help="demonstrations per task (default 100)")
    parser.add_argument("--out", type=Path, help="dataset directory (made, or resumed)")
    parser.add_argument("--seed", type=int, default=0)
    add_parallel_arguments(parser, "shards")
    parser.add_argument("--shard-size", type=int, default=10, help="demonstrations per shard file")
    parser.add_argument("--attempts", type=int, default=3, help="tries per demonstration before it counts as lost")
    parser.add_argument("--max-failure-rate", type=float, default=0.5,
                        help="skip a task whose expert fails more often than this in its first shard")
    parser.add_argument("--image-size", type=int, default=128, help="camera images, square px")
    parser.add_argument("--image-codec", choices=("jpeg", "png"), default="jpeg")
    parser.add_argument("--frame-hz", type=float, default=4.0,
                        help="camera frames stored per second (default 4: blocks of multiples of 0.25 s); "
                             "state, actions, audio and labels are kept at the 20 Hz control rate")
    parser.add_argument("--patterns", default="", help="pattern shares, e.g. instruction=0.3,barge_in=0.2 "
                                                       "(default: every pattern, see patterns.py)")
    parser.add_argument("--noise-levels", default="0,0.05,0.1,0.2", help="DART action noise stds, one per episode")
    parser.add_argument("--voices", default="", help="user voices, backend[:variant][@rate], comma-separated "
                                                     "(default: piper, hibari and espeak variants)")
    parser.add_argument("--robot-voice", default="", help="the robot's voice (for the length of its words)")
    parser.add_argument("--inspect", type=Path, metavar="DIR", help="print counts of DIR and write its contact sheet")
    parser.add_argument("--transcribe", type=Path, metavar="DIR",
                        help="run the runtime's listener (silero VAD, reflex segmentation, Whisper) over every "
                             "microphone track of DIR and store the transcripts beside its shards (resumable); "
                             "`ellsa train --heard asr` trains on them")
    parser.add_argument("--sheet", type=Path, help="contact sheet path (default DIR/contact_sheet.png)")
    parser.add_argument("--block-s", type=float, default=1.0,
                        help="the block length the data is for: checked against --frame-hz, and the block "
                             "count of --inspect (default 1.0)")
    parser.add_argument("--no-progress", action="store_true")


def default_voices() -> tuple[str, ...]:
    """Natural voices from the speech stack where it is installed, and espeak variants."""
    espeak = ("espeak:en-us+f2", "espeak:en-us+m3", "espeak:en-gb+m1", "espeak:en-us+f4")
    try:
        import ellsa_ros.speech  # noqa: F401
    except ImportError:
        return espeak
    return ("piper", "hibari", *espeak)


def _floats(text: str, what: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise SystemExit(f"bad {what} {text!r}: expected comma-separated numbers") from None


def build_config(args: argparse.Namespace):
    from ellsa_ros.runtime.blocks import check_block_s
    from ellsa_ros.sim.datagen.generate import DatagenConfig
    from ellsa_ros.sim.datagen.patterns import PatternShares
    from ellsa_ros.sim.datagen.rollout import RolloutConfig
    from ellsa_ros.sim.datagen.voices import VoiceBox, parse_voice
    from ellsa_ros.sim.env import LiberoEnv
    from ellsa_ros.sim.frame_rate import check_serves_blocks

    voices = tuple(parse_voice(v) for v in (args.voices.split(",") if args.voices else default_voices()))
    robot = parse_voice(args.robot_voice or ("hibari" if "hibari" in default_voices() else "espeak:en-us+m3"))
    box = VoiceBox()
    for v in (*voices, robot):
        box.check(v)        # a missing backend is named now, not hours into the run
    rollout = RolloutConfig(noise_levels=_floats(args.noise_levels, "--noise-levels"), voices=voices,
                            robot_voice=robot, image_codec=args.image_codec, frame_hz=args.frame_hz)
    shares = PatternShares.parse(args.patterns) if args.patterns else PatternShares()
    check_serves_blocks(rollout.frame_hz, check_block_s(args.block_s), LiberoEnv.control_hz, "frame_hz")
    return DatagenConfig(out=args.out, suites=tuple(s.strip() for s in args.suites.split(",") if s.strip()),
                         tasks=args.tasks, episodes_per_task=args.episodes_per_task, seed=args.seed,
                         workers=args.workers if args.workers is not None or args.ray else 1,
                         ray_address=args.ray, shard_size=args.shard_size, attempts=args.attempts,
                         max_failure_rate=args.max_failure_rate, image_size=args.image_size, rollout=rollout,
                         shares=shares), box.fallbacks


def transcribe(root: Path, progress: bool) -> int:
    from tqdm import tqdm

    from ellsa_ros import speech
    from ellsa_ros.sim.datagen.hearing import transcribe_dataset
    from ellsa_ros.sim.datagen.storage import read_manifest

    try:
        total = sum(1 for h in read_manifest(root)["shards"].values() if h.get("kept", 0) > 0)
    except (FileNotFoundError, ValueError) as e:
        print(f"ellsa datagen: {e}", file=sys.stderr)
        return 2
    bar = tqdm(total=total, unit="shard", desc="transcribing", disable=not progress, file=sys.stderr)
    counts = transcribe_dataset(root, speech.make_vad("silero"), speech.make_transcriber(),
                                tick=lambda _: bar.update(1), front_end=speech.make_front_end())
    bar.close()
    print(json.dumps(counts))
    return 0


def run(args: argparse.Namespace) -> int:
    if args.transcribe is not None:
        return transcribe(args.transcribe, not args.no_progress)
    if args.inspect is not None:
        from ellsa_ros.sim.datagen.inspect import contact_sheet, dataset_counts

        sheet = args.sheet or args.inspect / "contact_sheet.png"
        try:
            counts = dataset_counts(args.inspect, args.block_s)
            counts["contact_sheet"] = str(sheet)
            counts["contact_sheet_tiles"] = contact_sheet(args.inspect, sheet)
        except (FileNotFoundError, ValueError) as e:
            print(f"ellsa datagen: {e}", file=sys.stderr)
            return 2
        print(json.dumps(counts, indent=1))
        return 0
    if args.out is None:
        print("ellsa datagen: give --out DIR to make data, or --inspect DIR to look at it", file=sys.stderr)
        return 2
    from ellsa_ros.sim.datagen.generate import generate

    try:
        config, fallbacks = build_config(args)
    except (ValueError, RuntimeError) as e:
        print(f"ellsa datagen: {e}", file=sys.stderr)
        return 2
    if fallbacks:
        print(f"ellsa datagen: speech stack not importable; using {', '.join(sorted(fallbacks))}", file=sys.stderr)
    try:
        manifest = generate(config, progress=not args.no_progress)
    except (ValueError, ClusterError) as e:
        print(f"ellsa datagen: {e}", file=sys.stderr)
        return 2
    for name, t in sorted(manifest["tasks"].items()):
        note = f"  SKIPPED: {t['skipped']}" if t["skipped"] else ""
        print(f"{name}: {t['kept']} demonstrations, {t['discarded']} discarded "
              f"(failure rate {100 * t['failure_rate']:.0f}%), {t['retries']} re-grasps{note}")
    for shard, reason in sorted(manifest["failed"].items()):
        print(f"NOT MADE {shard}: {reason}")
    if manifest["failed"]:
        print(f"ellsa datagen: {len(manifest['failed'])} shards not made; run the same command again to make them",
              file=sys.stderr)
        return 1
    return 0
