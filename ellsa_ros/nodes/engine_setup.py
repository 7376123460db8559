"""Builds the policy node's DuplexEngine from its parameters.

The policy is the first of: `policy.class` (a Policy class 'module:Class', for
integrations and tests), `policy.remote` (a policy server), `policy.checkpoint` or, with
none of them, the embedded default model. Speech backends come from `ellsa_ros.speech`.
Anything that cannot be built raises ParamError naming the parameter that chose it.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ellsa_ros.arm.proprio import STATE_DIM
from ellsa_ros.nodes.params import ParamError, PolicyParams
from ellsa_ros.runtime.actions import ActionLimits
from ellsa_ros.runtime.engine import DuplexEngine, EngineConfig
from ellsa_ros.runtime.listening import ListeningPolicy
from ellsa_ros.runtime.policy import Policy, ThreadedWorker

if TYPE_CHECKING:
    from ellsa_ros.arm.kinematics import ArmKinematics


def load_class(spec: str, name: str) -> type:
    """'package.module:Class' -> the class; ParamError naming parameter `name` otherwise."""
    module, _, attr = spec.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise ParamError(name, f"cannot load {spec!r}: {e}") from None


def _build(param: str, make: Any, /, *args: Any, **kwargs: Any) -> Any:
    """`make(*args, **kwargs)`; any failure becomes a ParamError naming `param`. The first two
    are positional-only so that a backend's own keyword (`name=`) never collides with them."""
    try:
        return make(*args, **kwargs)
    except ParamError:
        raise
    except Exception as e:  # noqa: BLE001 - any failure to build a backend stops the node, named
        raise ParamError(param, f"{type(e).__name__}: {e}") from None


def _speech(factory: str, name: str) -> Any:
    try:
        return getattr(importlib.import_module("ellsa_ros.speech"), factory)
    except (ImportError, AttributeError) as e:
        raise ParamError(name, f"the speech backends are not available ({e})") from None


def build_policy(p: PolicyParams) -> Policy:
    if p.policy_class:
        policy = _build("policy.class", load_class(p.policy_class, "policy.class"))
    elif p.remote:
        from ellsa_ros.serve.client import RemoteConfig, RemotePolicy
        config = _build("policy.remote", RemoteConfig, p.remote, keys_dir=p.remote_keys_dir or None)
        policy = _build("policy.remote", RemotePolicy, config)
    else:
        name = "policy.checkpoint"
        try:
            from ellsa_ros.model import load_policy
        except ImportError as e:
            raise ParamError(name, f"the model package is not available ({e})") from None
        policy = _build(name, load_policy, p.checkpoint or None, backend=p.backend)
    if not isinstance(policy, Policy):
        raise ParamError("policy.class", f"{type(policy).__name__} has no reset() and step(block)")
    if p.asr:
        transcriber = _build("speech.asr", _speech("make_transcriber", "speech.asr"), p.asr)
        policy = ListeningPolicy(policy, transcriber)
        policy.listen_for(p.vocabulary)
    return policy


def build_tts(p: PolicyParams) -> Any:
    if ":" in p.tts:
        return _build("speech.tts", load_class(p.tts, "speech.tts"))
    return _build("speech.tts", _speech("make_tts", "speech.tts"), name=p.tts)


def build_limits(p: PolicyParams) -> ActionLimits:
    if p.action_space == "joint_positions":
        return ActionLimits.joint_positions(p.joint_low, p.joint_high, p.max_step)
    return ActionLimits.ee_delta(p.dof, p.max_step)


def settle_block_s(p: PolicyParams, policy: Policy) -> float:
    """The engine's block length: the parameter, or with 0.0 the policy's own (its `block_s`,
    1.0 s if it declares none). A model run at another block length than it was trained at
    decides on blocks it never saw, so a mismatch is refused rather than adopted."""
    own = getattr(policy, "block_s", None)
    if not p.block_s:
        return float(own) if own is not None else 1.0
    if own is not None and abs(float(own) - p.block_s) > 1e-6:
        raise ParamError("block_s", f"{p.block_s} s, but the policy runs at {float(own)} s blocks "
                                    "(set block_s: 0.0 to use the policy's)")
    return p.block_s


def settle_state_dim(p: PolicyParams, policy: Policy) -> int | None:
    """How many values a state sample has: the joints read, checked against the policy's
    `state_dim` when it declares one (with no joint names, the policy's is enforced per sample)."""
    own = getattr(policy, "state_dim", None)
    if p.state_source in ("ee_pose", "fk"):
        if own is not None and int(own) != STATE_DIM:
            raise ParamError("state_source", f"{p.state_source!r} gives the {STATE_DIM}-value proprioception, "
                                             f"but the policy expects {int(own)} values (its state_dim)")
        return STATE_DIM
    if not p.joint_names:
        return None if own is None else int(own)
    if own is not None and int(own) != len(p.joint_names):
        raise ParamError("joint_names", f"{len(p.joint_names)} joints give a {len(p.joint_names)}-value state, "
                                        f"but the policy expects {int(own)} values (its state_dim); "
                                        f"state_source 'ee_pose' gives the {STATE_DIM}-value proprioception")
    return len(p.joint_names)


def build_kinematics(p: PolicyParams) -> ArmKinematics | None:
    """The forward kinematics of `urdf` for state_source 'fk' (None otherwise); a URDF that does
    not load, lacks `ee_link`, or whose root is not `pose_frame` is refused naming the parameter."""
    if p.state_source != "fk":
        return None
    from ellsa_ros.arm.kinematics import ArmKinematics, UrdfError
    try:
        kinematics = ArmKinematics(p.urdf, p.ee_link)
    except UrdfError as e:
        raise ParamError(e.what, str(e)) from None
    if p.pose_frame and p.pose_frame != kinematics.root_link:
        raise ParamError("pose_frame", f"{p.pose_frame!r}, but forward kinematics of {p.urdf} gives poses in "
                                       f"its root link {kinematics.root_link!r}")
    return kinematics


def engine_config(p: PolicyParams, block_s: float, state_dim: int | None) -> EngineConfig:
    return EngineConfig(
        sample_rate=p.sample_rate, frame_ms=p.frame_ms, block_s=block_s, control_hz=p.control_hz,
        cameras=tuple(p.cameras), image_size=p.image_size, state_dim=state_dim,
        use_audio=p.use_audio, action_mode=p.action_mode, late_chunks=p.late_chunks, stop_words=tuple(p.stop_words),
        backchannel_s=p.backchannel_s, resume_window_s=p.resume_window_s, stop_hold_s=p.stop_hold_s,
        failing_after=p.policy_failing_after,
        max_age_s={"camera": p.max_age_camera_s, "state": p.max_age_state_s, "audio": p.max_age_audio_s})


def build_engine(p: PolicyParams) -> DuplexEngine:
    """Called once by the policy node at start; inference runs on the worker's own thread.
    Raises ParamError naming the parameter whose value cannot work with the built parts."""
    policy = build_policy(p)
    config = engine_config(p, settle_block_s(p, policy), settle_state_dim(p, policy))
    tts = build_tts(p)
    vad = None if p.vad == "energy" else _build("speech.vad", _speech("make_vad", "speech.vad"), name=p.vad)
    keywords = None
    if p.keywords:
        keywords = _build("speech.keywords", _speech("make_keyword_spotter", "speech.keywords"),
                          words=tuple(p.stop_words))
    front_end = _build("speech.front_end", _speech("make_front_end", "speech.front_end")) if p.front_end else None
    return DuplexEngine(ThreadedWorker(policy), build_limits(p), tts, config, vad=vad, keywords=keywords,
                        front_end=front_end)
