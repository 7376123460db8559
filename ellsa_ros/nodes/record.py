"""`ellsa record`: the recorder node in this process, until Ctrl-C or `--duration-s`.

    ellsa record [--output bags/run1] [--topics events action_chunk ...] [--duration-s 60]
"""
from __future__ import annotations

import argparse
import time


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", default="", help="bag folder to create (default bags/ellsa_<date>_<time>)")
    parser.add_argument("--topics", nargs="*", default=[], help="topics to record (default: every runtime topic)")
    parser.add_argument("--duration-s", type=float, default=0.0, help="stop after this long (0: until Ctrl-C)")


def run(args: argparse.Namespace) -> int:
    import rclpy
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

    from ellsa_ros.nodes.dds import configure_dds
    from ellsa_ros.nodes.params import ParamError
    from ellsa_ros.nodes.recorder_node import RecorderNode

    ros_args = ["--ros-args", "-r", "__node:=recorder"]
    if args.output:
        ros_args += ["-p", f"output:={args.output}"]
    if args.topics:
        ros_args += ["-p", "topics:=[" + ",".join(f"'{t}'" for t in args.topics) + "]"]
    configure_dds()
    rclpy.init(args=ros_args)
    try:
        node = RecorderNode()
    except ParamError as e:
        print(f"[record] {e}")
        rclpy.try_shutdown()
        return 2
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    end = time.monotonic() + args.duration_s if args.duration_s > 0 else float("inf")
    try:
        while rclpy.ok() and time.monotonic() < end:
            executor.spin_once(timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0
