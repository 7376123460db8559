"""The `ellsa` command.

Each subcommand lives in the room it belongs to and is imported only when it is run, so
`ellsa --help` stays fast and a missing optional dependency only affects its own command.
A subcommand module exposes `configure(parser)` (adds its arguments) and `run(args) -> int`.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "bench": ("bench", "run a benchmark; prints one JSON object as its last line"),
    "datagen": ("ellsa_ros.sim.datagen.command", "make duplex training data from scripted LIBERO demonstrations"),
    "train": ("ellsa_ros.train.command", "train the model on `ellsa datagen` datasets (checkpoints, resumable)"),
    "export": ("ellsa_ros.model.onnx_export", "export a model checkpoint to ONNX graphs for onnxruntime"),
    "sim": ("ellsa_ros.sim.episode", "one LIBERO episode: spoken instruction, live transcript, video and rosbag"),
    "eval": ("ellsa_ros.sim.evaluate", "evaluate a policy on LIBERO suites, scenarios or instruction lists"),
    "bringup": ("ellsa_ros.bringup", "start the ROS 2 node graph of a params file, without ros2 launch"),
    "record": ("ellsa_ros.nodes.record", "record the runtime's ROS 2 topics to a rosbag2 folder (MCAP)"),
    "talk": ("ellsa_ros.nodes.console", "the teleoperator console: instructions in, transcript and events out"),
    "serve": ("ellsa_ros.serve.command", "serve a policy to robots over ZeroMQ (or --gen-keys DIR)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ellsa", description="ellsa_ros: a full-duplex robot control runtime")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_module, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return 0
    name = argv[0]
    if name not in COMMANDS:
        parser.error(f"unknown command {name!r}; choose from {', '.join(COMMANDS)}")
    module = importlib.import_module(COMMANDS[name][0])
    sub = argparse.ArgumentParser(prog=f"ellsa {name}", description=COMMANDS[name][1])
    module.configure(sub)
    args = sub.parse_args(argv[1:])
    return int(module.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
