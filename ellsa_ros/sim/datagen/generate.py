"""Making a dataset: shards of demonstrations, in parallel workers, resumable, deterministic.

Every task gets `episodes_per_task` demonstration slots, grouped into shards of `shard_size`.
A slot is tried up to `attempts` times (each attempt its own random stream); attempts that fail
the task's success check are discarded and counted. The first shard of every task runs first:
a task whose expert fails more than `max_failure_rate` of its attempts there is reported with
that rate and skipped (its shard is kept with no episodes, so a resumed run skips it too).
A shard file that exists is complete and is not redone; the random stream of an attempt
depends only on (seed, suite, task, slot, attempt), so results do not depend on the worker
count or on interruptions.

Shards run on Ray (`ellsa_ros.sim.cluster`): one actor per worker keeps its simulator and
voices between shards, on a local Ray of `workers` CPUs or on the cluster at `ray_address`;
with one worker and no cluster they run in this process. A shard whose worker dies is retried
once on a fresh worker, then listed under the manifest's "failed" with the reason and left
unwritten, so that the next run makes it.
"""
from __future__ import annotations

import sys
import zlib
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

from ellsa_ros.sim.cluster import ActorPool, ClusterError, JobFailure, RayCluster
from ellsa_ros.sim.datagen.patterns import PatternShares
from ellsa_ros.sim.datagen.rollout import RolloutConfig, run_episode
from ellsa_ros.sim.datagen.storage import (
    read_manifest,
    read_shard,
    shard_path,
    software_versions,
    write_manifest,
    write_shard,
)

# settings that shape the data: a resumed run must use the same ones
IDENTITY = ("seed", "shard_size", "attempts", "max_failure_rate", "image_size", "render_quality", "rollout", "shares")


