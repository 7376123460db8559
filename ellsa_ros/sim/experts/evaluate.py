"""Measuring the scripted experts: success over a task's init states, resumable.

Results go to one JSON file, rewritten after every episode, so an interrupted run picks up
where it stopped. An episode that raises is recorded as a failure with its error.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from ellsa_ros.sim.experts import ScriptedExpert


@dataclass
class ExpertEpisode:
    """One episode: steps are control steps (20 Hz) after the settle steps."""
    task_id: int
    init_state: int
    success: bool
    steps: int
    retries: int = 0
    error: str | None = None


def run_episode(env, expert: ScriptedExpert, task_id: int, init_state: int) -> ExpertEpisode:
    """Reset `env` to (task_id, init_state) and let `expert` act until success or the step limit."""
    obs, info = env.reset(options={"task": task_id, "init_state": init_state})
    expert.reset()
    terminated = truncated = False
    while not (terminated or truncated):
        obs, _reward, terminated, truncated, info = env.step(expert.act(obs, info))
    return ExpertEpisode(task_id, init_state, bool(terminated), int(info["step"]), int(getattr(expert, "retries", 0)))


def load_results(path: Path, suite: str) -> list[ExpertEpisode]:
    """Episodes already in `path` (none if it does not exist); the file must be of `suite`."""
    if not path.exists():
        return []
    data = json.loads(path.read_text())
    if data.get("suite") != suite:
        raise ValueError(f"{path} holds results of suite {data.get('suite')!r}, not {suite!r}: use another --out")
    return [ExpertEpisode(**episode) for episode in data["episodes"]]


def summarize(episodes: list[ExpertEpisode]) -> dict[str, dict]:
    """{task_id: {"episodes", "successes", "success_rate"}} with task ids as strings (JSON keys)."""
    table: dict[str, dict] = {}
    for episode in sorted(episodes, key=lambda e: (e.task_id, e.init_state)):
        row = table.setdefault(str(episode.task_id), {"episodes": 0, "successes": 0})
        row["episodes"] += 1
        row["successes"] += int(episode.success)
    for row in table.values():
        row["success_rate"] = round(row["successes"] / row["episodes"], 4)
    return table


def save_results(path: Path, suite: str, episodes: list[ExpertEpisode]) -> None:
    data = {"suite": suite, "summary": summarize(episodes), "episodes": [asdict(e) for e in episodes]}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)   # a crash mid-write never leaves a truncated results file


def evaluate(suite: str, tasks: list[int], episodes: int, out: Path, make_env: Callable, expert: ScriptedExpert,
             on_episode: Callable[[ExpertEpisode], None] = lambda e: None) -> list[ExpertEpisode]:
    """Run init states 0..episodes-1 of each task, skipping those already in `out`."""
    results = load_results(out, suite)
    done = {(e.task_id, e.init_state) for e in results}
    env = None
    try:
        for task_id in tasks:
            for init_state in range(episodes):
                if (task_id, init_state) in done:
                    continue
                if env is None:
                    env = make_env(task_id)
                try:
                    episode = run_episode(env, expert, task_id, init_state)
                except Exception as error:  # noqa: BLE001 - one broken episode must not end the run
                    episode = ExpertEpisode(task_id, init_state, False, 0, error=f"{type(error).__name__}: {error}")
                results.append(episode)
                save_results(out, suite, results)
                on_episode(episode)
    finally:
        if env is not None:
            env.close()
    return results
