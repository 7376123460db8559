"""`ellsa eval`: LIBERO evaluation through the duplex runtime, with spoken instructions.

    ellsa eval --suite libero_spatial --tasks 0-9 --episodes N [--scenario FILE] [--policy CKPT]
               [--workers K] [--ray ADDRESS] --out DIR
    ellsa eval --instructions FILE.yaml [--policy CKPT] --out DIR

Writes DIR/episodes/*.json (one per episode), DIR/videos/*.mp4 (chosen episodes, transcript
drawn on the frames), DIR/summary.json and DIR/summary.md, and prints the summary table.
Episode e of a task starts from the task's init state e (mod 50) unless the scenario fixes one.
An episode that crashes is recorded as a failure with its error, and the evaluation goes on.

Episodes run on Ray: `--workers K` starts a local Ray of K CPUs for the command (one actor per
worker, each keeping its robot and simulator across episodes), `--ray ADDRESS` runs them on a
cluster. With one worker and no cluster the episodes run in this process: a local Ray costs
seconds to start and its only gain, a policy crash taking down just its worker, does not need
a second worker.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from ellsa_ros.sim.bridge import BridgeConfig
from ellsa_ros.sim.cluster import ActorPool, ClusterError, JobFailure, RayCluster, add_parallel_arguments
from ellsa_ros.sim.eval_runner import VIDEO_CHOICES, EpisodeJob, EpisodeRunner, EpisodeWorker, EvalSetup, SetupError
from ellsa_ros.sim.report import duplex_lines, markdown, summarize, table_rows
from ellsa_ros.sim.robot import RobotSpec
from ellsa_ros.sim.scenario import ScenarioError

N_INIT_STATES = 50


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--suite", default="libero_spatial", help="LIBERO suite (default: libero_spatial)")
    parser.add_argument("--tasks", help="task ids: 0-9, 3, 0,2,5 or all (default: the scenario's task, else all)")
    parser.add_argument("--episodes", type=int, default=1, help="episodes per task (default: 1)")
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--scenario", metavar="FILE", help="a scenario YAML (sim/scenarios/); default: the task's "
                                                         "instruction spoken once")
    what.add_argument("--instructions", metavar="FILE", help="an instruction list YAML (sim/instructions/): "
                                                             "accuracy of act / reject / answer")
    add_robot_arguments(parser)
    add_parallel_arguments(parser, "episodes")
    parser.add_argument("--out", required=True, metavar="DIR", help="where results go")
    parser.add_argument("--videos", choices=VIDEO_CHOICES, default="first",
                        help="which episodes get an mp4 (default: the first of each task)")
    parser.add_argument("--typed", action="store_true",
                        help="without a scenario: type the instruction, do not speak it")
    parser.add_argument("--seed", type=int, default=0, help="base seed (episode k gets seed + k)")


def add_robot_arguments(parser: argparse.ArgumentParser) -> None:
    """Policy, voices, ears and camera rates: shared by `ellsa eval` and `ellsa sim`."""
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--policy", metavar="CKPT", help="a checkpoint folder, or remote:tcp://HOST:PORT "
                                                      "(default: the embedded model)")
    src.add_argument("--policy-class", metavar="MODULE:NAME", help="a Policy class or factory to run instead")
    parser.add_argument("--latency-s", type=float, default=0.0,
                        help="simulated inference time per block when the policy declares none (s)")
    parser.add_argument("--block-s", type=float, default=None,
                        help="block length (s); default: the one the policy was trained at, else 1.0")
    parser.add_argument("--image-size", type=int, default=128, help="camera image size (px)")
    parser.add_argument("--camera-hz", type=float, default=None, metavar="HZ",
                        help="how often both cameras are rendered for the robot (default: the slowest rate "
                             "that gives every block cut its own frame, 2 Hz at 0.5 s blocks)")
    parser.add_argument("--video-fps", type=float, default=10.0, metavar="FPS",
                        help="frames per second of the mp4s, from the agentview camera (default: 10)")
    parser.add_argument("--user-voice", default="hibari", help="TTS that speaks the user's lines")
    parser.add_argument("--robot-voice", default="espeak", help="TTS of the robot")
    parser.add_argument("--no-asr", action="store_true", help="do not transcribe the user for the policy")
    parser.add_argument("--no-keywords", action="store_true", help="no stop-word spotting")


def robot_spec(args: argparse.Namespace) -> RobotSpec:
    return RobotSpec(policy=args.policy, policy_class=args.policy_class, user_voice=args.user_voice,
                     robot_voice=args.robot_voice, asr=not args.no_asr, keywords=not args.no_keywords,
                     latency_s=args.latency_s, block_s=args.block_s, image_size=args.image_size)


def plan(args: argparse.Namespace) -> tuple[EvalSetup, list[EpisodeJob]]:
    """The evaluation's setup and episodes; raises ValueError / ScenarioError on bad input."""
    from ellsa_ros.sim.suites import parse_task_ids, task_spec

    if args.episodes < 1:
        raise ValueError(f"--episodes must be >= 1, got {args.episodes}")
    if args.workers is not None and args.workers < 1:
        raise ValueError(f"--workers must be >= 1, got {args.workers}")
    suite = args.suite
    task_spec(suite, 0)   # an unknown suite names the valid ones
    if args.instructions:
        from ellsa_ros.sim.instructions import load_instructions
        items = load_instructions(args.instructions)
        setup = EvalSetup(robot_spec(args), items.suite, args.out, args.image_size, args.videos,
                          instructions_path=args.instructions)
        jobs = [EpisodeJob(i, items.task, 0, items.init_state, args.seed + i, instruction=i)
                for i in range(len(items.instructions))]
        return setup, jobs
    fixed_init = None
    tasks_text = args.tasks
    if args.scenario:
        from ellsa_ros.sim.scenario import load_scenario
        scenario = load_scenario(args.scenario)
        if scenario.suite is not None and scenario.suite != suite:
            raise ValueError(f"{args.scenario} is written for {scenario.suite}, not {suite}: "
                             f"pass --suite {scenario.suite}")
        fixed_init = scenario.init_state
        if tasks_text is None and scenario.task is not None:
            tasks_text = str(scenario.task)
    task_ids = parse_task_ids(tasks_text or "all", suite)
    setup = EvalSetup(robot_spec(args), suite, args.out, args.image_size, args.videos, scenario_path=args.scenario,
                      typed=args.typed, bridge=BridgeConfig(camera_hz=args.camera_hz, video_fps=args.video_fps))
    jobs = []
    for task_id in task_ids:
        for e in range(args.episodes):
            init = fixed_init if fixed_init is not None else e % N_INIT_STATES
            jobs.append(EpisodeJob(len(jobs), task_id, e, init, args.seed + len(jobs)))
    return setup, jobs


