"""Drives an engine on a stepped clock: audio frames and control ticks in time order.

Used by simulation, tests and the scripted demo. The wall-clock front ends (ROS nodes,
benchmarks) drive the same engine methods from their own timers and audio callbacks.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .actions import Command
from .clock import SteppedClock
from .engine import DuplexEngine

# mic(t0, n) -> the n samples the microphone captured from t0 (float32 or int16)
Microphone = Callable[[float, int], np.ndarray]


class SteppedLoop:
    def __init__(self, engine: DuplexEngine, clock: SteppedClock,
                 mic: Microphone | None = None,
                 sensors: Callable[[float], None] | None = None,
                 on_command: Callable[[Command], None] | None = None,
                 on_speaker: Callable[[float, np.ndarray], None] | None = None) -> None:
        """`sensors(t)` is called before each tick to push camera frames and state;
        `on_command` receives each tick's command; `on_speaker(t0, frame)` the robot's voice."""
        self.engine, self.clock = engine, clock
        self.mic, self.sensors = mic, sensors
        self.on_command, self.on_speaker = on_command, on_speaker
        c = engine.config
        self.frame_n = c.frame_samples
        self.frame_s = self.frame_n / c.sample_rate
        self.period_s = 1.0 / c.control_hz
        # Integer counters on a fixed origin: no floating-point drift over long episodes.
        self._t0 = clock.now()
        self._n_audio = 1
        self._n_tick = 0
        self.commands: list[Command] = []

    @property
    def _next_audio(self) -> float:
        return self._t0 + self._n_audio * self.frame_s

    @property
    def _next_tick(self) -> float:
        return self._t0 + self._n_tick * self.period_s

    def run_until(self, t_end: float) -> None:
        """Runs every audio frame and tick due up to and including `t_end`."""
        while True:
            t_audio = self._next_audio if self.mic is not None else np.inf
            t = min(t_audio, self._next_tick)
            if t > t_end + 1e-9:
                break
            self.clock.sleep_until(t)
            if t_audio <= self._next_tick + 1e-9:
                self._audio(t_audio)
            else:
                self._tick(self._next_tick)
        self.clock.sleep_until(t_end)

    def _audio(self, t: float) -> None:
        t0 = t - self.frame_s
        out = self.engine.push_audio(self.mic(t0, self.frame_n), t0)
        if self.on_speaker is not None:
            self.on_speaker(t0, out)
        self._n_audio += 1

    def _tick(self, t: float) -> None:
        if self.sensors is not None:
            self.sensors(t)
        cmd = self.engine.tick(t)
        self.commands.append(cmd)
        if self.on_command is not None:
            self.on_command(cmd)
        self._n_tick += 1
