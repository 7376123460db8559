"""Real action trajectories from the LIBERO simulator, for training the FAST action tokenizer.

No demonstrations can be downloaded here, so trajectories come from a privileged scripted
reach–grasp–lift–carry–release motion run in the physics simulator (no cameras): the object
of interest is approached from above, grasped, lifted and carried towards the second object
of interest. The actions are what was commanded (LIBERO's 7-D end-effector delta in [-1, 1]
at 20 Hz), so their statistics — smooth proportional segments, saturation, gripper steps,
contact-induced corrections — are those of a real controller in a real physics loop.

    python -m ellsa_ros.model.sim_trajectories --out ellsa_ros/model/assets/libero_trajectories.npz
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

SUITE = "libero_spatial"
GAIN = 12.0            # P gain: metres of error -> normalised delta action
ROT_GAIN = 3.0         # P gain: radians of orientation error -> normalised delta action
SETTLE_STEPS = 10      # object poses are wrong until ~10 no-op steps after set_init_state


def _phase_targets(obj: np.ndarray, goal: np.ndarray, rng: np.random.Generator) -> list[tuple[np.ndarray, float, int]]:
    """Waypoints (eef target position, gripper command, steps) of one scripted pick and carry."""
    grip_off = np.array([0.0, rng.choice([-0.045, 0.045]), 0.0])  # bowl rims: grasp off-centre
    above = obj + grip_off + np.array([0.0, 0.0, 0.12])
    at = obj + grip_off + np.array([0.0, 0.0, 0.01])
    lift = at + np.array([0.0, 0.0, 0.18])
    over_goal = goal + grip_off + np.array([0.0, 0.0, 0.2])
    place = goal + grip_off + np.array([0.0, 0.0, 0.08])
    return [(above, -1.0, 60), (at, -1.0, 40), (at, 1.0, 15), (lift, 1.0, 40),
            (over_goal, 1.0, 60), (place, 1.0, 30), (place, -1.0, 15), (over_goal, -1.0, 30)]


def run_episode(env, init_state: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Runs one scripted episode; returns the (T, 7) float32 commanded actions."""
    env.reset()
    obs = env.set_init_state(init_state)
    for _ in range(SETTLE_STEPS):
        obs, _, _, _ = env.step(np.zeros(7))
    names = list(env.env.obj_of_interest)
    obj = np.asarray(obs[f"{names[0]}_pos"], dtype=np.float64)
    goal = np.asarray(obs[f"{names[-1]}_pos"], dtype=np.float64) if len(names) > 1 else obj + [0.0, 0.15, 0.0]
    from robosuite.utils import transform_utils as tu

    hold_quat = np.asarray(obs["robot0_eef_quat"], dtype=np.float64)  # contacts twist the hand: hold it
    actions = []
    for target, grip, steps in _phase_targets(obj, goal, rng):
        for _ in range(steps):
            err = target - np.asarray(obs["robot0_eef_pos"], dtype=np.float64)
            a = np.zeros(7)
            a[:3] = np.clip(GAIN * err, -1.0, 1.0)
            q_err = tu.quat_multiply(hold_quat, tu.quat_inverse(np.asarray(obs["robot0_eef_quat"])))
            a[3:6] = np.clip(ROT_GAIN * tu.quat2axisangle(q_err), -1.0, 1.0)
            a[6] = grip
            obs, _, done, _ = env.step(a)
            actions.append(a)
            if done:
                return np.asarray(actions, dtype=np.float32)
    return np.asarray(actions, dtype=np.float32)


def generate(tasks: int, inits: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Runs `tasks` x `inits` episodes of the suite; returns the concatenated trajectories."""
    os.environ.setdefault("MUJOCO_GL", "egl")
    from libero.libero import benchmark, get_libero_path
    from libero.libero.envs.env_wrapper import ControlEnv

    suite = benchmark.get_benchmark_dict()[SUITE]()
    rng = np.random.default_rng(seed)
    chunks, lengths = [], []
    for t in range(tasks):
        task = suite.get_task(t)
        bddl = os.path.join(get_libero_path("bddl_files"), task.problem_folder, task.bddl_file)
        env = ControlEnv(bddl_file_name=bddl, use_camera_obs=False, has_offscreen_renderer=False)
        env.seed(seed)
        states = suite.get_task_init_states(t)
        for i in range(min(inits, len(states))):
            actions = run_episode(env, states[i], rng)
            chunks.append(actions)
            lengths.append(len(actions))
            print(f"task {t} init {i}: {len(actions)} steps", file=sys.stderr, flush=True)
        env.close()
    return {"actions": np.concatenate(chunks), "lengths": np.asarray(lengths, dtype=np.int64)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "assets" / "libero_trajectories.npz")
    p.add_argument("--tasks", type=int, default=10)
    p.add_argument("--inits", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    data = generate(args.tasks, args.inits, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **data)
    print(f"wrote {len(data['lengths'])} episodes, {len(data['actions'])} steps to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