@dataclass(frozen=True)
class DatagenConfig:
    out: Path
    suites: tuple[str, ...] = ("libero_spatial", "libero_object")
    tasks: str = "all"                 # per suite: "all", "0-3", "0,2"
    episodes_per_task: int = 100
    seed: int = 0
    workers: int | None = 1            # None: every CPU of the cluster at `ray_address`
    ray_address: str | None = None     # a Ray cluster (HOST:PORT); None: a local Ray when workers > 1
    shard_size: int = 10
    attempts: int = 3                  # tries per demonstration slot
    max_failure_rate: float = 0.5      # in a task's first shard; above it the task is skipped
    image_size: int = 128
    render_quality: str = "tuned"
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    shares: PatternShares = field(default_factory=PatternShares)

    def __post_init__(self) -> None:
        from ellsa_ros.sim.experts import PICK_PLACE_SUITES
        from ellsa_ros.sim.suites import suite_names

        if not self.suites:
            raise ValueError("name at least one suite")
        for suite in self.suites:
            if suite not in suite_names():
                raise ValueError(f"unknown LIBERO suite {suite!r}; valid suites: {', '.join(suite_names())}")
            if suite not in PICK_PLACE_SUITES:
                raise ValueError(f"no scripted expert for suite {suite!r}; experts exist for: "
                                 f"{', '.join(PICK_PLACE_SUITES)}")
        for name in ("episodes_per_task", "workers", "shard_size", "attempts"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.max_failure_rate < 1.0:
            raise ValueError(f"max_failure_rate must be in [0, 1), got {self.max_failure_rate}")
        if not 16 <= self.image_size <= 1024:
            raise ValueError(f"image_size must be in 16..1024 px, got {self.image_size}")
        from ellsa_ros.sim.env import LiberoEnv
        from ellsa_ros.sim.frame_rate import frame_interval
        frame_interval(self.rollout.frame_hz, LiberoEnv.control_hz, "frame_hz")   # off the control ticks: named now

    def identity(self) -> dict:
        d = {k: _plain(getattr(self, k)) for k in IDENTITY}
        d["shares"] = dict(self.shares.shares)
        return d


def _plain(x):
    if hasattr(x, "__dataclass_fields__"):
        return {k: _plain(v) for k, v in asdict(x).items()}
    if isinstance(x, (tuple, list)):
        return [_plain(v) for v in x]
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    return x


@dataclass(frozen=True)
class ShardJob:
    suite: str
    task_id: int
    index: int
    slots: tuple[int, int]            # [first, end)
    probe: bool                       # the task's first shard: decides whether the task is skipped


# --- one worker ---------------------------------------------------------------------------

_ENV = None
_VOICES = None


def _env_for(config: DatagenConfig, suite: str, task_id: int):
    global _ENV
    from ellsa_ros.sim.env import LiberoEnv, LiberoEnvConfig

    if _ENV is not None and _ENV.task.suite == suite and _ENV.task.task_id == task_id:
        return _ENV
    if _ENV is not None:
        _ENV.close()
    # robosuite places a scene's fixed furniture with the global numpy generator when the
    # simulator is built (init states set only the movable objects): seed it, or every process
    # renders a slightly different room
    np.random.seed(zlib.crc32(f"{config.seed}/{suite}/{task_id}".encode()))
    _ENV = LiberoEnv(LiberoEnvConfig(suite=suite, task_id=task_id, image_size=config.image_size,
                                     render_quality=config.render_quality))
    return _ENV


def make_shard(config: DatagenConfig, job: ShardJob, tick: Callable[[bool], None] | None = None) -> dict:
    """Rolls out the shard's slots and writes the shard; returns its header (stats)."""
    global _VOICES
    from ellsa_ros.sim.datagen.voices import VoiceBox
    from ellsa_ros.sim.experts import expert_for

    env = _env_for(config, job.suite, job.task_id)
    _VOICES = _VOICES or VoiceBox()
    expert = expert_for(job.suite)
    episodes, failures, attempts, retries = [], {}, 0, 0
    skip_reason = ""
    for slot in range(*job.slots):
        for attempt in range(config.attempts):
            attempts += 1
            result = run_episode(env, expert, _VOICES, config.rollout, config.shares, config.seed, slot, attempt)
            if tick is not None:
                tick(result.episode is not None)
            if result.episode is not None:
                episodes.append(result.episode)
                retries += result.episode.retries
                break
            failures[result.failure] = failures.get(result.failure, 0) + 1
        failed = attempts - len(episodes)
        if job.probe and failed >= 5 and failed / attempts > config.max_failure_rate:
            break        # hopeless: no need to finish the probe
    failed = attempts - len(episodes)
    if job.probe and failed / attempts > config.max_failure_rate:
        skip_reason = (f"the scripted expert failed {failed} of {attempts} attempts "
                       f"({100.0 * failed / attempts:.0f}%)")
        episodes = []
    header = {"suite": job.suite, "task_id": job.task_id, "instruction": env.task.language, "shard": job.index,
              "slots": list(job.slots), "attempts": attempts, "kept": len(episodes), "discarded": failed,
              "failures": failures, "retries": retries, "skipped": skip_reason}
    header["bytes"] = write_shard(shard_path(config.out, job.suite, job.task_id, job.index), header, episodes)
    return header


# --- the whole run ------------------------------------------------------------------------

def plan_jobs(config: DatagenConfig) -> list[ShardJob]:
    from ellsa_ros.sim.suites import parse_task_ids

    jobs = []
    for suite in config.suites:
        for task_id in parse_task_ids(config.tasks, suite):
            n = config.episodes_per_task
            for index, first in enumerate(range(0, n, config.shard_size)):
                jobs.append(ShardJob(suite, task_id, index, (first, min(n, first + config.shard_size)), index == 0))
    return jobs


def _existing(config: DatagenConfig, job: ShardJob, manifest_shards: dict) -> dict | None:
    """The header of a finished shard for this job, or None if it must be (re)made."""
    path = shard_path(config.out, job.suite, job.task_id, job.index)
    tmp = path.with_name(path.name + ".tmp")
    if tmp.exists():
        tmp.unlink()                     # left by an interrupted run
    if not path.is_file():
        return None
    rel = str(path.relative_to(config.out))
    header = manifest_shards.get(rel)
    if header is None:                   # written, but the run stopped before the manifest was
        header = read_shard(path, episodes=False)
        header.pop("episodes")
        header.pop("format")
    return header if list(header["slots"]) == list(job.slots) else None


def generate(config: DatagenConfig, progress: bool = True, stop_after: int | None = None) -> dict:
    """Makes (or completes) the dataset in `config.out`; returns the manifest.
    `stop_after`: end after that many new shards (an interruption, for resume checks).
    Raises ClusterError, before anything is written, when Ray cannot be started or joined."""
    with _Runner(config) as runner:
        return _complete(config, runner, progress, stop_after)


def _complete(config: DatagenConfig, runner: _Runner, progress: bool, stop_after: int | None) -> dict:
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        manifest = read_manifest(out)
    except FileNotFoundError:
        manifest = {}
    if manifest:   # made before frame rates were chosen: a frame every control step
        manifest["config"]["rollout"].setdefault("frame_hz", 20.0)
    if manifest and manifest["config"] != _plain(config.identity()):
        changed = sorted(k for k in config.identity() if manifest["config"].get(k) != _plain(config.identity()[k]))
        raise ValueError(f"{out} holds data made with other settings ({', '.join(changed)} differ); "
                         "use another --out, or the same settings to resume")
    shards: dict = dict(manifest.get("shards", {}))
    manifest = {"config": _plain(config.identity()), "suites": list(config.suites),
                "episodes_per_task": max(config.episodes_per_task, manifest.get("episodes_per_task", 0)),
                "frame_hz": config.rollout.frame_hz, "versions": software_versions(), "shards": shards}
    jobs = plan_jobs(config)
    todo, done_headers = [], {}
    for job in jobs:
        header = _existing(config, job, shards)
        if header is None:
            todo.append(job)
        else:
            done_headers[(job.suite, job.task_id, job.index)] = header
            shards[str(shard_path(out, job.suite, job.task_id, job.index).relative_to(out))] = header
    write_manifest(out, manifest)
    skipped = {(h["suite"], h["task_id"]) for h in done_headers.values() if h["skipped"]}
    probed = {(j.suite, j.task_id) for j in jobs if j.probe} - {(j.suite, j.task_id) for j in todo if j.probe}
    # a task's other shards wait for its first shard, which decides whether the task is skipped
    waiting: dict[tuple[str, int], list[ShardJob]] = {}
    ready = [j for j in todo if j.probe or (j.suite, j.task_id) in probed]
    for j in todo:
        if not j.probe and (j.suite, j.task_id) not in probed:
            waiting.setdefault((j.suite, j.task_id), []).append(j)
    ready = [j for j in ready if (j.suite, j.task_id) not in skipped]
    made = 0
    bar = _progress_bar(sum(j.slots[1] - j.slots[0] for j in todo), progress)
    manifest["failed"] = {}
    for job in ready:
        runner.submit(job)
    for job, header in runner.results(bar):
        made += 1
        rel = str(shard_path(out, job.suite, job.task_id, job.index).relative_to(out))
        task = (job.suite, job.task_id)
        if isinstance(header, JobFailure):
            manifest["failed"][rel] = header.reason
            print(f"\nshard {rel} not made: {header.reason}", file=sys.stderr)
            for later in waiting.pop(task, []) if job.probe else ():
                manifest["failed"][str(shard_path(out, *task, later.index).relative_to(out))] = \
                    f"not started: the task's first shard ({rel}) failed"
            write_manifest(out, manifest)
            continue
        shards[rel] = header
        write_manifest(out, manifest)
        if header["skipped"]:
            skipped.add(task)
            print(f"\nskipping {job.suite} task {job.task_id}: {header['skipped']}", file=sys.stderr)
        elif job.probe:
            for later in waiting.pop(task, []):
                runner.submit(later)
        if stop_after is not None and made >= stop_after:
            break
    bar.close()
    manifest["tasks"] = task_summary(shards)
    write_manifest(out, manifest)
    return manifest


def task_summary(shards: dict) -> dict:
    tasks: dict[str, dict] = {}
    for header in shards.values():
        t = tasks.setdefault(f"{header['suite']}/{header['task_id']}",
                             {"instruction": header["instruction"], "kept": 0, "discarded": 0, "attempts": 0,
                              "retries": 0, "skipped": ""})
        for k in ("kept", "discarded", "attempts", "retries"):
            t[k] += header[k]
        t["skipped"] = t["skipped"] or header["skipped"]
    for t in tasks.values():
        t["failure_rate"] = round(t["discarded"] / t["attempts"], 3) if t["attempts"] else 0.0
    return tasks


def _progress_bar(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="demo", file=sys.stderr, disable=not enabled, dynamic_ncols=True)


class ShardWorker:
    """One Ray actor of a run: the simulator (kept while the task stays the same) and the
    voices live in this process between shards; each attempt is put on `ticks` (kept or not)
    as it finishes. `sys_path`: the driver's import path, appended here."""

    def __init__(self, config: DatagenConfig, ticks, sys_path: tuple[str, ...] = ()) -> None:
        sys.path.extend(p for p in sys_path if p not in sys.path)
        self.config, self.ticks = config, ticks
        self.error = ""
        if not Path(config.out).is_dir():
            import socket
            self.error = (f"the worker on {socket.gethostname()} cannot see {config.out}: on a cluster, "
                          "--out must be on a file system every node shares")

    def make(self, job: ShardJob) -> dict:
        if self.error:
            raise ClusterError(self.error)
        return make_shard(self.config, job, self.ticks.put_nowait)


class _Runner:
    """Runs shard jobs in this process (one worker, no cluster) or on `ShardWorker` actors;
    counts each attempt on the progress bar as it finishes. Entering starts or joins Ray."""

    def __init__(self, config: DatagenConfig) -> None:
        self.config = config
        self.bar = None
        self.kept = self.discarded = 0
        self.queued: list[ShardJob] = []
        self.pool: ActorPool | None = None
        self.ticks = None
        self._stack = ExitStack()

    def __enter__(self) -> _Runner:
        config = self.config
        if config.ray_address is None and (config.workers or 1) == 1:
            return self
        with ExitStack() as stack:
            cluster = stack.enter_context(RayCluster(config.workers, config.ray_address))
            from ray.util.queue import Queue

            self.ticks = Queue(actor_options={"num_cpus": 0})
            # Ray workers do not run in this working directory
            portable = replace(config, out=Path(config.out).resolve())
            self.pool = ActorPool(ShardWorker, (portable, self.ticks, tuple(sys.path)), cluster.workers,
                                  method="make", fatal=(ClusterError,), poll=self._drain)
            stack.callback(self.pool.close)
            self._stack = stack.pop_all()
        return self

    def __exit__(self, *exc) -> None:
        self._stack.__exit__(*exc)

    def _tick(self, ok: bool) -> None:
        self.kept += ok
        self.discarded += not ok
        self.bar.set_postfix(kept=self.kept, discarded=self.discarded, refresh=False)
        if ok:
            self.bar.update(1)

    def _drain(self) -> None:
        n = self.ticks.qsize()
        for ok in self.ticks.get_nowait_batch(n) if n else ():
            self._tick(ok)

    def submit(self, job: ShardJob) -> None:
        if self.pool is None:
            self.queued.append(job)
        else:
            self.pool.submit(job, key=(job.suite, job.task_id))

    def results(self, bar):
        """Yields (job, header or JobFailure) as shards finish, shards submitted meanwhile included."""
        self.bar = bar
        while self.queued:
            job = self.queued.pop(0)
            header = make_shard(self.config, job, self._tick)
            self._catch_up(job, header)
            yield job, header
        for job, header in self.pool.results() if self.pool is not None else ():
            self._drain()
            if not isinstance(header, JobFailure):
                self._catch_up(job, header)
            yield job, header

    def _catch_up(self, job: ShardJob, header: dict) -> None:
        # slots that produced no episode still count towards the bar's total
        self.bar.update(max(0, (job.slots[1] - job.slots[0]) - header["kept"]))
