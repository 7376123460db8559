"""The evaluation's episodes: what one episode of an evaluation is, and the process that runs it.

`EvalSetup` and `EpisodeJob` are plain data (they travel to Ray workers). An
`EpisodeRunner` lives in one process (the command's, or an `EpisodeWorker` actor's): it builds
the simulated robot once and one simulator (rebuilt only when the task changes), runs jobs,
writes each episode's JSON (and video, when chosen) itself, and returns a compact record.
Whatever goes wrong in an episode is recorded in that episode as a failure with its error; only
a policy that cannot be loaded stops the evaluation (`SetupError`): no episode could run.
"""
from __future__ import annotations

import json
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ellsa_ros.sim.bridge import BridgeConfig, EpisodeResult, SimBridge
from ellsa_ros.sim.robot import PolicyLoadError, RobotSpec, SimRobot
from ellsa_ros.sim.scenario import Scenario, instruction_scenario

VIDEO_CHOICES = ("none", "first", "failures", "all")
COMPACT_DROP = ("events",)


class SetupError(RuntimeError):
    """The evaluation cannot run at all (the policy or the speech stack cannot be built)."""


@dataclass(frozen=True)
class EvalSetup:
    """What every episode of an evaluation shares."""
    robot: RobotSpec
    suite: str
    out_dir: str
    image_size: int = 128
    videos: str = "first"                   # which episodes get an mp4: none, first (per task), failures, all
    scenario_path: str | None = None
    instructions_path: str | None = None
    typed: bool = False                     # without a scenario: type the instruction instead of speaking it
    bridge: BridgeConfig = field(default_factory=BridgeConfig)
    max_steps: int | None = None            # control steps an episode may take; None: the suite's limit

    def __post_init__(self) -> None:
        if self.videos not in VIDEO_CHOICES:
            raise ValueError(f"videos must be one of {', '.join(VIDEO_CHOICES)}, got {self.videos!r}")
        if self.scenario_path and self.instructions_path:
            raise ValueError("give a scenario or an instruction list, not both")


@dataclass(frozen=True)
class EpisodeJob:
    """One episode: `episode` counts within its task; `instruction` indexes an instruction list."""
    index: int
    task_id: int
    episode: int
    init_state: int
    seed: int
    instruction: int | None = None

    @property
    def name(self) -> str:
        if self.instruction is not None:
            return f"t{self.task_id:02d}_i{self.instruction:03d}"
        return f"t{self.task_id:02d}_e{self.episode:03d}"


