"""`ellsa bench arm`: the closed loop through a real arm's interfaces, in simulation.

`ellsa bringup --config config/arm_sim.yaml` (or `--config FILE`): the sim bridge as a Panda
behind MoveIt Servo's twist topic and a gripper controller, the policy node with the
embedded model and the real speech stack, a speaker writing a file. This process subscribes
to the twist like Servo does and measures, after a warm-up:

- command_hz: twists received per second (target: control_hz within 1%);
- command_latency_ms_p50 / _p99: receive time minus the twist's header stamp, which is the
  engine tick that made it (same host clock), i.e. tick to message on the wire and delivered;
- over_cap / non_finite: twists above the policy's max_linear_speed / max_angular_speed, or
  with a non-finite value (target: 0 each).

success_rate through the arm path beside the direct sim bridge's is not measured here: the
embedded model succeeds on no episode yet (see README), so both would read 0.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ellsa_ros.nodes.dds import configure_dds


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default="arm_sim.yaml", help="params file of the arm_sim graph")
    parser.add_argument("--seconds", type=float, default=20.0, help="measuring time after the warm-up")
    parser.add_argument("--warmup-s", type=float, default=5.0, help="unmeasured time once twists arrive")
    parser.add_argument("--startup-timeout-s", type=float, default=300.0)


def measure(args: argparse.Namespace) -> dict:
    import rclpy
    from domain_coordinator import domain_id
    from geometry_msgs.msg import TwistStamped
    from rclpy.executors import SingleThreadedExecutor

    from ellsa_ros.bringup import resolve_config
    from ellsa_ros.nodes import messages as m
    from ellsa_ros.nodes.params import PolicyParams, load_params_file

    config = resolve_config(args.config)
    policy = PolicyParams.from_mapping(load_params_file(config)["policy"])
    configure_dds()
    received: list[tuple[float, float, np.ndarray]] = []   # (receive s, stamp s, six values)

    def on_twist(msg: TwistStamped) -> None:
        t = msg.twist
        received.append((time.time(), m.from_stamp(msg.header.stamp),
                         np.array([t.linear.x, t.linear.y, t.linear.z, t.angular.x, t.angular.y, t.angular.z])))

    with domain_id() as domain, tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
        log = open(Path(tmp) / "bringup.log", "wb")
        bringup = subprocess.Popen([str(Path(sys.executable).parent / "ellsa"), "bringup", "--config", str(config)],
                                   env=env, cwd=tmp, stdout=log, stderr=subprocess.STDOUT)
        context = rclpy.Context()
        rclpy.init(context=context, domain_id=domain)
        node = rclpy.create_node("bench_arm", context=context)
        node.create_subscription(TwistStamped, policy.command_topic_name, on_twist, m.RELIABLE_QOS)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        try:
            deadline = time.monotonic() + args.startup_timeout_s
            while not received:
                if time.monotonic() > deadline or bringup.poll() is not None:
                    raise RuntimeError("no twist from the arm_sim graph: "
                                       + (Path(tmp) / "bringup.log").read_text(errors="replace")[-2000:])
                executor.spin_once(timeout_sec=0.1)
            print("[bench arm] twists arriving; warming up", file=sys.stderr, flush=True)
            t_start = time.monotonic() + args.warmup_s
            while time.monotonic() < t_start:
                executor.spin_once(timeout_sec=0.05)
            first = len(received)
            t_end = time.monotonic() + args.seconds
            while time.monotonic() < t_end:
                executor.spin_once(timeout_sec=0.05)
            window = received[first:]
        finally:
            executor.shutdown()
            node.destroy_node()
            rclpy.try_shutdown(context=context)
            bringup.send_signal(signal.SIGINT)
            try:
                bringup.wait(timeout=60)
            except subprocess.TimeoutExpired:
                bringup.kill()
    if len(window) < 2:
        raise RuntimeError(f"only {len(window)} twists in {args.seconds} s")
    arrivals = np.array([w[0] for w in window])
    latency_ms = np.array([(w[0] - w[1]) * 1000.0 for w in window])
    values = np.array([w[2] for w in window])
    stamps = np.array([w[1] for w in window])
    return {
        "benchmark": "arm", "config": str(config), "control_hz": policy.control_hz,
        "command_hz": round((len(window) - 1) / float(arrivals[-1] - arrivals[0]), 3),
        "command_hz_by_stamp": round((len(window) - 1) / float(stamps[-1] - stamps[0]), 3),
        "command_latency_ms_p50": round(float(np.percentile(latency_ms, 50)), 3),
        "command_latency_ms_p99": round(float(np.percentile(latency_ms, 99)), 3),
        "twists": len(window),
        "moving": int((np.abs(values) > 1e-9).any(axis=1).sum()),
        "over_cap": int((np.linalg.norm(values[:, :3], axis=1) > policy.max_linear_speed).sum()
                        + (np.linalg.norm(values[:, 3:], axis=1) > policy.max_angular_speed).sum()),
        "non_finite": int((~np.isfinite(values)).any(axis=1).sum()),
        "success_rate": None,
        "success_rate_note": "not measured: the embedded model succeeds on no episode yet",
    }
