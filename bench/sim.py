"""`ellsa bench sim`: LIBERO simulator throughput.

Three environments of one task: physics only (no renderer), two cameras with robosuite's
stock rendering, two cameras tuned for speed. The two rendering ones are measured side by
side, in alternating rounds, so that whatever else loads the machine loads both alike.
All run the same seeded random actions; resets are not timed. Rates are control steps
(1/20 s of simulated time each) per wall-clock second.
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
    return time.perf_counter() - start


def measure(args: argparse.Namespace) -> dict:
    from ellsa_ros.sim.env import LiberoEnv, LiberoEnvConfig

    if args.physics_steps < 1 or args.render_steps < args.rounds or args.rounds < 1:
        raise SystemExit("need --physics-steps >= 1, --rounds >= 1 and --render-steps >= --rounds")
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
    return {
        "physics_steps_per_s": round(args.physics_steps / physics_s, 2),
        "render_stock_steps_per_s": round(stock, 2),
        "render_tuned_steps_per_s": round(tuned, 2),
        "render_speedup": round(tuned / stock, 2),
        "suite": args.suite, "task_id": args.task, "image_size": args.image_size, "cameras": 2,
        "physics_steps": args.physics_steps, "render_steps": args.render_steps,
    }
