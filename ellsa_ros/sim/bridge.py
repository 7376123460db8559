"""The sim bridge: a LIBERO environment driven by the duplex runtime, in simulation time.

One episode runs on a `SteppedClock` through the runtime's `SteppedLoop`, so everything is
deterministic and inference is paid for in simulated time (the `SteppedWorker`'s latency):
- every control tick (the environment's 20 Hz) the 18-d proprioception goes in, stamped with
  the tick's time; both cameras are rendered and go in on the ticks of the camera rate
  (`camera_hz`), which lands on every block cut: the frames a block carries are those an
  every-tick camera would have given, and no other tick pays for rendering;
- the engine's command for that tick is the environment's next action; a hold with nothing
  sent yet is zero deltas with the gripper open, a later hold keeps the gripper (the
  engine's `ActionLimits.ee_delta` does that);
- every audio frame the microphone delivers room noise and the scenario's utterances,
  spoken by a TTS (or played from WAV recordings) at their scripted times; typed events go
  in as typed text; the robot's voice is recorded frame by frame.

The camera rate and the engine's staleness limit: a camera pushed every N ticks is up to
N - 1 ticks old between its frames, and the engine holds the arm on a camera older than
`max_age_s["camera"]`. The limit keeps its meaning (a stream that stops still trips it): the
default camera rate is the slowest that serves the block cuts and stays within the limit,
and a `camera_hz` whose frames would age past it is refused when the episode starts.
Recording (`record_frames`): the state of every tick, every rendered camera frame, and the
agentview at `video_fps` for the video (rendered on its own ticks when no camera frame is).

An episode lasts the scenario's `duration_s`; without one, the environment's step limit
counted from the end of the user's first utterance (the policy gets the whole budget after
hearing the instruction). It ends earlier once the task is achieved, the scenario has
nothing left to say and the robot has finished speaking (at most `linger_s` after success).
"""
from __future__ import annotations

import math
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ellsa_ros.runtime import events as ev
from ellsa_ros.runtime.actions import Command
from ellsa_ros.runtime.clock import SteppedClock
from ellsa_ros.runtime.engine import DuplexEngine, EngineConfig
from ellsa_ros.runtime.loop import SteppedLoop
from ellsa_ros.runtime.speech_out import TTS
from ellsa_ros.sim.frame_rate import check_serves_blocks, frame_interval, serving_intervals
from ellsa_ros.sim.microphone import Loudspeaker, ScriptedMicrophone, Utterance, read_wav, synthesize
from ellsa_ros.sim.outcomes import EpisodeTrace, check, measure, unmet
from ellsa_ros.sim.scenario import Scenario
from ellsa_ros.sim.suites import scene_vocabulary, task_spec

CAMERAS = ("agentview", "wrist")
ACTION_DIM = 7
GRIPPER_OPEN = -1.0


@dataclass(frozen=True)
class BridgeConfig:
    """linger_s: after success, how long an episode may go on for the script or the robot's
    voice to finish (s). record_frames: keep what a video and a bag need (every tick's state,
    every rendered frame, the agentview at `video_fps`). noise_rms / speech_peak: microphone
    room noise RMS and the peak level of user speech. camera_hz: how often both cameras are
    rendered into the engine; None: the slowest rate that gives every block cut a frame of its
    own tick and keeps frames within the engine's camera max age (2 Hz at 0.5 s and 1 s blocks).
    video_fps: frames per second of the video (the control rate divided by a whole number);
    None records no video frames (a bag alone)."""
    linger_s: float = 3.0
    record_frames: bool = False
    noise_rms: float = 0.003
    speech_peak: float = 0.5
    camera_hz: float | None = None
    video_fps: float | None = 10.0

    def __post_init__(self) -> None:
        if self.linger_s < 0:
            raise ValueError(f"linger_s={self.linger_s} must be >= 0")
        if self.camera_hz is not None and not (math.isfinite(self.camera_hz) and self.camera_hz > 0):
            raise ValueError(f"camera_hz={self.camera_hz} must be a positive rate (Hz) or None")
        if self.video_fps is not None and not (math.isfinite(self.video_fps) and self.video_fps > 0):
            raise ValueError(f"video_fps={self.video_fps} must be a positive rate (frames per second) or None")

    def camera_interval(self, engine: EngineConfig) -> int:
        """Control ticks between camera frames for an engine with this block length, control
        rate and camera max age; ValueError naming the numbers when `camera_hz` cannot serve it."""
        period_s = 1.0 / engine.control_hz
        max_age_s = engine.max_age_s["camera"]
        if self.camera_hz is None:
            fresh = [n for n in serving_intervals(engine.block_s, engine.control_hz)
                     if (n - 1) * period_s <= max_age_s + 1e-9]
            return max(fresh)
        every = check_serves_blocks(self.camera_hz, engine.block_s, engine.control_hz, "camera_hz")
        oldest_s = (every - 1) * period_s
        if oldest_s > max_age_s + 1e-9:
            raise ValueError(f"camera_hz={self.camera_hz:g} Hz leaves camera frames up to {oldest_s:g} s old, "
                             f"but the engine holds the arm on frames older than max_age_s['camera']="
                             f"{max_age_s:g} s: raise camera_hz to at least {1.0 / (max_age_s + period_s):.3g} Hz "
                             f"or the engine's camera max age")
        return every

    def video_interval(self, control_hz: float) -> int | None:
        """Control ticks between video frames (None: no video); ValueError when video_fps is off
        the control ticks."""
        return None if self.video_fps is None else frame_interval(self.video_fps, control_hz, "video_fps")


