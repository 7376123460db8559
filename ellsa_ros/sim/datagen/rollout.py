"""One scripted demonstration with its conversation: the expert acts, the user talks, the
robot's expected words and control labels are written down with their times.

DART-style noise: the executed action is the expert's action plus Gaussian noise on the six
motion dimensions, while the recorded label is the expert's clean action for the state the
noise led to, so the data shows how to recover. The expert re-grasps after a failed grasp
(its `retries`); such episodes are kept when they end in success. The robot holds (zero
motion, gripper as it was) before an instruction, while paused and after the task is done.

Times are seconds on the episode clock: observation i is taken at i / control_hz. The state,
actions, labels and audio are kept at the full rate; both cameras are rendered and stored
only at `frame_hz` (every few steps from step 0): rendering is most of a step's cost, and the
reader cuts blocks only where a frame was stored (at 4 Hz, block lengths of multiples of 0.25 s).
"""
from __future__ import annotations

import heapq
import math
import zlib
from dataclasses import dataclass, field
from typing import Callable

import cv2
import numpy as np

from ellsa_ros.runtime.reflex import ReflexConfig, stop_phrase
from ellsa_ros.sim.datagen.episode import Episode, RobotTurn, Utterance
from ellsa_ros.sim.datagen.patterns import During, InteractionPlan, PatternShares, plan_episode
from ellsa_ros.sim.datagen.scene_talk import evidence_of
from ellsa_ros.sim.datagen.voices import NOISE_KINDS, SAMPLE_RATE, Voice, VoiceBox, background_noise, mix_microphone
from ellsa_ros.sim.frame_rate import frame_interval

CAMERAS = ("agentview", "wrist")
DONE_REPLIES = ("Done.", "All done.", "Finished.", "")
IMAGE_CODECS = ("jpeg", "png")


