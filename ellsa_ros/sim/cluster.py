"""Ray for the episode-parallel commands (`ellsa eval`, `ellsa datagen`): a local Ray or a
cluster, and a pool of actors that keep their simulator between jobs.

`RayCluster(workers, address)`, a context manager: with no address it starts a local Ray of
`workers` CPUs for the length of the command (no dashboard, no usage statistics) and shuts it
down after, leaving no process behind; with an address it joins that cluster (`ray start
--head` on a workstation, a KubeRay head service, `ray://HOST:PORT` for Ray Client) and leaves
it running. An address that does not answer as a Ray cluster is refused within seconds with a
`ClusterError` naming it, before the command writes anything: Ray's own client retries a dead
address for minutes and then ends the process.

`ActorPool`: one actor per worker, each built once and holding one CPU; a job goes preferably
to an idle actor whose last job had the same key (the same task: no simulator rebuild).
Results come back as each job finishes. A job whose actor process dies is retried once on a
fresh actor and then reported with Ray's reason; an exception raised by a job is its result's
error, not a retry (it would fail again).
"""
from __future__ import annotations

import argparse
import os
import socket
import sys
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from typing import Any

ATTEMPTS = 2                    # a job whose worker dies runs once more on a fresh worker
PROBE_TIMEOUT_S = 5.0
POLL_S = 0.5
LOCAL_OBJECT_STORE_BYTES = 256 * 2**20   # results are small dicts; Ray's default takes 30% of RAM
# one BLAS / OpenMP / torch thread per worker: the workers are the parallelism, and on a
# small machine threads that spin fight each other and the simulator
WORKER_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
# the client preface of HTTP/2 and an empty SETTINGS frame: a gRPC server (Ray's GCS) answers
# with a SETTINGS frame of its own
_H2_HELLO = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


class ClusterError(RuntimeError):
    """Ray cannot be started, or the address given is not a Ray cluster; the message says which."""


def add_parallel_arguments(parser: argparse.ArgumentParser, what: str) -> None:
    """--workers and --ray: the same for `ellsa eval` and `ellsa datagen`."""
    parser.add_argument("--workers", type=int, default=None,
                        help=f"{what} run in parallel, one Ray worker (one CPU) each; default 1, or with --ray "
                             "every CPU of the cluster")
    parser.add_argument("--ray", metavar="ADDRESS", default=None,
                        help="run on this Ray cluster (HOST:PORT of `ray start --head`, or ray://HOST:PORT) "
                             "instead of a local Ray; --out must be on a file system every node shares")