@dataclass
class EpisodeResult:
    """One episode. Times are simulation seconds; `wall_s` is what it cost in real time."""
    scenario: str
    suite: str
    task_id: int
    task: str
    init_state: int
    seed: int | None
    success: bool = False
    steps: int = 0
    sim_time_s: float = 0.0
    wall_s: float = 0.0
    metrics: dict[str, Any] = field(default_factory=dict)
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)
    script: list[dict[str, Any]] = field(default_factory=list)
    transcript: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    # Not part of the JSON record: for videos and bags. frames: (t, {camera: image}) for every tick
    # that rendered (both cameras at the camera rate, the agentview alone on video-only ticks);
    # states: (t, 18-d state) every tick; video_fps: the rate of the agentview frames for the video.
    frames: list[tuple[float, dict[str, np.ndarray]]] = field(default_factory=list, repr=False)
    states: list[tuple[float, np.ndarray]] = field(default_factory=list, repr=False)
    video_fps: float = 0.0
    motion: list[tuple[float, bool]] = field(default_factory=list, repr=False)   # (tick, the arm was commanded to move)
    heard_audio: np.ndarray | None = field(default=None, repr=False)
    voice_audio: np.ndarray | None = field(default=None, repr=False)

    @property
    def passed(self) -> bool:
        """No crash, and every expectation of the scenario held."""
        return self.error is None and all(c["ok"] for c in self.checks.values())

    def to_dict(self) -> dict[str, Any]:
        keys = ("scenario", "suite", "task_id", "task", "init_state", "seed", "success", "steps", "sim_time_s",
                "wall_s", "metrics", "checks", "script", "transcript", "events", "error")
        d = {k: getattr(self, k) for k in keys}
        d["passed"] = self.passed
        return d


def episode_steps(scenario: Scenario, user_ends_s: list[float], suite_steps: int, period_s: float) -> int:
    """Control steps an episode runs: the scenario's `duration_s`, or `listen_s` past the user's
    last line; otherwise the suite's step limit from the end of the first line (the
    instruction), so that a long spoken instruction does not eat into the time the policy is
    given to do the task. `ellsa sim`, `ellsa eval` and the ROS bridge node count the same way."""
    if scenario.listen_s is not None:
        end_s = max(scenario.duration_s or 0.0, max(user_ends_s, default=0.0) + scenario.listen_s)
    elif scenario.duration_s is not None:
        end_s = scenario.duration_s
    else:
        end_s = min(user_ends_s, default=0.0) + suite_steps * period_s
    return max(1, math.ceil(end_s / period_s - 1e-9))


def command_to_action(cmd: Command) -> np.ndarray:
    """The environment action for one tick's command: (7,) float64 in [-1, 1]."""
    if cmd.action is None:
        action = np.zeros(ACTION_DIM)
        action[-1] = GRIPPER_OPEN
        return action
    action = np.asarray(cmd.action, np.float64)
    if action.shape != (ACTION_DIM,):
        raise ValueError(f"the engine sent an action of shape {action.shape}; LIBERO takes ({ACTION_DIM},)")
    return action


