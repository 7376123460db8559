"""`ellsa sim`: one LIBERO episode with the robot's runtime, spoken to, recorded.

    ellsa sim                                   # libero_spatial task 0, init state 0, embedded model
    ellsa sim --task 3 --instruction "pick up the bowl by the stove" --out runs/
    ellsa sim --scenario sim/scenarios/stop_mid_task.yaml --policy remote:tcp://127.0.0.1:5555

The instruction is spoken into the microphone stream (or the scenario's lines are); the
transcript and the engine's events print live, in simulation time; the run folder gets the
episode's JSON, an mp4 with the conversation drawn on it, and a rosbag2 (MCAP) recording.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from ellsa_ros.runtime import events as ev
from ellsa_ros.sim.bridge import BridgeConfig
from ellsa_ros.sim.evaluate import add_robot_arguments, robot_spec

QUIET_EVENTS = (ev.Decided, ev.RobotSpeechUnduck)   # per-block bookkeeping: in the JSON, not on screen


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--suite", default="libero_spatial", help="LIBERO suite (default: libero_spatial)")
    parser.add_argument("--task", type=int, default=0, help="task id in the suite (default: 0)")
    parser.add_argument("--init-state", type=int, default=0, help="which of the task's init states (default: 0)")
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--instruction", help="what the user says (default: the task's own instruction)")
    what.add_argument("--scenario", metavar="FILE", help="a scenario YAML to play instead")
    parser.add_argument("--typed", action="store_true", help="type the instruction instead of speaking it")
    parser.add_argument("--steps", type=int, help="steps allowed after the instruction (default: the suite's limit)")
    add_robot_arguments(parser)
    parser.add_argument("--out", default="sim_runs", metavar="DIR",
                        help="where the run folder goes (default: sim_runs)")
    parser.add_argument("--no-video", action="store_true", help="write no mp4")
    parser.add_argument("--no-bag", action="store_true", help="write no rosbag2 recording")
    parser.add_argument("--seed", type=int, default=0)


class LivePrinter:
    """Prints the conversation and the robot's events as they happen (an event subscriber)."""

    def __init__(self, console) -> None:
        self.console = console

    def __call__(self, e: ev.Event) -> None:
        if isinstance(e, QUIET_EVENTS) or (isinstance(e, (ev.StaleInput, ev.InputRecovered)) and e.t < 0.1):
            return
        stamp = f"[dim]{e.t:7.2f} s[/dim]"
        if isinstance(e, ev.UserTranscript):
            self.console.print(f"{stamp} [green]user ({e.source}):[/green] {_escape(e.text)}")
        elif isinstance(e, ev.RobotSpeechStart):
            self.console.print(f"{stamp} [yellow]robot:[/yellow] {_escape(e.text)}")
        elif isinstance(e, (ev.Rejection, ev.ActionHalt, ev.PolicyError, ev.TaskDone)):
            self.console.print(f"{stamp} [bold red]{e.kind}[/bold red] {_details(e)}")
        else:
            self.console.print(f"{stamp} [cyan]{e.kind}[/cyan] {_details(e)}")


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from ellsa_ros.sim.robot import PolicyLoadError, SimRobot
    from ellsa_ros.sim.scenario import ScenarioError, instruction_scenario, load_scenario
    from ellsa_ros.sim.suites import task_spec

    console = Console(highlight=False)
    try:
        spec_task = task_spec(args.suite, args.task)
        scenario = load_scenario(args.scenario) if args.scenario else \
            instruction_scenario(args.instruction or "{task}", typed=args.typed)
        spec = robot_spec(args)
        bridge_config = BridgeConfig(record_frames=not (args.no_video and args.no_bag), camera_hz=args.camera_hz,
                                     video_fps=None if args.no_video else args.video_fps)
    except (ValueError, ScenarioError, FileNotFoundError) as e:
        print(f"ellsa sim: {e}", file=sys.stderr)
        return 2
    console.print(f"[bold]{args.suite} task {args.task}[/bold] (init state {args.init_state}): {spec_task.language}")
    console.print(f"policy: {spec.policy_name}; loading the robot's runtime ...")
    try:
        robot = SimRobot(spec)
    except (PolicyLoadError, RuntimeError) as e:
        print(f"ellsa sim: {e}", file=sys.stderr)
        return 2
    try:   # the block length is the policy's: the rates are checked once it is known, before the simulator
        bridge_config.camera_interval(robot.engine_config())
        bridge_config.video_interval(robot.engine_config().control_hz)
    except ValueError as e:
        print(f"ellsa sim: {e}", file=sys.stderr)
        return 2
    from ellsa_ros.sim.bridge import SimBridge
    from ellsa_ros.sim.env import LiberoEnv, LiberoEnvConfig

    console.print("building the simulator ...")
    env = LiberoEnv(LiberoEnvConfig(args.suite, args.task, image_size=args.image_size, max_steps=args.steps))
    bridge = SimBridge(env, robot.make_engine, robot.user_tts, bridge_config, on_scene=robot.hear_scene)
    for e in scenario.for_task(spec_task.language).events:
        what = f"silence for {e.duration_s:.1f} s" if e.kind == "silence" else \
            f"{'types' if e.typed else 'says'} ({e.kind}): {_escape(e.text)}"
        console.print(f"[dim]script: at {e.at_s:.2f} s the user {what}[/dim]")
    result = bridge.run(scenario, init_state=args.init_state, task_id=args.task, seed=args.seed,
                        on_event=LivePrinter(console))
    env.close()
    run_dir = Path(args.out) / f"{args.suite}_t{args.task}_s{args.init_state}_{time.strftime('%Y%m%d-%H%M%S')}"
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "episode.json").write_text(json.dumps(result.to_dict(), indent=1, default=str))
    written = [run_dir / "episode.json"]
    if not args.no_video and result.video_fps:
        from ellsa_ros.sim.video import write_video
        written.append(write_video(run_dir / "episode.mp4", result))
    if not args.no_bag:
        from ellsa_ros.sim.bag import write_bag
        written.append(write_bag(run_dir / "bag", result, robot.engine_config().sample_rate))
    verdict = "[green]success[/green]" if result.success else "[red]no success[/red]"
    console.print(f"{verdict} after {result.steps} steps ({result.sim_time_s:.2f} s sim, {result.wall_s:.1f} s wall)")
    if result.error:
        console.print(f"[bold red]the episode crashed:[/bold red] {_escape(result.error)}")
    for path in written:
        console.print(f"wrote {path}")
    return 0 if result.error is None else 1


def _details(e: ev.Event) -> str:
    d = e.to_dict()
    return _escape(" ".join(f"{k}={v}" for k, v in d.items() if k not in ("t", "kind")))


def _escape(text: str) -> str:
    from rich.markup import escape
    return escape(str(text))