class EpisodeRunner:
    """Runs jobs of one evaluation in this process."""

    def __init__(self, setup: EvalSetup, robot: SimRobot | None = None, env=None) -> None:
        """`robot`, `env`: already built parts to use (else built from `setup`); an env given
        here is the caller's to close."""
        self.setup = setup
        try:
            self.robot = robot if robot is not None else SimRobot(setup.robot)
        except PolicyLoadError as e:
            raise SetupError(str(e)) from e
        except Exception as e:  # noqa: BLE001 - the speech stack failing is a setup error too
            raise SetupError(f"cannot build the simulated robot: {type(e).__name__}: {e}") from e
        try:   # the block length is the policy's: the rates are checked once it is known
            setup.bridge.camera_interval(self.robot.engine_config())
            setup.bridge.video_interval(self.robot.engine_config().control_hz)
        except ValueError as e:
            raise SetupError(str(e)) from e
        self.scenario = _scenario_source(setup)
        self.env = env
        self._own_env = env is None
        self.bridge: SimBridge | None = None
        self.out = Path(setup.out_dir)

    def run(self, job: EpisodeJob) -> dict[str, Any]:
        """Runs `job`, writes its JSON (and video), returns the record without its event list."""
        try:
            scenario, expected = self._scenario(job)
            result = self._bridge(job).run(scenario, init_state=job.init_state, task_id=job.task_id, seed=job.seed)
        except Exception as e:  # noqa: BLE001 - the simulator failed to build: this episode fails, the rest go on
            result = EpisodeResult(self.setup.scenario_path or "instruction", self.setup.suite, job.task_id, "",
                                   job.init_state, job.seed,
                                   error=f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=6)}")
            expected = None
        record = result.to_dict()
        record.update(job=job.name, episode=job.episode, instruction=job.instruction, expected_outcome=expected)
        if expected is not None:
            answered = all(c["ok"] for name, c in result.checks.items() if name == "answer_contains")
            record["outcome_ok"] = result.error is None and record["metrics"].get("outcome") == expected and answered
        path = self.out / "episodes" / f"{job.name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=1, default=_plain))
        record["video"] = self._video(job, result)
        record["json"] = str(path)
        return {k: v for k, v in record.items() if k not in COMPACT_DROP}

    def close(self) -> None:
        if self.env is not None and self._own_env:
            self.env.close()

    def _bridge(self, job: EpisodeJob) -> SimBridge:
        if self.env is None:
            from ellsa_ros.sim.env import LiberoEnv, LiberoEnvConfig
            self.env = LiberoEnv(LiberoEnvConfig(self.setup.suite, job.task_id, image_size=self.setup.image_size,
                                                 max_steps=self.setup.max_steps))
        if self.bridge is None:
            bridge_config = replace(self.setup.bridge, record_frames=self.setup.videos != "none")
            self.bridge = SimBridge(self.env, self.robot.make_engine, self.robot.user_tts, bridge_config,
                                    on_scene=self.robot.hear_scene)
        return self.bridge

    def _scenario(self, job: EpisodeJob) -> tuple[Scenario, str | None]:
        if job.instruction is not None:
            return self.scenario.scenario(job.instruction), self.scenario.instructions[job.instruction].expect
        return self.scenario, None

    def _video(self, job: EpisodeJob, result: EpisodeResult) -> str | None:
        mode = self.setup.videos
        chosen = mode == "all" or (mode == "first" and job.episode == 0) or (mode == "failures" and not result.passed)
        if not chosen or not result.frames:
            return None
        from ellsa_ros.sim.video import write_video
        try:
            return str(write_video(self.out / "videos" / f"{job.name}.mp4", result))
        except Exception as e:  # noqa: BLE001 - a video that cannot be written does not fail the episode
            return f"not written: {type(e).__name__}: {e}"


def _scenario_source(setup: EvalSetup):
    if setup.instructions_path:
        from ellsa_ros.sim.instructions import load_instructions
        return load_instructions(setup.instructions_path)
    if setup.scenario_path:
        from ellsa_ros.sim.scenario import load_scenario
        return load_scenario(setup.scenario_path)
    return instruction_scenario(typed=setup.typed)


def _plain(x: Any) -> Any:
    if hasattr(x, "tolist"):
        return x.tolist()
    return str(x)


# --- Ray workers -----------------------------------------------------------------------------

class EpisodeWorker:
    """One Ray actor of an evaluation: its runner (the robot, and a simulator kept across the
    episodes of a task) is built once. `sys_path`: the driver's import path, appended here so
    that a `--policy-class` module the driver can import is found by the worker too."""

    def __init__(self, setup: EvalSetup, sys_path: tuple[str, ...] = ()) -> None:
        import sys

        sys.path.extend(p for p in sys_path if p not in sys.path)
        self.setup_error: str | None = None
        self.runner: EpisodeRunner | None = None
        if not Path(setup.out_dir).is_dir():
            import socket
            self.setup_error = (f"the worker on {socket.gethostname()} cannot see {setup.out_dir}: on a cluster, "
                                "--out must be on a file system every node shares")
            return
        try:
            self.runner = EpisodeRunner(setup)
        except SetupError as e:
            self.setup_error = str(e)

    def run(self, job: EpisodeJob) -> dict[str, Any]:
        if self.runner is None:
            raise SetupError(self.setup_error or "the worker has no runner")
        return self.runner.run(job)
