"""One recorded episode: raw timed streams, not model tokens.

Everything a trainer needs to rebuild time blocks of any length, each with its time on the
episode clock (seconds from the first recorded observation, after the simulator settled):

- observations: the 18-d proprioception at the control rate, camera frames (compressed) at the
  episode's frame rate (`frame_hz`, every few control ticks from tick 0: blocks are cut only
  where a frame was stored);
- the executed actions (with DART noise) and the expert's clean labels, and whether the robot
  was meant to act at each step (it holds before an instruction, while paused, after a
  rejection and after the task is done);
- the microphone: the user's utterances mixed with background noise, and each utterance's
  text, kind and timing;
- the robot's expected turns: words to say and control labels (reject, cancel, done), each
  with the moment it becomes due (the earliest time the robot could know it should respond).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ellsa_ros.sim.frame_rate import frame_interval

UTTERANCE_KINDS = ("instruction", "question", "defective", "stop", "continue", "backchannel")
CONTROLS = ("", "reject", "cancel", "done")


@dataclass
class Utterance:
    """What the user said. Times in seconds on the episode clock; `heard_t` is when a streaming
    listener has the finished utterance (speech end plus the voice detector's hangover)."""
    t_start: float
    t_end: float
    heard_t: float
    text: str
    kind: str
    voice: str
    keywords: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in UTTERANCE_KINDS:
            raise ValueError(f"utterance kind {self.kind!r} is not one of {UTTERANCE_KINDS}")
        if not (0.0 <= self.t_start < self.t_end <= self.heard_t):
            raise ValueError(f"utterance times must satisfy 0 <= start < end <= heard, got "
                             f"{self.t_start}, {self.t_end}, {self.heard_t}")


@dataclass
class RobotTurn:
    """What the robot is expected to do once `t` (s) has passed: say `say` (may be ""), and
    signal `control` ("", "reject", "cancel" or "done") with `reason` for a rejection.
    `speech_s` is how long `say` lasts in the robot's voice; `evidence` holds the simulator
    state an answer was derived from ({object: [lo xyz, hi xyz]})."""
    t: float
    say: str = ""
    control: str = ""
    reason: str = ""
    speech_s: float = 0.0
    evidence: dict[str, list[float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.control not in CONTROLS:
            raise ValueError(f"robot control {self.control!r} is not one of {CONTROLS}")
        if self.control == "reject" and not self.reason:
            raise ValueError("a rejection needs a reason")


@dataclass
class Episode:
    """Arrays: state (T+1, 18) float32 at step times i / control_hz; frames[camera] the encoded
    images of steps 0, k, 2k, ... <= T, k = control_hz / frame_hz (frame_hz None: every step, as
    datasets made before frame rates were chosen); executed, labels (T, 7) float32 and acting
    (T,) bool for the action applied at step i; mic (n,) int16 at `sample_rate` from time 0."""
    suite: str
    task_id: int
    instruction: str
    init_state: int
    slot: int
    attempt: int
    pattern: str
    noise_std: float
    control_hz: float
    sample_rate: int
    image_codec: str
    frames: dict[str, list[bytes]]
    state: np.ndarray
    executed: np.ndarray
    labels: np.ndarray
    acting: np.ndarray
    mic: np.ndarray
    utterances: list[Utterance]
    robot: list[RobotTurn]
    success_step: int | None
    retries: int = 0
    voices: tuple[str, ...] = ()
    noise: str = ""
    frame_hz: float | None = None
    # What the runtime's listener heard, (s, transcript) per utterance: kept beside the shard
    # (datagen/hearing.py), attached by the reader when it is asked for.
    asr: list[tuple[float, str]] | None = None

    def __post_init__(self) -> None:
        n_obs = len(self.state)
        if n_obs < 1:
            raise ValueError("an episode needs at least one observation")
        n_frames = (n_obs - 1) // self.frame_every + 1
        for cam, frames in self.frames.items():
            if len(frames) != n_frames:
                raise ValueError(f"camera {cam!r} has {len(frames)} frames for {n_obs} observations; at "
                                 f"{self.frame_hz or self.control_hz:g} Hz it should have {n_frames}")
        for name in ("executed", "labels", "acting"):
            if len(getattr(self, name)) != n_obs - 1:
                raise ValueError(f"{name} has {len(getattr(self, name))} steps, expected {n_obs - 1}")

    @property
    def frame_every(self) -> int:
        """Control steps from one stored frame to the next."""
        return 1 if self.frame_hz is None else frame_interval(self.frame_hz, self.control_hz, "frame_hz")

    def frame(self, camera: str, step: int) -> bytes:
        """The encoded image of `camera` stored last at or before observation `step`."""
        return self.frames[camera][step // self.frame_every]

    @property
    def steps(self) -> int:
        return len(self.executed)

    @property
    def duration_s(self) -> float:
        return self.steps / self.control_hz

    @property
    def key(self) -> str:
        return f"{self.suite}/{self.task_id}/{self.slot}"