class SimBridge:
    """Runs episodes of `env` (a LiberoEnv) under a fresh engine from `make_engine` each.

    `tts` speaks the scenario's utterances into the microphone (None: scenarios must be typed
    or recorded). `make_engine` must build a `DuplexEngine` with a `SteppedWorker` whose
    control rate is the environment's. `on_scene(vocabulary)`, when given, is called after each
    reset with the spoken names of the scene's objects (the listener's vocabulary)."""

    def __init__(self, env, make_engine: Callable[[], DuplexEngine], tts: TTS | None,
                 config: BridgeConfig | None = None,
                 on_scene: Callable[[tuple[str, ...]], None] | None = None) -> None:
        self.env = env
        self.make_engine = make_engine
        self.tts = tts
        self.config = config or BridgeConfig()
        self.on_scene = on_scene
        self._speech_cache: dict[str, np.ndarray] = {}

    def run(self, scenario: Scenario, init_state: int | None = None, task_id: int | None = None,
            seed: int | None = None, on_event: Callable[[ev.Event], None] | None = None) -> EpisodeResult:
        """One episode. A crash anywhere is recorded in the result's `error`, with what ran before it."""
        wall0 = time.perf_counter()
        options: dict[str, Any] = {}
        if task_id is not None:
            options["task"] = task_id
        if init_state is not None:
            options["init_state"] = init_state
        task = self.env.task
        result = EpisodeResult(scenario.name, task.suite, task_id if task_id is not None else task.task_id,
                               task.language, -1 if init_state is None else init_state, seed)
        run = None
        try:
            obs, info = self.env.reset(seed=seed, options=options)
            result.task_id, result.task, result.init_state = info["task_id"], info["task"], info["init_state"]
            if self.on_scene is not None:
                self.on_scene(scene_vocabulary(task_spec(task.suite, info["task_id"])))
            scenario = scenario.for_task(info["task"])
            run = _EpisodeRun(self, scenario, obs, on_event)
            run.play()
        except Exception as e:  # noqa: BLE001 - a crashed episode is a failed episode, not a failed evaluation
            result.error = f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=6)}"
        finally:
            if run is not None:
                run.fill(result)
            else:
                result.checks = unmet(scenario)
            result.wall_s = round(time.perf_counter() - wall0, 3)
        return result

    def speech(self, text: str, sample_rate: int) -> np.ndarray:
        """The TTS rendering of `text` (cached: scenarios repeat their words across episodes)."""
        if self.tts is None:
            raise ValueError(f"no TTS to speak {text!r}: give the bridge a TTS, or make the event typed")
        if text not in self._speech_cache:
            self._speech_cache[text] = synthesize(self.tts, text, sample_rate)
        return self._speech_cache[text]