@dataclass(frozen=True)
class RolloutConfig:
    """noise_levels: std of the DART noise (action units, [-1, 1] scale), one drawn per episode.
    heard_delay_s: from the end of an utterance to a streaming listener having it (the voice
    detector's hangover). response_wait_s: how long the user lets the robot answer before
    speaking again (plus the length of its answer). tail_s: recorded after success; at least
    the longest block (2 s) so that the block with the done label exists at every block length.
    stuck_s: the expert reports it is done but the task is not: the attempt fails after this.
    frame_hz: camera frames stored per second (the control rate divided by a whole number)."""
    noise_levels: tuple[float, ...] = (0.0, 0.05, 0.1, 0.2)
    voices: tuple[Voice, ...] = (Voice("espeak", "en-us"),)
    robot_voice: Voice = Voice("espeak", "en-us+m3")
    rate_jitter: float = 0.1
    noise_kinds: tuple[str, ...] = NOISE_KINDS
    noise_dbfs: tuple[float, float] = (-60.0, -35.0)
    speech_gain_db: tuple[float, float] = (-8.0, 0.0)
    heard_delay_s: float = 0.25
    response_wait_s: float = 1.0
    tail_s: float = 2.0
    stuck_s: float = 3.0
    image_codec: str = "jpeg"
    jpeg_quality: int = 90
    frame_hz: float = 4.0

    def __post_init__(self) -> None:
        if not self.noise_levels or any(not 0.0 <= s <= 1.0 for s in self.noise_levels):
            raise ValueError(f"noise_levels must be a non-empty list of stds in [0, 1], got {self.noise_levels}")
        if not self.voices:
            raise ValueError("give at least one user voice")
        unknown = sorted(set(self.noise_kinds) - set(NOISE_KINDS))
        if unknown or not self.noise_kinds:
            raise ValueError(f"noise kinds {unknown or '(none)'} are not among {NOISE_KINDS}")
        if self.image_codec not in IMAGE_CODECS:
            raise ValueError(f"image_codec must be one of {IMAGE_CODECS}, got {self.image_codec!r}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be in 1-100, got {self.jpeg_quality}")
        if not (math.isfinite(self.frame_hz) and self.frame_hz > 0):
            raise ValueError(f"frame_hz must be a positive rate (Hz), got {self.frame_hz}")
        for name in ("heard_delay_s", "response_wait_s", "tail_s", "stuck_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


@dataclass
class RolloutResult:
    episode: Episode | None       # None when the attempt failed
    failure: str = ""              # why it failed ("" on success)
    steps: int = 0


def episode_seed(seed: int, suite: str, task_id: int, slot: int, attempt: int) -> list[int]:
    """The random stream of one attempt; independent of which worker runs it, and when."""
    return [int(seed), zlib.crc32(suite.encode()), int(task_id), int(slot), int(attempt)]


def encode_image(rgb: np.ndarray, codec: str, quality: int) -> bytes:
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    if codec == "jpeg":
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    else:
        ok, buf = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise RuntimeError(f"could not encode a {rgb.shape} image as {codec}")
    return buf.tobytes()


@dataclass
class _Talk:
    """The conversation so far, and what is due when."""
    utterances: list[Utterance] = field(default_factory=list)
    robot: list[RobotTurn] = field(default_factory=list)
    audio: list[tuple[float, np.ndarray, float]] = field(default_factory=list)
    due: list[tuple[float, int, Callable[[], None]]] = field(default_factory=list)
    n: int = 0

    def at(self, t: float, fn: Callable[[], None]) -> None:
        self.n += 1
        heapq.heappush(self.due, (t, self.n, fn))


class _Episode:
    """One attempt in progress: modes "waiting" -> "acting" <-> "paused" -> "done"."""

    def __init__(self, env, expert, voices: VoiceBox, cfg: RolloutConfig, plan: InteractionPlan,
                 rng: np.random.Generator, info: dict) -> None:
        self.env, self.expert, self.voices, self.cfg, self.plan, self.rng = env, expert, voices, cfg, plan, rng
        self.hz = float(env.control_hz)
        self.info = info
        self.user = cfg.voices[int(rng.integers(len(cfg.voices)))]
        self.talk = _Talk()
        self.mode = "waiting"
        self.t = 0.0
        self.acting_steps = 0
        self.user_free_at = plan.lead_in_s
        self.before = list(plan.before)
        self.during = sorted(plan.during, key=lambda d: d.offset_s)
        self.instructed = False
        self._robot_s: dict[str, float] = {}

    # -- the user -------------------------------------------------------------------------

    def say(self, text: str, kind: str, keywords: tuple[str, ...] = ()) -> Utterance:
        rate = self.user.rate * float(self.rng.uniform(1 - self.cfg.rate_jitter, 1 + self.cfg.rate_jitter))
        audio = self.voices.synthesize(self.user.at_rate(min(2.0, max(0.5, rate))), text)
        end = self.t + len(audio) / SAMPLE_RATE
        u = Utterance(self.t, end, end + self.cfg.heard_delay_s, text, kind, self.user.name, keywords)
        gain = 10 ** (float(self.rng.uniform(*self.cfg.speech_gain_db)) / 20.0)
        self.talk.utterances.append(u)
        self.talk.audio.append((self.t, audio, gain))
        self.user_free_at = math.inf          # until the robot's response sets it
        return u

    def robot_turn(self, turn: RobotTurn) -> None:
        if turn.say:
            if turn.say not in self._robot_s:
                self._robot_s[turn.say] = len(self.voices.synthesize(self.cfg.robot_voice, turn.say)) / SAMPLE_RATE
            turn.speech_s = self._robot_s[turn.say]
        self.talk.robot.append(turn)
        gap = float(self.rng.uniform(0.3, 1.0))
        self.user_free_at = turn.t + self.cfg.response_wait_s + turn.speech_s + gap

    def next_before(self) -> None:
        """Called when the user is free and the robot waits: the next pre-task utterance."""
        if self.before:
            item = self.before.pop(0)
            u = self.say(item.text, "question" if item.question else "defective")
            if item.question is not None:
                q = item.question
                self.talk.at(u.heard_t, lambda: self._answer(q, u.heard_t))
            else:
                d = item.defect
                self.talk.at(u.heard_t, lambda: self.robot_turn(RobotTurn(u.heard_t, d.reply, "reject", d.reason)))
            return
        u = self.say(self.plan.instruction, "instruction")
        self.instructed = True

        def start() -> None:
            self.robot_turn(RobotTurn(u.heard_t, self.plan.acknowledge))
            self.mode = "acting"
        self.talk.at(u.heard_t, start)

    def next_during(self) -> None:
        """Called while acting when the user is free and an event's time has come."""
        d: During = self.during.pop(0)
        if d.kind == "backchannel":
            u = self.say(d.text, "backchannel")
            self.user_free_at = u.heard_t + float(self.rng.uniform(0.3, 1.0))
        elif d.kind == "question":
            u = self.say(d.text, "question")
            if d.question is not None:
                q = d.question
                self.talk.at(u.heard_t, lambda: self._answer(q, u.heard_t))
            else:
                self.talk.at(u.heard_t, lambda: self.robot_turn(RobotTurn(u.heard_t, d.reply)))
        else:
            words = tuple(w for w in d.text.replace(",", " ").split() if w in ("stop", "wait", "pause", "halt"))
            u = self.say(d.text, "stop", words)
            # The arm stops when the runtime's would: a short phrase that starts with a stop word
            # holds it once the quiet after it is heard (the reflex); a longer one, when the model
            # cancels on its transcript.
            alone = stop_phrase(d.text, u.t_end - u.t_start)
            held_at = u.t_end + ReflexConfig.stop_gap_s if alone else u.heard_t
            self.talk.at(held_at, lambda: self._switch("acting", "paused"))

            def cancelled() -> None:
                self.robot_turn(RobotTurn(u.heard_t, d.reply, "cancel"))
                self.talk.at(self.user_free_at + d.pause_s, resume_request)

            def resume_request() -> None:
                c = self.say(d.continue_text, "continue")
                self.talk.at(c.heard_t, lambda: (self.robot_turn(RobotTurn(c.heard_t, d.continue_reply)),
                                                 self._switch("paused", "acting")))
            self.talk.at(u.heard_t, cancelled)

    def _switch(self, old: str, new: str) -> None:
        if self.mode == old:       # a stop after the task was done changes nothing
            self.mode = new

    def _answer(self, question, t: float) -> None:
        qa = question.answer(self.info["object_boxes"])
        self.robot_turn(RobotTurn(t, qa.answer, evidence=evidence_of(self.info["object_boxes"], qa.evidence)))

    # -- the loop -------------------------------------------------------------------------

    def before_step(self, step: int) -> None:
        """Called before choosing the action of `step`: runs everything due by then."""
        self.t = step / self.hz
        while self.talk.due and self.talk.due[0][0] <= self.t + 1e-9:
            _, _, fn = heapq.heappop(self.talk.due)
            fn()
        if self.mode == "waiting" and not self.instructed and self.t + 1e-9 >= self.user_free_at:
            self.next_before()
        elif self.mode == "acting" and self.during and self.t + 1e-9 >= self.user_free_at \
                and self.acting_steps / self.hz >= self.during[0].offset_s:
            self.next_during()


def _clear_physics(env) -> None:
    """Clears what the simulator remembers of the last episode: the solver's warm start,
    controls and forces, and the gripper's ramped command (robosuite's deterministic reset
    keeps it). Without this the same init state and actions give results that differ by
    ~1e-3 m depending on what ran before, and a run would not be reproducible across workers."""
    import mujoco

    sim = env._sim_env.sim
    mujoco.mj_resetData(sim.model._model, sim.data._data)
    gripper = env._sim_env.env.robots[0].gripper
    gripper.current_action = np.zeros(gripper.dof)


def run_episode(env, expert, voices: VoiceBox, cfg: RolloutConfig, shares: PatternShares, seed: int,
                slot: int, attempt: int) -> RolloutResult:
    """One attempt at the demonstration in `slot` of the env's task (init state slot % n)."""
    task = env.task
    rng = np.random.default_rng(episode_seed(seed, task.suite, task.task_id, slot, attempt))
    init_state = slot % env.n_init_states
    _clear_physics(env)
    obs, info = env.reset(seed=int(rng.integers(2 ** 31)), options={"init_state": init_state})
    expert.reset()
    pattern = shares.draw(rng)
    plan = plan_episode(pattern, task.language, info["object_boxes"], rng)
    noise_std = float(cfg.noise_levels[int(rng.integers(len(cfg.noise_levels)))])
    ep = _Episode(env, expert, voices, cfg, plan, rng, info)
    frame_every = frame_interval(cfg.frame_hz, ep.hz, "frame_hz")
    cams = CAMERAS if env.config.cameras else ()
    frames: dict[str, list[bytes]] = {c: [] for c in cams}

    def store_frames() -> None:
        for c, image in env.render_cameras(cams).items():
            frames[c].append(encode_image(image, cfg.image_codec, cfg.jpeg_quality))
    if cams:
        store_frames()
    states, executed, labels, acting = [obs["state"]], [], [], []
    gripper, success_step, end_step, stuck = -1.0, None, None, 0
    step = 0
    while end_step is None or step < end_step:
        ep.before_step(step)
        was_acting = ep.mode == "acting"
        if was_acting:
            label = np.asarray(expert.act(obs, info), np.float32)
            action = label.copy()
            action[:6] += rng.normal(0.0, noise_std, 6) if noise_std > 0 else 0.0
            action = np.clip(action, -1.0, 1.0)
            ep.acting_steps += 1
            if ep.acting_steps > task.max_steps:
                return RolloutResult(None, f"no success within {task.max_steps} acting steps", step)
            phase = getattr(expert, "phase", None)
            stuck = stuck + 1 if getattr(phase, "value", "") == "done" else 0
            if stuck > cfg.stuck_s * ep.hz:
                return RolloutResult(None, f"the expert finished without success (retries {expert.retries})", step)
        else:
            label = np.array([0, 0, 0, 0, 0, 0, gripper], np.float32)
            action = label
        gripper = float(np.sign(action[6])) or gripper
        obs, _, _, _, info = env.step(action)
        ep.info = info
        step += 1
        if cams and step % frame_every == 0:
            store_frames()
        states.append(obs["state"])
        executed.append(action.astype(np.float32))
        labels.append(label.astype(np.float32))
        acting.append(was_acting)
        if ep.mode == "waiting" and step / ep.hz > 60.0:
            return RolloutResult(None, "the conversation before the task did not end", step)
        if info["success"] and success_step is None:
            if ep.mode != "acting":
                return RolloutResult(None, "the task counted as done before the robot acted", step)
            success_step = step
            ep.mode = "done"
            ep.t = step / ep.hz
            ep.robot_turn(RobotTurn(ep.t, DONE_REPLIES[int(rng.integers(len(DONE_REPLIES)))], "done"))
            end_step = step + int(round(cfg.tail_s * ep.hz))
    duration = step / ep.hz
    noise_kind = cfg.noise_kinds[int(rng.integers(len(cfg.noise_kinds)))]
    noise_db = float(rng.uniform(*cfg.noise_dbfs))
    noise = background_noise(noise_kind, int(round(duration * SAMPLE_RATE)), noise_db, rng)
    mic = mix_microphone(duration, ep.talk.audio, noise)
    # turns past the end of the recording (answers still due) cannot be learned from
    robot = [r for r in ep.talk.robot if r.t <= duration]
    utterances = [u for u in ep.talk.utterances if u.heard_t <= duration]
    episode = Episode(
        suite=task.suite, task_id=task.task_id, instruction=task.language, init_state=init_state, slot=slot,
        attempt=attempt, pattern=pattern, noise_std=noise_std, control_hz=ep.hz, sample_rate=SAMPLE_RATE,
        image_codec=cfg.image_codec, frames=frames, state=np.asarray(states, np.float32),
        executed=np.asarray(executed, np.float32).reshape(-1, 7), labels=np.asarray(labels, np.float32).reshape(-1, 7),
        acting=np.asarray(acting, bool), mic=mic, utterances=utterances, robot=robot, success_step=success_step,
        retries=int(getattr(expert, "retries", 0)), voices=(ep.user.name, cfg.robot_voice.name),
        noise=f"{noise_kind}@{noise_db:.1f}dBFS", frame_hz=cfg.frame_hz)
    return RolloutResult(episode, "", step)
