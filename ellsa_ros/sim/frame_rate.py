"""Camera frame rates on the control grid, and the block lengths they serve.

Rendering a camera costs several physics steps, and a policy looks at one frame per camera
per block, so the simulator renders only the frames that are used. A frame rate is a whole
number of control ticks between frames, counted from tick 0 (at 20 Hz control: 20, 10, 5,
4, 2, 1 Hz, ...). It serves a block length when every block cut (the first control tick at
or after a block's end, as `DuplexEngine` and the data reader cut them) is a tick with a
frame: the frame a policy gets at a cut is then the one it would get if every tick were
rendered.
"""
from __future__ import annotations

import math

EPS = 1e-6


def frame_interval(rate_hz: float, control_hz: float, what: str) -> int:
    """Control ticks from one frame to the next at `rate_hz`; a rate that is not the control
    rate divided by a whole number raises ValueError naming `what` and both rates."""
    if not (math.isfinite(rate_hz) and rate_hz > 0):
        raise ValueError(f"{what}={rate_hz} must be a positive number of frames per second")
    every = control_hz / rate_hz
    if every < 1 - EPS:
        raise ValueError(f"{what}={rate_hz:g} Hz is faster than the {control_hz:g} Hz control rate: the "
                         f"simulator changes only once per control tick")
    if abs(every - round(every)) > EPS:
        raise ValueError(f"{what}={rate_hz:g} Hz does not land on the {control_hz:g} Hz control ticks (a frame "
                         f"every {every:.3g} ticks); use {control_hz:g} Hz divided by a whole number, e.g. "
                         f"{_rates([1, 2, 4, 5, 10], control_hz)} Hz")
    return int(round(every))


def block_ticks(block_s: float, control_hz: float) -> int | None:
    """Control ticks per block, or None when blocks do not span a whole number of ticks (their
    cuts then fall at irregular ticks)."""
    ticks = block_s * control_hz
    return int(round(ticks)) if abs(ticks - round(ticks)) < EPS else None


def serves_blocks(every: int, block_s: float, control_hz: float) -> bool:
    """Whether frames every `every` ticks fall on every block cut of `block_s` blocks."""
    if every == 1:
        return True
    ticks = block_ticks(block_s, control_hz)
    return ticks is not None and ticks % every == 0


def serving_intervals(block_s: float, control_hz: float) -> list[int]:
    """Every frame interval (control ticks) that serves `block_s` blocks, fastest first."""
    ticks = block_ticks(block_s, control_hz)
    return [1] if ticks is None else [n for n in range(1, ticks + 1) if ticks % n == 0]


def check_serves_blocks(rate_hz: float, block_s: float, control_hz: float, what: str) -> int:
    """The frame interval of `rate_hz` (control ticks); ValueError naming the rate and the block
    length when some block cut would have no frame."""
    every = frame_interval(rate_hz, control_hz, what)
    if not serves_blocks(every, block_s, control_hz):
        ticks = block_ticks(block_s, control_hz)
        cut = f"every {ticks} control ticks" if ticks is not None else "at irregular control ticks"
        rates = _rates(sorted(serving_intervals(block_s, control_hz), reverse=True), control_hz)
        raise ValueError(f"{what}={rate_hz:g} Hz cannot serve {block_s:g} s blocks: they are cut {cut} at "
                         f"{control_hz:g} Hz and every cut needs a frame of its own tick (a frame every {every} "
                         f"ticks misses some); rates that serve {block_s:g} s blocks: {rates} Hz")
    return every


def _rates(intervals: list[int], control_hz: float) -> str:
    return ", ".join(f"{control_hz / n:g}" for n in intervals)
