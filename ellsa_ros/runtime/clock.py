"""Clocks and the fixed-rate scheduler.

Two clocks share one interface: `WallClock` (monotonic time, for robots and benchmarks) and
`SteppedClock` (time moves only when told: simulation and tests, fully deterministic).
`RateScheduler` keeps deadlines on an absolute grid (t0 + k * period) so no drift
accumulates; a late tick is counted as an overrun, and ticks missed entirely are skipped and
counted rather than fired in a burst.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    def now(self) -> float:
        """Seconds on this clock."""

    def sleep_until(self, t: float) -> None:
        """Returns once `now() >= t`."""


class WallClock:
    """Monotonic wall time in seconds."""

    def now(self) -> float:
        return time.monotonic()

    def sleep_until(self, t: float) -> None:
        while True:
            dt = t - time.monotonic()
            if dt <= 0:
                return
            time.sleep(dt)


class SteppedClock:
    """Time that moves only through `advance`/`sleep_until`. Thread-safe reads."""

    def __init__(self, t0: float = 0.0) -> None:
        self._t = float(t0)
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._t

    def advance(self, dt: float) -> float:
        if dt < 0:
            raise ValueError(f"a stepped clock cannot go backwards (dt={dt})")
        with self._lock:
            self._t += dt
            return self._t

    def sleep_until(self, t: float) -> None:
        """In stepped time, sleeping is jumping: the sleeper is the one who moves time."""
        with self._lock:
            if t > self._t:
                self._t = t


@dataclass
class Tick:
    index: int          # grid index: the deadline is t0 + index * period
    deadline: float
    now: float          # when the tick actually started
    late_s: float       # now - deadline (>= 0 on a wall clock)
    missed: int         # whole periods skipped before this tick


@dataclass
class RateScheduler:
    clock: Clock
    hz: float
    overrun_tolerance_s: float = 0.005  # a tick later than this counts as an overrun
    overruns: int = 0
    missed: int = 0
    ticks: int = 0
    late_s: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.hz > 0:
            raise ValueError(f"rate must be > 0 Hz, got {self.hz}")
        self.period_s = 1.0 / self.hz
        self._t0: float | None = None
        self._next = 0

    def start(self, t0: float | None = None) -> None:
        self._t0 = self.clock.now() if t0 is None else t0
        self._next = 0

    def wait(self) -> Tick:
        """Sleeps until the next deadline on the grid and returns it."""
        if self._t0 is None:
            self.start()
        deadline = self._t0 + self._next * self.period_s
        now = self.clock.now()
        missed = 0
        if now > deadline + self.period_s:
            # Fell behind by whole periods: skip to the current grid slot instead of bursting.
            missed = int((now - deadline) / self.period_s)
            self._next += missed
            deadline = self._t0 + self._next * self.period_s
        self.clock.sleep_until(deadline)
        now = self.clock.now()
        late = max(0.0, now - deadline)
        tick = Tick(self._next, deadline, now, late, missed)
        self._next += 1
        self.ticks += 1
        self.missed += missed
        if missed or late > self.overrun_tolerance_s:
            self.overruns += 1
        if len(self.late_s) < 1_000_000:
            self.late_s.append(late)
        return tick