def evaluate(setup: EvalSetup, jobs: list[EpisodeJob], workers: int | None = 1, runner: EpisodeRunner | None = None,
             progress: bool = True, ray_address: str | None = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Runs every job and writes the summary; returns the episode records, in job order, and
    the summary. In this process when one worker and no cluster are asked for (or `runner` is
    given), else on Ray: a local Ray of `workers` CPUs, or the cluster at `ray_address`.
    Raises ClusterError, before anything is written, when Ray cannot be started or joined."""
    out = Path(setup.out_dir)
    records: dict[int, dict[str, Any]] = {}

    def done(job: EpisodeJob, record: dict[str, Any]) -> None:
        records[job.index] = record
        bar.update(1)
        bar.set_postfix(success=f"{sum(r['success'] for r in records.values())}/{len(records)}")
    if runner is not None or (ray_address is None and (workers or 1) == 1):
        out.mkdir(parents=True, exist_ok=True)
        bar = _progress_bar(len(jobs), progress)
        own = runner or EpisodeRunner(setup)
        try:
            for job in jobs:
                done(job, own.run(job))
        finally:
            bar.close()
            if runner is None:
                own.close()
    else:
        setup = _portable(setup)
        with RayCluster(min(workers, len(jobs)) if workers else None, ray_address) as cluster:
            out.mkdir(parents=True, exist_ok=True)
            bar = _progress_bar(len(jobs), progress)
            try:
                _run_on_ray(setup, jobs, cluster.workers, done)
            finally:
                bar.close()
    ordered = [records[j.index] for j in jobs]
    summary = summarize(ordered, setup.suite)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    (out / "summary.md").write_text(markdown(summary))
    return ordered, summary


def _portable(setup: EvalSetup) -> EvalSetup:
    """The setup with absolute paths: Ray workers do not run in this working directory."""
    def absolute(path: str | None) -> str | None:
        return str(Path(path).resolve()) if path else path
    policy = setup.robot.policy
    if policy is not None and Path(policy).exists():
        policy = absolute(policy)
    return replace(setup, out_dir=absolute(setup.out_dir), scenario_path=absolute(setup.scenario_path),
                   instructions_path=absolute(setup.instructions_path), robot=replace(setup.robot, policy=policy))


def _run_on_ray(setup: EvalSetup, jobs: list[EpisodeJob], workers: int,
                done: Callable[[EpisodeJob, dict[str, Any]], None]) -> None:
    pool = ActorPool(EpisodeWorker, (setup, tuple(sys.path)), min(workers, len(jobs)), fatal=(SetupError,))
    try:
        for job in jobs:
            pool.submit(job, key=job.task_id)
        for job, result in pool.results():
            done(job, _crashed(setup, job, result.reason) if isinstance(result, JobFailure) else result)
    finally:
        pool.close()


def _crashed(setup: EvalSetup, job: EpisodeJob, error: str) -> dict[str, Any]:
    """The record of an episode that has no result of its own, written where its JSON goes."""
    path = Path(setup.out_dir) / "episodes" / f"{job.name}.json"
    record = {"scenario": setup.scenario_path or setup.instructions_path or "instruction", "suite": setup.suite,
              "task_id": job.task_id, "task": "", "init_state": job.init_state, "seed": job.seed, "success": False,
              "steps": 0, "sim_time_s": 0.0, "wall_s": 0.0, "metrics": {}, "checks": {}, "script": [],
              "transcript": [], "error": error, "passed": False, "job": job.name, "episode": job.episode,
              "instruction": job.instruction, "expected_outcome": None, "video": None, "json": str(path)}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1))
    return record


def _progress_bar(total: int, enabled: bool):
    from tqdm import tqdm
    return tqdm(total=total, desc="episodes", unit="ep", file=sys.stderr, disable=not enabled, dynamic_ncols=True)


def print_summary(summary: dict[str, Any], out_dir: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"ellsa eval: {summary['suite']}")
    for column in ("task", "episodes", "success", "passed", "errors"):
        table.add_column(column, justify="right" if column != "task" else "left")
    rows = table_rows(summary)
    for row in rows[:-1]:
        table.add_row(*row)
    table.add_row(*rows[-1], style="bold", end_section=True)
    console = Console()
    console.print(table)
    for line in duplex_lines(summary):
        console.print(line, highlight=False)
    console.print(f"episodes and videos in {out_dir}", highlight=False)


def run(args: argparse.Namespace) -> int:
    try:
        setup, jobs = plan(args)
    except (ValueError, ScenarioError, FileNotFoundError) as e:
        print(f"ellsa eval: {e}", file=sys.stderr)
        return 2
    try:
        _records, summary = evaluate(setup, jobs, args.workers, ray_address=args.ray)
    except (SetupError, ClusterError) as e:
        print(f"ellsa eval: {e}", file=sys.stderr)
        return 2
    print_summary(summary, args.out)
    return 0
