"""`ellsa bench tick`: the control loop's timing on the wall clock while inference runs.

A policy that burns ~50 ms of CPU per block runs in the threaded worker; a microphone thread
pushes 20 ms frames and the cameras and state are fed at the control rate. The control loop
is a `RateScheduler` at 20 Hz calling `engine.tick`. Reported: achieved rate, the period
error (how late each tick started against its deadline on the grid) p50/p99, and stalls
(ticks that started more than one whole period late, or were skipped).
"""
from __future__ import annotations

import argparse
import sys
import threading
import time

import numpy as np

from ellsa_ros.runtime.actions import ActionLimits
from ellsa_ros.runtime.blocks import Block
from ellsa_ros.runtime.clock import RateScheduler, WallClock
from ellsa_ros.runtime.engine import DuplexEngine, EngineConfig
from ellsa_ros.runtime.policy import Decision, ThreadedWorker


class BurnPolicy:
    """Burns `burn_s` of this thread's CPU with matrix products (as model inference does),
    then returns a chunk that covers the next block."""

    def __init__(self, burn_s: float, chunk: int) -> None:
        self.burn_s, self.chunk = burn_s, chunk
        self.steps = 0
        rng = np.random.default_rng(0)
        self._a = rng.standard_normal((192, 192)).astype(np.float32)

    def reset(self) -> None:
        self.steps = 0

    def step(self, block: Block) -> Decision:
        t0 = time.thread_time()
        x = self._a
        while time.thread_time() - t0 < self.burn_s:
            x = np.tanh(x @ self._a)
        self.steps += 1
        actions = np.zeros((self.chunk, 7), np.float32)
        actions[:, 0] = 0.1 * np.sin(np.arange(self.chunk) / 5.0)
        return Decision(actions=actions)


class SilentTTS:
    sample_rate = 16000

    def synthesize(self, text: str):
        yield np.zeros(160, np.float32)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=30.0, help="how long to run the control loop")
    parser.add_argument("--hz", type=float, default=20.0, help="control rate")
    parser.add_argument("--burn-ms", type=float, default=50.0, help="CPU time the policy burns per block")
    parser.add_argument("--block-s", type=float, default=0.16,
                        help="block length; the shortest accepted keeps the worker busiest")


def measure(args: argparse.Namespace) -> dict:
    clock = WallClock()
    cfg = EngineConfig(block_s=args.block_s, control_hz=args.hz, image_size=(128, 128), state_dim=18,
                       max_age_s={"camera": 0.5, "state": 0.5, "audio": 0.5})
    chunk = int(np.ceil(args.block_s * args.hz)) + 10
    policy = BurnPolicy(args.burn_ms / 1000.0, chunk)
    worker = ThreadedWorker(policy)
    worker.bind_clock(clock.now)
    engine = DuplexEngine(worker, ActionLimits.ee_delta(7), SilentTTS(), cfg)
    stop = threading.Event()
    frame = np.zeros(cfg.frame_samples, np.float32)

    def microphone() -> None:
        sched = RateScheduler(clock, 1000.0 / cfg.frame_ms)
        while not stop.is_set():
            tick = sched.wait()
            engine.push_audio(frame, tick.now - cfg.frame_ms / 1000.0)

    image = np.zeros((128, 128, 3), np.uint8)
    state = np.zeros(18, np.float32)
    mic = threading.Thread(target=microphone, daemon=True)
    sched = RateScheduler(clock, args.hz)
    t0 = clock.now()
    engine.push_audio(frame, t0 - 0.02)
    engine.start(t0)
    mic.start()
    sched.start(t0)
    starts, moving = [], 0
    while clock.now() - t0 < args.seconds:
        tick = sched.wait()
        starts.append(tick.now)
        engine.push_image("agentview", image, tick.now)
        engine.push_image("wrist", image, tick.now)
        engine.push_state(state, tick.now)
        cmd = engine.tick(tick.now)
        moving += not cmd.hold
    stop.set()
    mic.join(1.0)
    engine.close()
    late_ms = 1000.0 * np.asarray(sched.late_s)
    rate = (len(starts) - 1) / (starts[-1] - starts[0])
    stalls = int(np.sum(late_ms > 1000.0 / args.hz)) + sched.missed
    print(f"[bench tick] {len(starts)} ticks, {policy.steps} policy steps, {moving} moving commands",
          file=sys.stderr)
    return {
        "rate_hz": round(rate, 3),
        "period_error_ms_p50": round(float(np.percentile(late_ms, 50)), 3),
        "period_error_ms_p99": round(float(np.percentile(late_ms, 99)), 3),
        "period_error_ms_max": round(float(late_ms.max()), 3),
        "stalls": stalls,
        "ticks": len(starts),
        "policy_steps": policy.steps,
        "burn_ms": args.burn_ms,
        "block_s": args.block_s,
    }
