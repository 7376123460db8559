"""Action chunks and the queue that streams them at the control rate.

The policy answers a block with a chunk of actions that starts at the block's end (the
observation time). By the time the answer arrives, inference latency has already used up
some of it. What `ActionQueue.add` does with a late chunk is `QueueConfig.late`: `shift`
(the default) starts it on arrival and runs all of it, so the arm lags its observation by the
latency but moves as the policy planned; `skip` drops the actions whose time has passed, and
with chunks one block long the arm then stands still that long every block (measured: the
embedded default, task 0 init states 0-19, at 0.1 s latency: 0 of 20 with `skip`, 2-4 of 20
over two runs with `shift`, 4 of 20 at no latency). It keeps the first `committed` actions of the current plan
untouched (they may already be on their way to the controller: Real-Time Chunking's frozen
prefix), and either replaces the rest or blends the overlap with weights (as LeRobot's chunk
aggregation). `tick` emits one command per control period; an empty plan (underrun) holds.
Every command passes the safety limits: non-finite chunks are refused whole, values are
clamped per dimension and rate-limited per tick.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np


@dataclass
class ActionChunk:
    """`actions[i]` is meant for time `t_start + i / hz` (engine clock seconds)."""
    actions: np.ndarray   # (n, dof) float32
    t_start: float
    hz: float
    chunk_id: int = 0


@dataclass
class ActionLimits:
    """Per-dimension safety limits.

    low/high:  clamp range of each dimension.
    max_step:  the most a dimension may change between two consecutive commands (inf: free).
    hold_last: on hold, dimensions marked True repeat their last command (grippers; every
               joint of a position-controlled arm); the others hold at 0 (deltas, velocities).
    """
    low: np.ndarray
    high: np.ndarray
    max_step: np.ndarray
    hold_last: np.ndarray

    @staticmethod
    def ee_delta(dof: int = 7, max_step: float = 0.5) -> ActionLimits:
        """LIBERO-style end-effector deltas in [-1, 1] with a gripper as the last dimension."""
        step = np.full(dof, max_step, np.float32)
        step[-1] = np.inf
        hold = np.zeros(dof, bool)
        hold[-1] = True
        return ActionLimits(np.full(dof, -1.0, np.float32), np.full(dof, 1.0, np.float32), step, hold)

    @staticmethod
    def joint_positions(low, high, max_step) -> ActionLimits:
        low = np.asarray(low, np.float32)
        return ActionLimits(low, np.asarray(high, np.float32),
                            np.broadcast_to(np.asarray(max_step, np.float32), low.shape).copy(),
                            np.ones(low.shape, bool))

    def __post_init__(self) -> None:
        shapes = {np.shape(self.low), np.shape(self.high), np.shape(self.max_step), np.shape(self.hold_last)}
        if len(shapes) != 1:
            raise ValueError(f"ActionLimits: low/high/max_step/hold_last shapes differ: {shapes}")
        if np.any(np.asarray(self.low) > np.asarray(self.high)):
            raise ValueError("ActionLimits: low > high in some dimension")

    @property
    def dof(self) -> int:
        return int(np.shape(self.low)[0])


@dataclass
class Command:
    """What the control loop sends this tick. `hold` means: no new motion (see ActionLimits)."""
    t: float
    action: np.ndarray | None   # (dof,) float32; None when holding and nothing was ever sent
    hold: bool
    chunk_id: int | None = None
    clamped: bool = False


@dataclass
class QueueConfig:
    hz: float = 20.0
    mode: Literal["replace", "blend"] = "blend"
    committed: int = 1        # first actions of the current plan that a new chunk never changes
    blend_ramp: int = 5       # overlap length over which the new chunk's weight ramps 0 -> 1
    late: Literal["shift", "skip"] = "shift"   # a chunk that arrives after its start: run from now, or drop the past

    def __post_init__(self) -> None:
        if not self.hz > 0:
            raise ValueError(f"control_hz must be > 0, got {self.hz}")
        if self.mode not in ("replace", "blend"):
            raise ValueError(f"action mode must be 'replace' or 'blend', got {self.mode!r}")
        if self.late not in ("shift", "skip"):
            raise ValueError(f"late must be 'shift' or 'skip', got {self.late!r}")
        if self.committed < 0 or self.blend_ramp < 1:
            raise ValueError("committed must be >= 0 and blend_ramp >= 1")


@dataclass
class AddResult:
    accepted: bool
    skipped: int = 0            # actions already past when the chunk arrived (late: skip)
    kept_committed: int = 0     # actions of the previous plan kept unchanged
    blended: int = 0
    reason: str = ""
    shifted: int = 0            # control periods the chunk was moved later (late: shift)


@dataclass
class _Slot:
    action: np.ndarray
    chunk_id: int


@dataclass
class ActionQueue:
    """The plan: control-grid tick index -> action. Not thread-safe: the engine locks it."""
    limits: ActionLimits
    config: QueueConfig = field(default_factory=QueueConfig)

    def __post_init__(self) -> None:
        self._plan: dict[int, _Slot] = {}
        self._last: np.ndarray | None = None
        self._last_tick: int | None = None
        self.active_chunk: int | None = None

    # Tick k of the grid is at time k / hz: chunks are placed on the same grid as the ticks.
    def _tick_of(self, t: float) -> int:
        return int(np.floor(t * self.config.hz + 1e-6))

    def add(self, chunk: ActionChunk, now: float) -> AddResult:
        a = np.asarray(chunk.actions, dtype=np.float32)
        if a.ndim != 2 or a.shape[1] != self.limits.dof:
            return AddResult(False, reason=f"chunk shape {a.shape}, expected (n, {self.limits.dof})")
        if not np.all(np.isfinite(a)):
            return AddResult(False, reason="chunk contains NaN or inf")
        if abs(chunk.hz - self.config.hz) > 1e-6:
            return AddResult(False, reason=f"chunk at {chunk.hz} Hz, queue at {self.config.hz} Hz")
        now_tick = self._tick_of(now)
        first = int(round(chunk.t_start * self.config.hz))
        shifted = 0
        if self.config.late == "shift" and first < now_tick:
            first, shifted = now_tick, now_tick - first
        frozen_until = now_tick + self.config.committed - 1   # ticks <= this keep the old plan
        skipped = kept = blended = 0
        new_plan = {k: s for k, s in self._plan.items() if k <= frozen_until}
        overlap = 0
        for i, act in enumerate(a):
            k = first + i
            if k < now_tick:   # the current tick's action still runs: add() is called within the tick
                skipped += 1
                continue
            if k <= frozen_until and k in self._plan:
                kept += 1
                continue
            old = self._plan.get(k)
            if self.config.mode == "blend" and old is not None:
                overlap += 1
                w = min(1.0, overlap / self.config.blend_ramp)
                act = (1.0 - w) * old.action + w * act
                blended += 1
            new_plan[k] = _Slot(act.astype(np.float32), chunk.chunk_id)
        if skipped == len(a):
            return AddResult(False, skipped=skipped, reason="every action was already in the past")
        self._plan = new_plan
        return AddResult(True, skipped, kept, blended, shifted=shifted)

    def tick(self, now: float) -> Command:
        """Pops the action for this tick; holds when there is none."""
        k = self._tick_of(now)
        for old in [j for j in self._plan if j < k]:
            del self._plan[old]
        slot = self._plan.pop(k, None)
        self._last_tick = k
        if slot is None:
            self.active_chunk = None
            return self.hold(now)
        self.active_chunk = slot.chunk_id
        act, clamped = self._limit(slot.action)
        self._last = act
        return Command(now, act, hold=False, chunk_id=slot.chunk_id, clamped=clamped)

    def seed(self, action: np.ndarray) -> None:
        """Before anything was commanded: where the arm is (e.g. its measured joint positions).
        A hold keeps it, and the first planned action is rate-limited from it."""
        if self._last is None:
            self._last = np.clip(np.asarray(action, np.float32), self.limits.low, self.limits.high)

    def hold(self, now: float) -> Command:
        if self._last is None:
            return Command(now, None, hold=True)
        held = np.where(self.limits.hold_last, self._last, 0.0).astype(np.float32)
        held = np.clip(held, self.limits.low, self.limits.high)
        self._last = held
        return Command(now, held, hold=True)

    def clear(self) -> list[int]:
        """Drops the whole plan (halt). Returns the ids of the chunks that were cancelled."""
        ids = sorted({s.chunk_id for s in self._plan.values()})
        self._plan.clear()
        self.active_chunk = None
        return ids

    def delay(self, ticks: int) -> None:
        """Moves the whole plan `ticks` control periods later: after a hold is released, the arm
        goes on from the action it stopped at."""
        if ticks > 0:
            self._plan = {k + ticks: s for k, s in self._plan.items()}

    def upcoming(self, now: float) -> tuple[float, np.ndarray]:
        """The plan from this tick on, as the arm would receive it: (time of the first action,
        (n, dof) actions after clamping and rate limiting). For publishing whole chunks to
        controllers that interpolate; `tick` stays the one place that consumes the plan."""
        k0 = self._tick_of(now)
        keys = sorted(k for k in self._plan if k >= k0)
        out = np.zeros((len(keys), self.limits.dof), np.float32)
        last = self._last
        for i, k in enumerate(keys):
            act = np.clip(self._plan[k].action, self.limits.low, self.limits.high)
            ref = last if last is not None else np.zeros(self.limits.dof, np.float32)
            step = self.limits.max_step if last is not None else np.where(self.limits.hold_last, np.inf,
                                                                           self.limits.max_step)
            out[i] = last = np.clip(act, ref - step, ref + step)
        t_first = (keys[0] / self.config.hz) if keys else now
        return t_first, out

    def chunk_ids(self) -> set[int]:
        return {s.chunk_id for s in self._plan.values()}

    def __len__(self) -> int:
        return len(self._plan)

    def _limit(self, act: np.ndarray) -> tuple[np.ndarray, bool]:
        lim = self.limits
        out = np.clip(act, lim.low, lim.high)
        if self._last is not None:
            out = np.clip(out, self._last - lim.max_step, self._last + lim.max_step)
        else:
            # Nothing sent yet: the arm is at rest, so deltas ramp up from 0. Dimensions held at
            # their last value (grippers, joint positions) have no reference until the first command.
            step = np.where(lim.hold_last, np.inf, lim.max_step)
            out = np.clip(out, -step, step)
        clamped = bool(np.any(out != act))
        return out.astype(np.float32), clamped
