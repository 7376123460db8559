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

With `--episodes N`, it then runs N closed-loop episodes (init states K..K+N-1 of the params
file's task, `--first-init-state K`, the instruction spoken) through the arm path and the same N through the direct
sim bridge (`--direct-config`, config/sim.yaml: the bridge executes action_chunk), one graph
per episode, and reports `success_rate` and `success_rate_direct` with each episode's outcome.
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
    parser.add_argument("--episodes", type=int, default=0, help="closed-loop episodes (init states K..K+N-1) "
                        "through the arm path and through the direct sim bridge; 0: success is not measured")
    parser.add_argument("--first-init-state", type=int, default=0, help="K, the first init state of the episodes")
    parser.add_argument("--direct-config", default="sim.yaml", help="params file of the direct sim bridge graph")
    parser.add_argument("--episode-max-steps", type=int, default=0,
                        help="control steps per episode (0: the suite's limit; fewer only checks the benchmark)")
    parser.add_argument("--episode-timeout-s", type=float, default=600.0,
                        help="wall seconds an episode's graph may take, start-up included")


# The section of each graph's params file that holds the simulated arm's episode settings.
BRIDGE_SECTIONS = ("sim_arm", "sim_bridge")


def episode_config(config: Path, init_state: int, max_steps: int, out_dir: Path) -> Path:
    """A copy of the params file whose simulated arm starts from `init_state` (and stops after
    `max_steps`, unless 0)."""
    import yaml
    doc = yaml.safe_load(config.read_text()) or {}
    section = next((n for n in BRIDGE_SECTIONS if n in doc), None)
    if section is None:
        raise SystemExit(f"bench arm: {config} has no {' or '.join(BRIDGE_SECTIONS)} section to set init_state in")
    params = doc[section].get("ros__parameters") or {}
    params["init_state"] = int(init_state)
    if max_steps:
        params["max_steps"] = int(max_steps)
    doc[section]["ros__parameters"] = params
    path = out_dir / f"{config.stem}_init{init_state}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


class Graph:
    """`ellsa bringup --config CONFIG` in its own ROS domain, and a node of this process in the
    same domain to watch it; stopped with Ctrl-C (SIGINT) on leaving."""

    def __init__(self, config: Path, node_name: str) -> None:
        self.config, self.node_name = config, node_name

    def __enter__(self) -> Graph:
        import rclpy
        from domain_coordinator import domain_id
        from rclpy.executors import SingleThreadedExecutor

        configure_dds()
        self._domain = domain_id()
        domain = self._domain.__enter__()
        self._tmp = tempfile.TemporaryDirectory()
        self.log_path = Path(self._tmp.name) / "bringup.log"
        env = dict(os.environ, ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
        with open(self.log_path, "wb") as log:
            self.bringup = subprocess.Popen([str(Path(sys.executable).parent / "ellsa"), "bringup", "--config",
                                             str(self.config)], env=env, cwd=self._tmp.name, stdout=log,
                                            stderr=subprocess.STDOUT)
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain)
        self.node = rclpy.create_node(self.node_name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        return self

    def spin_until(self, done, timeout_s: float, what: str) -> None:
        """Spin until `done()`; raise with the graph's log if it takes longer or the graph exits."""
        deadline = time.monotonic() + timeout_s
        while not done():
            if time.monotonic() > deadline or self.bringup.poll() is not None:
                raise RuntimeError(f"no {what} from the graph of {self.config.name}: "
                                   + self.log_path.read_text(errors="replace")[-2000:])
            self.executor.spin_once(timeout_sec=0.1)

    def spin_for(self, seconds: float) -> None:
        t_end = time.monotonic() + seconds
        while time.monotonic() < t_end:
            self.executor.spin_once(timeout_sec=0.05)

    def __exit__(self, *exc) -> None:
        import rclpy
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
        self.bringup.send_signal(signal.SIGINT)
        try:
            self.bringup.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.bringup.kill()
        self._tmp.cleanup()
        self._domain.__exit__(*exc)


def run_episode(config: Path, timeout_s: float) -> dict:
    """One episode of the graph of `config`: its `episode_end` event (success, steps)."""
    import json

    from std_msgs.msg import String

    from ellsa_ros.nodes import messages as m
    ended: list[dict] = []

    def on_event(msg: String) -> None:
        event = json.loads(msg.data)
        if event.get("kind") == "episode_end":
            ended.append(event)

    with Graph(config, "bench_arm_episode") as graph:
        graph.node.create_subscription(String, "sim/events", on_event, m.RELIABLE_QOS)
        graph.spin_until(lambda: bool(ended), timeout_s, "episode_end")
    return ended[0]


def success_rates(config: Path, direct: Path, init_states: range, max_steps: int, timeout_s: float) -> dict:
    outcomes: dict[str, list[bool]] = {"arm": [], "direct": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in init_states:
            for path_name, cfg in (("arm", config), ("direct", direct)):
                end = run_episode(episode_config(cfg, i, max_steps, Path(tmp)), timeout_s)
                outcomes[path_name].append(bool(end.get("success")))
                print(f"[bench arm] init state {i}, {path_name} path: "
                      f"{'success' if end.get('success') else 'no success'} after {end.get('steps')} steps",
                      file=sys.stderr, flush=True)
    return {"success_rate": round(float(np.mean(outcomes["arm"])), 4),
            "success_rate_direct": round(float(np.mean(outcomes["direct"])), 4),
            "episodes": len(init_states), "init_states": [init_states.start, init_states.stop - 1],
            "direct_config": str(direct),
            "success_by_init_state": {"arm": outcomes["arm"], "direct": outcomes["direct"]}}


def measure(args: argparse.Namespace) -> dict:
    from geometry_msgs.msg import TwistStamped

    from ellsa_ros.bringup import resolve_config
    from ellsa_ros.nodes import messages as m
    from ellsa_ros.nodes.params import PolicyParams, load_params_file

    config = resolve_config(args.config)
    policy = PolicyParams.from_mapping(load_params_file(config)["policy"])
    received: list[tuple[float, float, np.ndarray]] = []   # (receive s, stamp s, six values)

    def on_twist(msg: TwistStamped) -> None:
        t = msg.twist
        received.append((time.time(), m.from_stamp(msg.header.stamp),
                         np.array([t.linear.x, t.linear.y, t.linear.z, t.angular.x, t.angular.y, t.angular.z])))

    with Graph(config, "bench_arm") as graph:
        graph.node.create_subscription(TwistStamped, policy.command_topic_name, on_twist, m.RELIABLE_QOS)
        graph.spin_until(lambda: bool(received), args.startup_timeout_s, "twist")
        print("[bench arm] twists arriving; warming up", file=sys.stderr, flush=True)
        graph.spin_for(args.warmup_s)
        first = len(received)
        graph.spin_for(args.seconds)
        window = received[first:]
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
        **(success_rates(config, resolve_config(args.direct_config),
                         range(args.first_init_state, args.first_init_state + args.episodes), args.episode_max_steps,
                         args.episode_timeout_s)
           if args.episodes > 0 else {"success_rate": None, "success_rate_direct": None, "episodes": 0}),
    }