def probe_address(address: str, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """Raises ClusterError unless HOST:PORT (or ray://HOST:PORT) accepts a connection and answers gRPC."""
    hostport = address.removeprefix("ray://")
    host, sep, port_text = hostport.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ClusterError(f"--ray {address!r}: expected HOST:PORT or ray://HOST:PORT (e.g. 127.0.0.1:6379)")
    try:
        conn = socket.create_connection((host.strip("[]"), int(port_text)), timeout=timeout_s)
    except OSError as e:
        raise ClusterError(f"no Ray cluster at {address}: {e.strerror or e}") from None
    with conn:
        conn.settimeout(timeout_s)
        try:
            conn.sendall(_H2_HELLO)
            reply = conn.recv(9)
        except OSError as e:
            raise ClusterError(f"{address} is not a Ray cluster: it did not answer ({e.strerror or e})") from None
    if len(reply) < 9 or reply[3] != 0x04:
        raise ClusterError(f"{address} is not a Ray cluster: it does not speak gRPC")


class RayCluster:
    """A local Ray (address None) or a joined cluster, for one `with` block."""

    def __init__(self, workers: int | None, address: str | None = None) -> None:
        if workers is not None and workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.address = address
        self.requested = workers
        self.workers = workers or 1
        self._env_set: list[str] = []

    def __enter__(self) -> RayCluster:
        self._set_env("RAY_USAGE_STATS_ENABLED", "0")
        if self.address is None:
            # Ray's single-node mode: every Ray process listens on 127.0.0.1 only (by default Ray
            # binds the machine's outward address so that other nodes could join). Token
            # authentication stays on (Ray's default; said here so that Ray does not warn).
            # Both are read when Ray is first imported.
            self._set_env("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
            self._set_env("RAY_AUTH_MODE", "token")
        elif self.address != "auto":
            # Token authentication towards a cluster is the user's to turn on (RAY_AUTH_MODE=token):
            # a driver that expects tokens cannot hear back from the workers of a cluster without
            # them, and its actors die at start.
            probe_address(self.address)
        import logging

        import ray

        try:
            if self.address is None:
                ray.init(address="local", num_cpus=self.workers, include_dashboard=False,
                         logging_level=logging.WARNING, object_store_memory=LOCAL_OBJECT_STORE_BYTES)
            else:
                ray.init(address=self.address, logging_level=logging.WARNING)
        except (ConnectionError, RuntimeError, ValueError) as e:
            where = f"the Ray cluster at {self.address}" if self.address else "a local Ray"
            hint = (" (a cluster with token authentication needs RAY_AUTH_MODE=token here, and its token in "
                    "RAY_AUTH_TOKEN or ~/.ray/auth_token)") if self.address else ""
            self.__exit__(None, None, None)
            raise ClusterError(f"cannot connect to {where}: {e}{hint}") from None
        if self.address is not None and self.requested is None:
            self.workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
        return self

    def __exit__(self, *exc) -> None:
        import ray

        ray.shutdown()
        for name in self._env_set:     # later child processes of this one get the environment it had
            os.environ.pop(name, None)

    def _set_env(self, name: str, value: str) -> None:
        if name not in os.environ:
            os.environ[name] = value
            self._env_set.append(name)


@dataclass
class _Slot:
    actor: Any
    key: Hashable = None
    busy: bool = False


@dataclass
class JobFailure:
    """Why a job has no result: its worker died (twice), or it raised."""
    reason: str
    died: bool


@dataclass
class ActorPool:
    """`worker_class(*args)` on `size` actors; `method(job)` per job. `fatal`: exception types
    that, raised by a job, end the whole run (re-raised in the driver). `poll`: called between
    waits (to drain progress reported by the workers)."""
    worker_class: type
    args: tuple
    size: int
    method: str = "run"
    fatal: tuple[type[BaseException], ...] = ()
    poll: Callable[[], None] | None = None
    _remote: Any = None
    _slots: list[_Slot] = field(default_factory=list)
    _queue: list[tuple[Any, Hashable]] = field(default_factory=list)
    _running: dict = field(default_factory=dict)       # ObjectRef -> (slot, job, key)
    _attempts: dict = field(default_factory=dict)      # id(job) -> runs started

    def __post_init__(self) -> None:
        import ray

        self._remote = ray.remote(num_cpus=1, max_restarts=0, runtime_env={"env_vars": dict(WORKER_ENV)})(
            self.worker_class)

    def submit(self, job: Any, key: Hashable = None) -> None:
        self._queue.append((job, key))

    def results(self) -> Iterator[tuple[Any, Any | JobFailure]]:
        """Yields (job, result or JobFailure) as jobs finish, jobs submitted meanwhile included."""
        import ray

        while self._queue or self._running:
            self._dispatch()
            done, _ = ray.wait(list(self._running), num_returns=1, timeout=POLL_S)
            if self.poll is not None:
                self.poll()
            for ref in done:
                slot, job, key = self._running.pop(ref)
                slot.busy = False
                outcome = self._outcome(ref, slot, job, key)
                if outcome is not None:
                    yield job, outcome

    def close(self) -> None:
        import ray

        for slot in self._slots:
            ray.kill(slot.actor)
        self._slots.clear()

    def _dispatch(self) -> None:
        while self._queue:
            slot = next((s for s in self._slots if not s.busy), None)
            if slot is None:
                if len(self._slots) >= self.size:
                    return
                slot = _Slot(self._remote.remote(*self.args))
                self._slots.append(slot)
            k = next((i for i, (_, key) in enumerate(self._queue) if key == slot.key), 0)
            job, key = self._queue.pop(k)
            slot.busy, slot.key = True, key
            self._attempts[id(job)] = self._attempts.get(id(job), 0) + 1
            self._running[getattr(slot.actor, self.method).remote(job)] = (slot, job, key)

    def _outcome(self, ref, slot: _Slot, job: Any, key: Hashable) -> Any | JobFailure | None:
        import ray
        from ray.exceptions import RayActorError, RayTaskError, WorkerCrashedError

        try:
            return ray.get(ref)
        except RayTaskError as e:
            cause = e.cause if isinstance(e.cause, BaseException) else None
            if isinstance(cause, self.fatal):
                raise cause from None
            return JobFailure(f"{type(cause).__name__}: {cause}" if cause is not None else str(e), died=False)
        except (RayActorError, WorkerCrashedError, ray.exceptions.OutOfMemoryError) as e:
            self._slots.remove(slot)        # a fresh actor takes its place at the next dispatch
            if self._attempts[id(job)] < ATTEMPTS:
                self._queue.insert(0, (job, key))
                print(f"\na worker died; running its job again: {_death_reason(e)}", file=sys.stderr)
                return None
            return JobFailure(f"the worker process died while running it, {ATTEMPTS} times: {_death_reason(e)}",
                              died=True)


def _death_reason(error: BaseException) -> str:
    """Ray's long message cut to what happened: the worker's exit detail and its pid."""
    text = " ".join(str(error).split())
    detail = text.partition("Worker exit detail: ")[2].split(". ")[0]
    pid = text.partition("pid: ")[2].split(" ")[0]
    short = detail or text.split(". ")[0]
    return f"{short} (pid {pid})" if pid else short
