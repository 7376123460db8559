"""`ellsa bench sim`: LIBERO simulator throughput, and what one evaluation episode costs.

Three environments of one task: physics only (no renderer), two cameras rendered after every
step with robosuite's stock rendering, and tuned for speed. The two rendering ones are
measured side by side, in alternating rounds, so that whatever else loads the machine loads
both alike. All run the same seeded random actions; resets are not timed. Rates are control
steps (1/20 s of simulated time each) per wall-clock second.

Then one evaluation episode as `ellsa eval` runs it (no video): the sim bridge, the engine
and the whole speech stack (the spoken instruction, VAD, stop words, ASR), 0.5 s blocks, the
cameras rendered on demand (at the block cuts), and a policy of fixed cost (`--policy-ms` of
computation per block, a fixed small motion). `eval_episode_s` is its wall time (building the
robot and the simulator not counted); `render_per_step_ms` is the rendering it paid per
physics step; physics, rendering and the policy are reported apart, the rest is the engine
and the speech stack.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--suite", default="libero_spatial")
    parser.add_argument("--task", type=int, default=0)
    parser.add_argument("--image-size", type=int, default=128, help="camera images are square, px")
    parser.add_argument("--physics-steps", type=int, default=300)
    parser.add_argument("--render-steps", type=int, default=60, help="steps for each of stock and tuned")
    parser.add_argument("--rounds", type=int, default=4, help="alternations between stock and tuned")
    parser.add_argument("--episode-steps", type=int, default=300, help="control steps of the evaluation episode")
    parser.add_argument("--policy-ms", type=float, default=40.0,
                        help="computation per block of the episode's policy (ms; the embedded model: ~40)")


class FixedCostPolicy:
    """A policy of fixed cost: `cost_s` of computation per block, then a chunk of small motions
    that sweep the hand back and forth (the images change, the arm stays in its workspace)."""

    block_s = 0.5

    def __init__(self, cost_s: float = 0.04, chunk: int = 10) -> None:
        self.cost_s, self.chunk = cost_s, chunk
        self.reset()

    def reset(self) -> None:
        self.blocks = 0

    def step(self, block):
        from ellsa_ros.runtime.policy import Decision

        until = time.perf_counter() + self.cost_s
        while time.perf_counter() < until:      # busy: a model computes, it does not sleep
            pass
        self.blocks += 1
        actions = np.zeros((self.chunk, 7), np.float32)
        actions[:, 0] = 0.3 * np.sin(0.7 * self.blocks)
        actions[:, 1] = 0.3 * np.cos(0.5 * self.blocks)
        actions[:, 6] = -1.0
        return Decision(actions=actions)


class _Timed:
    """Seconds spent in one method of an object, counted on the instance."""

    def __init__(self, obj, name: str) -> None:
        self.seconds, self.calls = 0.0, 0
        inner = getattr(obj, name)

        def timed(*a, **kw):
            start = time.perf_counter()
            try:
                return inner(*a, **kw)
            finally:
                self.seconds += time.perf_counter() - start
                self.calls += 1
        setattr(obj, name, timed)


def _actions(n: int, seed: int = 0) -> np.ndarray:
    # Small random moves: the arm stays in the workspace and the images change every step.
    rng = np.random.default_rng(seed)
    actions = rng.uniform(-0.3, 0.3, (n, 7))
    actions[:, 6] = -1.0
    return actions


def _timed_steps(env, actions: np.ndarray) -> float:
    start = time.perf_counter()
    for action in actions:
        env.step(action)
        if env.config.cameras:
            env.render_cameras()
    return time.perf_counter() - start


def eval_episode(args: argparse.Namespace) -> dict:
    """One evaluation episode of `--episode-steps` steps through the sim bridge (see the module doc)."""
    from ellsa_ros.sim.bridge import BridgeConfig, SimBridge
    from ellsa_ros.sim.env import LiberoEnv, LiberoEnvConfig
    from ellsa_ros.sim.robot import RobotSpec, SimRobot
    from ellsa_ros.sim.scenario import Expectations, Scenario, UserEvent

    print("building the robot's runtime and the simulator (not timed)", file=sys.stderr)
    robot = SimRobot(RobotSpec(policy_class="bench.sim:FixedCostPolicy", image_size=args.image_size, block_s=0.5))
    robot.policy.cost_s = args.policy_ms / 1000.0
    env = LiberoEnv(LiberoEnvConfig(args.suite, args.task, image_size=args.image_size))
    physics, rendering = _Timed(env, "step"), _Timed(env, "render_cameras")
    bridge = SimBridge(env, robot.make_engine, robot.user_tts, BridgeConfig(), on_scene=robot.hear_scene)
    duration_s = args.episode_steps / env.control_hz
    scenario = Scenario("bench", (UserEvent(0.5, "say", "{task}"),), Expectations(), duration_s=duration_s)
    bridge.speech(env.task.language, robot.engine_config().sample_rate)   # the TTS is set-up, not episode cost
    result = bridge.run(scenario, init_state=0, seed=0)
    env.close()
    if result.error:
        raise SystemExit(f"the evaluation episode crashed: {result.error}")
    steps = result.steps
    print(f"episode: {steps} steps in {result.wall_s:.1f} s ({rendering.calls} renders)", file=sys.stderr)
    return {
        "eval_episode_s": result.wall_s,
        "render_per_step_ms": round(1000.0 * rendering.seconds / steps, 2),
        "eval_steps": steps, "eval_physics_s": round(physics.seconds, 2), "eval_render_s": round(rendering.seconds, 2),
        "eval_renders": rendering.calls, "eval_policy_s": round(robot.policy.blocks * robot.policy.cost_s, 2),
        "eval_block_s": 0.5, "eval_policy_ms": args.policy_ms,
    }


def measure(args: argparse.Namespace) -> dict:
    from ellsa_ros.sim.env import LiberoEnv, LiberoEnvConfig

    if args.physics_steps < 1 or args.render_steps < args.rounds or args.rounds < 1 or args.episode_steps < 1:
        raise SystemExit("need --physics-steps >= 1, --rounds >= 1, --render-steps >= --rounds, --episode-steps >= 1")
    if args.policy_ms < 0:
        raise SystemExit("need --policy-ms >= 0")
    common = dict(suite=args.suite, task_id=args.task, image_size=args.image_size)
    longest = max(args.physics_steps, args.render_steps) + 1

    print("building physics-only environment", file=sys.stderr)
    physics = LiberoEnv(LiberoEnvConfig(cameras=False, max_steps=longest, **common))
    physics.reset(seed=0, options={"init_state": 0})
    physics_s = _timed_steps(physics, _actions(args.physics_steps))
    physics.close()
    print(f"physics: {args.physics_steps / physics_s:.1f} steps/s", file=sys.stderr)

    envs = {quality: LiberoEnv(LiberoEnvConfig(render_quality=quality, max_steps=longest, **common))
            for quality in ("stock", "tuned")}
    for env in envs.values():
        env.reset(seed=0, options={"init_state": 0})
    actions = _actions(args.render_steps)
    seconds = {quality: 0.0 for quality in envs}
    for chunk in np.array_split(actions, args.rounds):
        for quality, env in envs.items():
            seconds[quality] += _timed_steps(env, chunk)
        print(f"round: stock {seconds['stock']:.1f} s, tuned {seconds['tuned']:.1f} s so far", file=sys.stderr)
    for env in envs.values():
        env.close()

    stock = args.render_steps / seconds["stock"]
    tuned = args.render_steps / seconds["tuned"]
    episode = eval_episode(args)
    return {
        "physics_steps_per_s": round(args.physics_steps / physics_s, 2),
        "render_stock_steps_per_s": round(stock, 2),
        "render_tuned_steps_per_s": round(tuned, 2),
        "render_speedup": round(tuned / stock, 2),
        "suite": args.suite, "task_id": args.task, "image_size": args.image_size, "cameras": 2,
        "physics_steps": args.physics_steps, "render_steps": args.render_steps, **episode,
    }
