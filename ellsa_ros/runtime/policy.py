"""The Policy protocol, its Decision, and the workers that run a policy off the control loop.

A policy is `reset()` + `step(block) -> Decision` (as openpi's BasePolicy). The engine hands
blocks to a worker and polls it on each control tick; the control loop never waits for
inference. Two workers, one contract:

- `ThreadedWorker` runs the policy on a thread (wall clock: robots, benchmarks);
- `SteppedWorker` runs it at once but releases the Decision only when the stepped clock has
  reached `submit time + latency`, where latency is the policy's declared `latency_s`
  (or the worker's default). Simulation and tests are thereby deterministic while still
  paying for inference time in simulated time.
"""
from __future__ import annotations

import threading
import traceback
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from .blocks import Block


@dataclass
class Decision:
    """What the policy decided for one block.

    actions: (chunk, dof) float32 actions at the control rate, starting at the block's end
             time (the observation time); None is an explicit no-op.
    say:     text to speak now; "" is silence.
    reject:  a reason, if the instruction heard is defective; no action of it will run, and
             the rejection is spoken.
    cancel:  stop the current action (e.g. the user said "stop" and the model agrees).
    done:    the task is finished.
    heard:   the transcript of the block's user speech, when the policy (or a listening
             wrapper) transcribed it; the engine publishes it as an event.
    refused: why utterances of the block were heard but not transcribed into text the policy
             may act on (one reason each); the engine publishes each as an event.
    """
    actions: np.ndarray | None = None
    say: str = ""
    reject: str | None = None
    cancel: bool = False
    done: bool = False
    heard: str = ""
    refused: tuple[str, ...] = ()
    info: dict = field(default_factory=dict)

    @property
    def control(self) -> str:
        if self.reject is not None:
            return "reject"
        if self.cancel:
            return "cancel"
        if self.done:
            return "done"
        return ""


@runtime_checkable
class Policy(Protocol):
    """Called by a worker thread; never by the control loop itself."""

    def reset(self) -> None:
        """Called before the first block of an episode: forget all history (KV cache, text)."""

    def step(self, block: Block) -> Decision:
        """Called once per block, in order; returns what to do next."""


@dataclass
class Answer:
    block: Block
    decision: Decision | None
    error: str | None
    submitted_at: float
    ready_at: float


class ThreadedWorker:
    """Runs `policy.step` on its own thread; at most one block waits (latest wins, merged)."""

    def __init__(self, policy: Policy, name: str = "policy") -> None:
        self.policy = policy
        self._cv = threading.Condition()
        self._pending: tuple[Block, float] | None = None
        self._answers: list[Answer] = []
        self._running = False
        self._closed = False
        self._clock_now = None
        self._thread = threading.Thread(target=self._loop, name=f"ellsa-{name}", daemon=True)
        self._thread.start()

    def bind_clock(self, now) -> None:
        self._clock_now = now

    @property
    def busy(self) -> bool:
        with self._cv:
            return self._running or self._pending is not None

    def submit(self, block: Block, now: float) -> bool:
        """Queues a block; returns False if an unstarted block was merged into it."""
        with self._cv:
            merged = False
            if self._pending is not None:
                block.merge_earlier(self._pending[0])
                merged = True
            self._pending = (block, now)
            self._cv.notify()
            return not merged

    def poll(self, now: float) -> list[Answer]:
        with self._cv:
            out, self._answers = self._answers, []
            return out

    def reset(self) -> None:
        with self._cv:
            self._pending = None
            self._answers = []
        self.policy.reset()

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify()
        self._thread.join(timeout=5.0)

    def _loop(self) -> None:
        while True:
            with self._cv:
                while self._pending is None and not self._closed:
                    self._cv.wait()
                if self._closed:
                    return
                block, submitted = self._pending
                self._pending = None
                self._running = True
            decision, error = _run(self.policy, block)
            with self._cv:
                ready = self._clock_now() if self._clock_now else submitted
                self._answers.append(Answer(block, decision, error, submitted, ready))
                self._running = False


class SteppedWorker:
    """Deterministic worker for a stepped clock: the answer is released at submit + latency."""

    def __init__(self, policy: Policy, latency_s: float = 0.0) -> None:
        self.policy = policy
        self.default_latency_s = latency_s
        self._inflight: Answer | None = None
        self._pending: tuple[Block, float] | None = None

    @property
    def busy(self) -> bool:
        return self._inflight is not None or self._pending is not None

    def submit(self, block: Block, now: float) -> bool:
        merged = False
        if self._pending is not None:
            block.merge_earlier(self._pending[0])
            merged = True
        self._pending = (block, now)
        if self._inflight is None:
            self._start(now)
        return not merged

    def poll(self, now: float) -> list[Answer]:
        out: list[Answer] = []
        # A loop: with zero latency a queued block starts and finishes within one poll.
        while self._inflight is not None and now + 1e-9 >= self._inflight.ready_at:
            out.append(self._inflight)
            self._inflight = None
            if self._pending is not None:
                self._start(max(now, out[-1].ready_at))
        return out

    def reset(self) -> None:
        self._inflight = None
        self._pending = None
        self.policy.reset()

    def close(self) -> None:
        pass

    def _start(self, now: float) -> None:
        block, submitted = self._pending
        self._pending = None
        decision, error = _run(self.policy, block)
        latency = float(getattr(self.policy, "latency_s", self.default_latency_s))
        self._inflight = Answer(block, decision, error, submitted, max(now, submitted) + latency)


def _run(policy: Policy, block: Block) -> tuple[Decision | None, str | None]:
    try:
        d = policy.step(block)
        if not isinstance(d, Decision):
            return None, f"policy returned {type(d).__name__}, not Decision"
        return d, None
    except Exception as e:  # noqa: BLE001 - reported as an event; the robot holds
        return None, f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=4)}"
