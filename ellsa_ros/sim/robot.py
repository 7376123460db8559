"""The simulated robot's runtime: which policy, ears and voices an episode runs with.

`RobotSpec` says how to build it and is plain data, so that every evaluation worker process
builds its own from it. `SimRobot` builds it once per process: the policy (a checkpoint, a
policy server, or the embedded default model), the TTS that speaks the user's lines into the
microphone, the robot's own TTS, the listening front end, VAD, stop-word spotting and ASR from
`ellsa_ros.speech`; `make_engine()` then gives each episode a fresh `DuplexEngine` on a
`SteppedWorker`, and `hear_scene()` tells the listener the task scene's object names.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, replace

from ellsa_ros.runtime.actions import ActionLimits
from ellsa_ros.runtime.engine import DuplexEngine, EngineConfig
from ellsa_ros.runtime.hearing import VAD, FrontEnd, KeywordSpotter, Transcriber
from ellsa_ros.runtime.listening import ListeningPolicy
from ellsa_ros.runtime.policy import Policy, SteppedWorker
from ellsa_ros.runtime.speech_out import TTS

REMOTE_PREFIX = "remote:"
STATE_DIM = 18


class PolicyLoadError(RuntimeError):
    """The policy asked for cannot be loaded; the message says which and why."""


@dataclass(frozen=True)
class RobotSpec:
    """policy: a checkpoint path, "remote:tcp://HOST:PORT" (an `ellsa serve` server), or None for
    the embedded default model. policy_class: "module:Name", a Policy class or factory called
    with no arguments (instead of `policy`). user_voice / robot_voice: TTS names for
    `ellsa_ros.speech.make_tts`. asr: transcribe the user's utterances for the policy (and the
    transcript). keywords: stop-word spotting on every audio frame. latency_s: simulated inference
    time per block when the policy declares none (s)."""
    policy: str | None = None
    policy_class: str | None = None
    user_voice: str = "hibari"
    robot_voice: str = "espeak"
    asr: bool = True
    keywords: bool = True
    latency_s: float = 0.0
    block_s: float | None = None       # None: the policy's own `block_s`, else 1.0
    frame_ms: float = 32.0
    image_size: int = 128

    def __post_init__(self) -> None:
        if self.policy is not None and self.policy_class is not None:
            raise ValueError("give either a policy checkpoint/endpoint or a policy class, not both")
        if self.latency_s < 0:
            raise ValueError(f"latency_s={self.latency_s} must be >= 0")
        EngineConfig(frame_ms=self.frame_ms, block_s=self.block_s or 1.0)   # validates both

    @property
    def policy_name(self) -> str:
        return self.policy_class or self.policy or "embedded default model"

    def for_policy(self, policy: Policy) -> RobotSpec:
        """This spec with the block length settled: when none was given, the engine runs at the
        block length the policy was trained at (its `block_s`), else 1.0 s."""
        return self if self.block_s is not None else replace(self, block_s=float(getattr(policy, "block_s", 1.0)))


def load_policy(spec: RobotSpec) -> Policy:
    """The policy `spec` names; raises PolicyLoadError saying what could not be loaded."""
    try:
        if spec.policy_class is not None:
            module_name, _, attr = spec.policy_class.partition(":")
            if not attr:
                raise ValueError(f"expected MODULE:NAME, got {spec.policy_class!r}")
            policy = getattr(importlib.import_module(module_name), attr)()
        elif spec.policy is not None and spec.policy.startswith(REMOTE_PREFIX):
            from ellsa_ros.serve.client import RemoteConfig, RemotePolicy
            policy = RemotePolicy(RemoteConfig(spec.policy[len(REMOTE_PREFIX):]))
            policy.connect()
        else:
            from ellsa_ros.model import load_policy as load_model
            policy = load_model(spec.policy)
    except Exception as e:  # noqa: BLE001 - every cause becomes one clear error naming the policy
        raise PolicyLoadError(f"cannot load the policy ({spec.policy_name}): {type(e).__name__}: {e}") from e
    if not isinstance(policy, Policy):
        raise PolicyLoadError(f"{spec.policy_name} gave a {type(policy).__name__}, which has no reset()/step(block)")
    return policy


class SimRobot:
    """Built once per process; `make_engine()` once per episode."""

    def __init__(self, spec: RobotSpec) -> None:
        self.policy = load_policy(spec)     # first: a policy that cannot load is the error to report
        self.spec = spec = spec.for_policy(self.policy)
        speech = _speech_stack()
        self.user_tts = speech.make_tts(name=spec.user_voice)
        self.robot_tts = speech.make_tts(name=spec.robot_voice)
        self.vad = speech.make_vad(name="silero")
        self.front_end = speech.make_front_end()
        self.keywords = speech.make_keyword_spotter(words=self.engine_config().stop_words) if spec.keywords else None
        self.stepped = ListeningPolicy(self.policy, speech.make_transcriber()) if spec.asr else self.policy

    @classmethod
    def from_parts(cls, spec: RobotSpec, policy: Policy, user_tts: TTS, robot_tts: TTS, vad: VAD,
                   keywords: KeywordSpotter | None = None, transcriber: Transcriber | None = None,
                   front_end: FrontEnd | None = None) -> SimRobot:
        """A robot from parts built elsewhere (another speech stack, a policy object at hand)."""
        robot = cls.__new__(cls)
        spec = spec.for_policy(policy)
        robot.spec, robot.policy, robot.user_tts, robot.robot_tts = spec, policy, user_tts, robot_tts
        robot.vad, robot.keywords, robot.front_end = vad, keywords, front_end
        robot.stepped = ListeningPolicy(policy, transcriber) if transcriber is not None else policy
        return robot

    def engine_config(self) -> EngineConfig:
        s = self.spec
        return EngineConfig(frame_ms=s.frame_ms, block_s=s.block_s, control_hz=20.0, cameras=("agentview", "wrist"),
                            image_size=(s.image_size, s.image_size), state_dim=STATE_DIM)

    def make_engine(self) -> DuplexEngine:
        return DuplexEngine(SteppedWorker(self.stepped, self.spec.latency_s), ActionLimits.ee_delta(7),
                            self.robot_tts, self.engine_config(), vad=self.vad, keywords=self.keywords,
                            front_end=self.front_end)

    def hear_scene(self, vocabulary: tuple[str, ...]) -> None:
        """Called when an episode's scene is known: its object names bias what the ASR hears."""
        if isinstance(self.stepped, ListeningPolicy):
            self.stepped.listen_for(vocabulary)


def _speech_stack():
    try:
        return importlib.import_module("ellsa_ros.speech")
    except ImportError as e:
        raise RuntimeError(f"the speech stack (ellsa_ros.speech: TTS, VAD, ASR) cannot be imported: {e}") from e