class _EpisodeRun:
    """The state of one episode while it plays."""

    def __init__(self, bridge: SimBridge, scenario: Scenario, obs: dict[str, np.ndarray],
                 on_event: Callable[[ev.Event], None] | None) -> None:
        env, cfg = bridge.env, bridge.config
        self.env, self.cfg, self.scenario = env, cfg, scenario
        self.engine = bridge.make_engine()
        c = self.engine.config
        if abs(c.control_hz - env.control_hz) > 1e-9:
            raise ValueError(f"the engine ticks at {c.control_hz} Hz but the environment steps at {env.control_hz} Hz")
        self.period_s = 1.0 / env.control_hz
        self.camera_every = cfg.camera_interval(c)
        self.video_every = cfg.video_interval(c.control_hz)
        self.log = ev.EventLog()
        self.engine.events.subscribe(self.log)
        if on_event is not None:
            self.engine.events.subscribe(on_event)
        self.engine.worker.reset()           # the policy forgets the previous episode
        self.mic = ScriptedMicrophone(c.sample_rate, cfg.noise_rms, cfg.speech_peak, seed=0)
        self.speaker = Loudspeaker(c.sample_rate)
        self.typed: list[Utterance] = []
        for e in scenario.events:
            if e.kind == "silence":
                continue
            if e.typed:
                self.typed.append(Utterance(e.at_s, e.at_s, e.kind, e.text))
                continue
            audio = read_wav(e.wav, c.sample_rate) if e.wav is not None else bridge.speech(e.text, c.sample_rate)
            self.mic.place(e.at_s, audio, e.kind, e.text)
        self.user = sorted(self.mic.utterances + self.typed, key=lambda u: u.t_start)
        self.script_end_s = max([scenario.last_event_s] + [u.t_end for u in self.user])
        self.n_steps = episode_steps(scenario, [u.t_end for u in self.user], env.max_steps, self.period_s)
        self.obs = obs
        self.cameras = tuple(c for c in CAMERAS if c in self.engine.images) if env.config.cameras else ()
        self.pending_typed = list(self.typed)
        self.motion: list[tuple[float, bool]] = []
        self.frames: list[tuple[float, dict[str, np.ndarray]]] = []
        self.states: list[tuple[float, np.ndarray]] = []
        self.success_t: float | None = None
        self.steps = 0
        self.clock = SteppedClock(0.0)
        self.engine.start(0.0)
        self.loop = SteppedLoop(self.engine, self.clock, mic=self.mic, sensors=self._sensors,
                                on_command=self._command, on_speaker=self.speaker)

    def play(self) -> None:
        try:
            for k in range(self.n_steps):
                self.loop.run_until(k * self.period_s)
                if self._finished(k * self.period_s + self.period_s):
                    break
        finally:
            self.engine.close()

    def _finished(self, t: float) -> bool:
        if self.success_t is None:
            return False
        if t - self.success_t >= self.cfg.linger_s:
            return True
        return t >= self.script_end_s and not self.engine.speech.speaking

    def _sensors(self, t: float) -> None:
        # The simulator is as the last step left it: what is rendered now is that step's observation.
        tick = int(round(t / self.period_s))
        images: dict[str, np.ndarray] = {}
        if self.cameras and tick % self.camera_every == 0:
            images = self.env.render_cameras(self.cameras)
            for camera, image in images.items():
                self.engine.push_image(camera, image, t)
        elif self.cfg.record_frames and self.video_every and "agentview" in self.cameras \
                and tick % self.video_every == 0:
            images = self.env.render_cameras(("agentview",))
        self.engine.push_state(self.obs["state"], t)
        while self.pending_typed and self.pending_typed[0].t_start <= t + 1e-9:
            self.engine.push_text(self.pending_typed.pop(0).text, t)
        if self.cfg.record_frames:
            self.states.append((t, self.obs["state"]))
            if images:
                self.frames.append((t, images))

    def _command(self, cmd: Command) -> None:
        self.obs, _reward, terminated, _truncated, _info = self.env.step(command_to_action(cmd))
        self.steps += 1
        self.motion.append((cmd.t, not cmd.hold))
        if terminated and self.success_t is None:
            self.success_t = round(cmd.t + self.period_s, 6)

    def fill(self, result: EpisodeResult) -> None:
        """Writes what this run recorded into `result`."""
        trace = EpisodeTrace(self.user, list(self.log.events), self.motion, self.speaker.voiced_spans(),
                             self.success_t, self.period_s)
        result.metrics = measure(trace)
        result.checks = check(self.scenario, result.metrics)
        result.success = self.success_t is not None
        result.steps = self.steps
        result.sim_time_s = round(self.steps * self.period_s, 6)
        result.script = [{"t_start": round(u.t_start, 4), "t_end": round(u.t_end, 4), "kind": u.kind, "text": u.text,
                          "typed": u in self.typed} for u in self.user]
        result.script += [{"t_start": e.at_s, "t_end": e.at_s + e.duration_s, "kind": "silence", "text": "",
                           "typed": False} for e in self.scenario.events if e.kind == "silence"]
        result.transcript = transcript(trace.events)
        result.events = [e.to_dict() for e in trace.events]
        result.frames = self.frames
        result.states = self.states
        result.video_fps = (self.cfg.video_fps or 0.0) if self.cfg.record_frames else 0.0
        result.motion = self.motion
        result.heard_audio = self.mic.recording()
        result.voice_audio = self.speaker.recording()


def transcript(events: list[ev.Event]) -> list[dict[str, Any]]:
    """Who said what, when: the user's transcripts (ASR or typed) and the robot's utterances."""
    out: list[dict[str, Any]] = []
    for e in events:
        if isinstance(e, ev.UserTranscript):
            out.append({"t": round(e.t, 4), "who": "user", "text": e.text, "source": e.source})
        elif isinstance(e, ev.RobotSpeechStart):
            out.append({"t": round(e.t, 4), "who": "robot", "text": e.text, "source": "policy"})
        elif isinstance(e, ev.RobotSpeechCut):
            out.append({"t": round(e.t, 4), "who": "robot", "text": "", "source": f"cut:{e.reason}"})
    return out
