"""Choosing checkpoints by closed-loop success, not by loss.

A falling loss is not a working robot: during a run, `ellsa train --eval-every N` evaluates
each N-th checkpoint in the simulator on a fixed set of episodes (spoken instructions through
the real speech stack, the episodes the evaluation command runs) and keeps the best one in
`RUN/best`. The curve of loss and success against step is kept in `RUN/curve.json` and drawn
in `RUN/curve.png`. The set's init states are kept apart from those a final evaluation uses
(`ellsa eval` takes init states 0, 1, ... in order), so what chose the checkpoint does not
also score it.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

SELECTION_INIT_STATES = (48, 49)
SELECTION_LATENCY_S = 0.1   # inference time per block in selection episodes: the small model's block step p95


@dataclass(frozen=True)
class SelectionSet:
    """tasks: "libero_spatial:0-9,libero_object:0-9" (suite:task ids); init_states: of each task;
    max_steps: control steps per episode (None: the suite's limit); latency_s: inference time
    per block, so that the checkpoint chosen is one that works when its answers come late, as
    they do on a robot."""
    tasks: str
    init_states: tuple[int, ...] = SELECTION_INIT_STATES
    max_steps: int | None = None
    latency_s: float = SELECTION_LATENCY_S

    def suites(self) -> dict[str, list[int]]:
        from ellsa_ros.sim.suites import parse_suite_tasks
        if not self.init_states:
            raise ValueError("selection needs at least one init state")
        return parse_suite_tasks(self.tasks)


def closed_loop_success(checkpoint: Path, selection: SelectionSet, out: Path) -> dict:
    """Runs the selection set with the checkpoint in this process; returns the success rate
    overall and per suite. Episode records go to `out/<suite>/`."""
    from ellsa_ros.sim.eval_runner import EpisodeJob, EvalSetup
    from ellsa_ros.sim.evaluate import evaluate
    from ellsa_ros.sim.robot import RobotSpec

    per_suite, episodes, successes = {}, 0, 0
    for suite, task_ids in selection.suites().items():
        robot = RobotSpec(policy=str(checkpoint), latency_s=selection.latency_s)
        setup = EvalSetup(robot, suite, str(out / suite), videos="none", max_steps=selection.max_steps)
        # each episode its own record (the task's k-th init state is its episode k)
        jobs = [EpisodeJob(i, task, k, init, seed=i)
                for i, (task, k, init) in enumerate((t, k, s) for t in task_ids
                                                    for k, s in enumerate(selection.init_states))]
        _, summary = evaluate(setup, jobs, workers=1, progress=False)
        per_suite[suite] = summary["success_rate"]
        episodes += summary["episodes"]
        successes += round(summary["success_rate"] * summary["episodes"])
    return {"success_rate": round(successes / episodes, 4), "episodes": episodes, "per_suite": per_suite}


class Curve:
    """Loss and success against step for one run; survives a resumed run."""

    def __init__(self, run: Path) -> None:
        self.path = run / "curve.json"
        self.points: dict[str, list] = {"loss": [], "success": []}
        if self.path.is_file():
            self.points = json.loads(self.path.read_text(encoding="utf-8"))

    def loss(self, step: int, value: float) -> None:
        self.points["loss"].append([step, round(float(value), 5)])

    def success(self, step: int, result: dict) -> bool:
        """Records a closed-loop result; True when it is the best so far (ties: the later one)."""
        best = max((r["success_rate"] for _, r in self.points["success"]), default=-1.0)
        self.points["success"].append([step, result])
        return result["success_rate"] >= best

    def save(self) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(self.points), encoding="utf-8")
        tmp.replace(self.path)
        self.draw(self.path.with_suffix(".png"))

    def draw(self, png: Path) -> None:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, loss_ax = plt.subplots(figsize=(7, 4))
        if self.points["loss"]:
            steps, values = zip(*self.points["loss"])
            loss_ax.plot(steps, values, color="tab:blue", label="training loss")
        loss_ax.set_xlabel("step")
        loss_ax.set_ylabel("training loss", color="tab:blue")
        success_ax = loss_ax.twinx()
        if self.points["success"]:
            steps = [s for s, _ in self.points["success"]]
            success_ax.plot(steps, [100 * r["success_rate"] for _, r in self.points["success"]], "o-",
                            color="tab:green", label="closed-loop success")
        success_ax.set_ylabel("closed-loop success (%)", color="tab:green")
        success_ax.set_ylim(-2, 102)
        fig.tight_layout()
        fig.savefig(png, dpi=100)
        plt.close(fig)


def keep_best(model_dir: Path, run: Path) -> Path:
    """Copies the checkpoint folder to RUN/best (written beside, then renamed)."""
    best, tmp = run / "best", run / "best.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(model_dir, tmp)
    if best.exists():
        shutil.rmtree(best)
    tmp.rename(best)
    return best
