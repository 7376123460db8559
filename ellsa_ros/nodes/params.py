"""Typed, documented node parameters, validated at start.

Each node's parameters are one frozen dataclass. A field carries its ROS name (dotted for
nested YAML keys such as `policy.checkpoint`), a description (shown by `ros2 param
describe`), and its checks; `__post_init__` holds the checks that span several fields.
A bad value raises `ParamError` naming the parameter, and the node stops with that message.

The same classes check a params YAML file without ROS (`NodeParams.from_mapping`), so
`ellsa bringup` and the tests refuse a bad file before any process starts. The checks are
as strict as rclpy's: a double parameter must be written `30.0`, not `30`.
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ParamError(ValueError):
    """A parameter value was refused; `name` is the parameter's ROS name."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"parameter '{name}': {reason}")
        self.name = name
        self.reason = reason


def param(default: Any, doc: str, *, name: str | None = None, choices: tuple | None = None,
          low: float | None = None, high: float | None = None) -> Any:
    """A dataclass field that is also a ROS parameter (`name` defaults to the field name)."""
    return field(default=default, metadata={"doc": doc, "name": name, "choices": choices, "low": low, "high": high})


def ros_name(f: dataclasses.Field) -> str:
    return f.metadata.get("name") or f.name


def _kind(cls: type, f: dataclasses.Field) -> type:
    hint = typing.get_type_hints(cls)[f.name]
    return typing.get_origin(hint) or hint


def _item_kind(cls: type, f: dataclasses.Field) -> type:
    return typing.get_args(typing.get_type_hints(cls)[f.name])[0]


class NodeParams:
    """Base of every node's parameter dataclass: per-field checks run before `__post_init__`."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            name, meta = ros_name(f), f.metadata
            if meta.get("choices") and value not in meta["choices"]:
                raise ParamError(name, f"{value!r} is not one of {list(meta['choices'])}")
            if meta.get("low") is not None and value < meta["low"]:
                raise ParamError(name, f"{value} is below the minimum {meta['low']}")
            if meta.get("high") is not None and value > meta["high"]:
                raise ParamError(name, f"{value} is above the maximum {meta['high']}")
        self.check()

    def check(self) -> None:
        """Checks that span several parameters; raise ParamError naming one of them."""

    @classmethod
    def from_mapping(cls, values: dict[str, Any]) -> NodeParams:
        """Builds the parameters from ROS-named values (missing ones take their defaults),
        with rclpy's type rules; unknown names are refused."""
        by_name = {ros_name(f): f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(by_name))
        if unknown:
            raise ParamError(unknown[0], f"unknown parameter; known: {sorted(by_name)}")
        kwargs = {}
        for name, value in values.items():
            f = by_name[name]
            kwargs[f.name] = coerce(cls, f, value)
        return cls(**kwargs)


def coerce(cls: type, f: dataclasses.Field, value: Any) -> Any:
    """`value` as the field's type, or ParamError; lists become tuples."""
    name, kind = ros_name(f), _kind(cls, f)
    if kind in (list, tuple):
        item = _item_kind(cls, f)
        if not isinstance(value, (list, tuple)):
            raise ParamError(name, f"expected a list of {item.__name__}, got {value!r}")
        return tuple(_scalar(name, item, v) for v in value)
    return _scalar(name, kind, value)


def _scalar(name: str, kind: type, value: Any) -> Any:
    ok = {bool: lambda v: isinstance(v, bool),
          int: lambda v: isinstance(v, int) and not isinstance(v, bool),
          float: lambda v: isinstance(v, float),
          str: lambda v: isinstance(v, str)}[kind]
    if not ok(value):
        hint = " (write doubles with a decimal point, e.g. 30.0)" if kind is float and isinstance(value, int) else ""
        raise ParamError(name, f"expected {kind.__name__}, got {type(value).__name__} {value!r}{hint}")
    return value


def flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested YAML mappings to dotted ROS parameter names: {"policy": {"remote": x}} -> {"policy.remote": x}."""
    out: dict[str, Any] = {}
    for k, v in values.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def load_params_file(path: str | Path) -> dict[str, dict[str, Any]]:
    """Node name -> its flattened parameters, from a ROS 2 params YAML file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"params file {path} does not exist")
    doc = yaml.safe_load(path.read_text()) or {}
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: expected a mapping of node names, got {type(doc).__name__}")
    out = {}
    for node, body in doc.items():
        if not isinstance(body, dict) or set(body) != {"ros__parameters"}:
            raise ValueError(f"{path}: node {node!r} must hold exactly one key, 'ros__parameters'")
        out[str(node).lstrip("/")] = flatten(body["ros__parameters"] or {})
    return out


def declare(node: Any, cls: type[NodeParams]) -> NodeParams:
    """Called once in a node's `__init__`: declares every field of `cls` on the rclpy `node`
    (with its description) and returns the validated values, overrides from
    `--params-file` / `-p` included. Raises ParamError naming the first bad parameter."""
    from rcl_interfaces.msg import ParameterDescriptor
    from rclpy.exceptions import InvalidParameterTypeException, ParameterUninitializedException
    from rclpy.parameter import Parameter

    array_type = {str: Parameter.Type.STRING_ARRAY, float: Parameter.Type.DOUBLE_ARRAY,
                  int: Parameter.Type.INTEGER_ARRAY, bool: Parameter.Type.BOOL_ARRAY}
    kwargs = {}
    for f in dataclasses.fields(cls):
        name = ros_name(f)
        descriptor = ParameterDescriptor(name=name, description=f.metadata["doc"])
        is_list = _kind(cls, f) in (list, tuple)
        try:
            if is_list:
                # An empty default says nothing of the item type: declare the type itself.
                p = node.declare_parameter(name, array_type[_item_kind(cls, f)], descriptor)
                try:
                    value = p.value
                except ParameterUninitializedException:
                    value = None
                value = f.default if value is None else value
            else:
                value = node.declare_parameter(name, f.default, descriptor).value
        except InvalidParameterTypeException as e:
            raise ParamError(name, f"wrong type: {e}") from None
        kwargs[f.name] = coerce(cls, f, list(value) if is_list else value)
    refuse_unknown(node, cls)
    return cls(**kwargs)


def refuse_unknown(node: Any, cls: type[NodeParams]) -> None:
    """A value given for a parameter the node never declared (a misspelled name in the params
    file, `-p control_hzz:=20.0`) would be ignored by rclpy without a word: refuse it, as
    `ellsa bringup` does before it starts any node."""
    # rclpy keeps the overrides of --params-file / -p for this node by name; it has no public
    # accessor for them.
    overrides = getattr(node, "_parameter_overrides", {}) or {}
    unknown = sorted(n for n in overrides if not node.has_parameter(n))
    if unknown:
        known = sorted(ros_name(f) for f in dataclasses.fields(cls))
        raise ParamError(unknown[0], f"unknown parameter; known: {known}")


# --- the nodes' parameters ----------------------------------------------------------------

@dataclass(frozen=True)
class CameraParams(NodeParams):
    source: str = param("test_pattern", "'test_pattern' (no camera needed), a device index such as '0', "
                        "a video file path, or a stream URL (rtsp://, http://)")
    fps: float = param(30.0, "frames published per second", low=0.1, high=240.0)
    width: int = param(640, "image width in pixels; frames of another size are resized", low=16, high=8192)
    height: int = param(480, "image height in pixels", low=16, high=8192)
    frame_id: str = param("camera", "header.frame_id of the images")
    loop: bool = param(True, "a video file starts over at its end (else the node stops publishing)")


@dataclass(frozen=True)
class MicrophoneParams(NodeParams):
    source: str = param("device", "'device' (sounddevice input) or 'file' (a WAV file at real-time pace)",
                        choices=("device", "file"))
    device: str = param("", "input device name (substring) or index; '' is the system default")
    file: str = param("", "WAV file played when source is 'file'")
    loop: bool = param(True, "the WAV file starts over at its end (else silence follows)")
    sample_rate: int = param(16000, "samples per second published", low=8000, high=48000)
    frame_ms: float = param(20.0, "frame length in milliseconds", low=20.0, high=32.0)
    channels: int = param(1, "channels per frame (interleaved)", low=1, high=8)

    def check(self) -> None:
        if self.source == "file" and not self.file:
            raise ParamError("file", "source is 'file' but no file is given")
        if self.source == "file" and not Path(self.file).is_file():
            raise ParamError("file", f"{self.file} does not exist")


@dataclass(frozen=True)
class SpeakerParams(NodeParams):
    sink: str = param("device", "'device' (sounddevice output) or 'file' (a WAV file)", choices=("device", "file"))
    device: str = param("", "output device name (substring) or index; '' is the system default")
    file: str = param("", "WAV file written when sink is 'file'")
    sample_rate: int = param(16000, "samples per second of the robot's speech frames", low=8000, high=48000)

    def check(self) -> None:
        if self.sink == "file" and not self.file:
            raise ParamError("file", "sink is 'file' but no file is given")


@dataclass(frozen=True)
class RecorderParams(NodeParams):
    output: str = param("", "bag folder to create; '' is bags/ellsa_<date>_<time>")
    topics: tuple[str, ...] = param((), "topics to record (relative names resolve in the node's namespace); "
                                        "empty: every topic that appears, except ROS's own")
    discover_period_s: float = param(0.5, "how often new topics are looked for", low=0.05, high=10.0)


COMMAND_TOPICS = {"chunk": "action_chunk", "moveit_servo": "/servo_node/delta_twist_cmds",
                  "joint_trajectory_controller": "/joint_trajectory_controller/joint_trajectory",
                  "forward_command": "/forward_command_controller/commands"}
COMMAND_INTERFACES = tuple(COMMAND_TOPICS)


@dataclass(frozen=True)
class PolicyParams(NodeParams):
    sample_rate: int = param(16000, "microphone and speech sample rate", low=8000, high=48000)
    frame_ms: float = param(20.0, "length of the robot's speech frames in ms", low=20.0, high=32.0)
    block_s: float = param(0.0, "policy block length in seconds (0.16-2.0); 0.0 runs at the block length the "
                           "policy was trained at (1.0 s for a policy that declares none). A value that differs "
                           "from the policy's own is refused at start", low=0.0, high=2.0)
    control_hz: float = param(20.0, "control ticks (and published commands) per second", low=1.0, high=1000.0)
    cameras: tuple[str, ...] = param(("agentview", "wrist"), "camera names; each is read from <name>/image")
    image_width: int = param(0, "required image width in pixels; 0 accepts any", low=0)
    image_height: int = param(0, "required image height in pixels; 0 accepts any", low=0)
    use_audio: bool = param(True, "listen to the microphone (false: typed instructions only)")
    joint_names: tuple[str, ...] = param((), "joints read from joint_states, in this order; empty takes "
                                              "the positions as published")
    state_source: str = param("joints", "'joints': the positions of joint_names from joint_states; 'ee_pose': "
                              "the model's 18-d proprioception from an end-effector PoseStamped (pose_topic), "
                              "the gripper_joints from joint_states and the command last sent; 'fk': the same, "
                              "with the pose from forward kinematics of joint_states through `urdf`",
                              choices=("joints", "ee_pose", "fk"))
    pose_topic: str = param("ee_pose", "geometry_msgs/PoseStamped of the end effector (state_source 'ee_pose')")
    pose_frame: str = param("", "frame_id a pose must carry; '' accepts any (a pose in another frame is dropped). "
                            "With 'fk' it must be '' or the URDF's root link")
    urdf: str = param("", "the arm's URDF file (state_source 'fk'); meshes are not needed")
    ee_link: str = param("", "the URDF link whose pose is the end effector's (state_source 'fk')")
    base_xyz: tuple[float, ...] = param((0.0, 0.0, 0.0), "where the arm's base (the pose frame's origin) stands "
                                        "in the frame the policy was trained in, added to the end-effector "
                                        "position (LIBERO's Panda: [-0.66, 0.0, 0.912])")
    gripper_joints: tuple[str, ...] = param(("panda_finger_joint1", "panda_finger_joint2"),
                                            "the two finger joints read from joint_states (state_source 'ee_pose')")
    action_space: str = param("ee_delta", "'ee_delta': Float32MultiArray [chunk, dof] end-effector deltas; "
                              "'joint_positions': JointTrajectory over joint_names",
                              choices=("ee_delta", "joint_positions"))
    dof: int = param(7, "action dimensions for ee_delta (the last is the gripper)", low=1, high=64)
    max_step: float = param(0.5, "largest change of one action dimension between two ticks", low=0.0)
    joint_low: tuple[float, ...] = param((), "lower joint position limits (joint_positions)")
    joint_high: tuple[float, ...] = param((), "upper joint position limits (joint_positions)")
    action_mode: str = param("blend", "how a new chunk meets the current plan", choices=("blend", "replace"))
    late_chunks: str = param("shift", "a chunk that arrives after its start (inference latency): 'shift' runs all "
                             "of it from now, 'skip' drops the actions already past", choices=("shift", "skip"))
    max_age_camera_s: float = param(0.5, "a camera older than this is stale: the arm holds",
                                    name="max_age_s.camera", low=0.001)
    max_age_state_s: float = param(0.25, "joint states older than this are stale", name="max_age_s.state", low=0.001)
    max_age_audio_s: float = param(0.5, "audio older than this is stale", name="max_age_s.audio", low=0.001)
    frame_id: str = param("base_link", "header.frame_id of the published commands (the twist's frame for "
                          "moveit_servo)")
    command_interface: str = param("chunk", "'chunk': Float32MultiArray [chunk, dof] with look-ahead; "
                                   "'moveit_servo': TwistStamped for MoveIt Servo; 'joint_trajectory_controller': "
                                   "JointTrajectory with look-ahead; 'forward_command': Float64MultiArray for "
                                   "ros2_control's forward_command_controller",
                                   choices=COMMAND_INTERFACES)
    command_topic: str = param("", "where commands go; '' is the interface's usual topic ("
                               + ", ".join(f"{k}: {v}" for k, v in COMMAND_TOPICS.items()) + ")")
    forward_interface: str = param("velocity", "forward_command: 'velocity' (ee_delta: the scaled twist, "
                                   "joint_positions: joint velocities of the plan) or 'position' (joint_positions)",
                                   choices=("velocity", "position"))
    linear_scale: float = param(1.0, "m/s of a normalized position delta of 1 (LIBERO's controller: 0.05 m "
                                "per 20 Hz step)")
    angular_scale: float = param(10.0, "rad/s of a normalized rotation delta of 1 (LIBERO's: 0.5 rad per step)")
    max_linear_speed: float = param(0.25, "cap on the commanded linear speed (m/s), applied after scaling")
    max_angular_speed: float = param(1.0, "cap on the commanded angular speed (rad/s), applied after scaling")
    gripper_topic: str = param("/gripper_controller/commands", "Float64MultiArray [position] for a "
                               "forward-command gripper controller (moveit_servo, forward_command with ee_delta); "
                               "'' sends no gripper command")
    gripper_open: float = param(0.04, "gripper position commanded for an open gripper (action -1)")
    gripper_closed: float = param(0.0, "gripper position commanded for a closed gripper (action +1)")
    armed_at_start: bool = param(False, "send commands from the start; false: only zero motion until "
                                 "~/enable (SetBool) arms the outputs")
    checkpoint: str = param("", "model checkpoint path; '' with no remote or class is the embedded model",
                            name="policy.checkpoint")
    backend: str = param("torch", "inference backend for the checkpoint", name="policy.backend",
                         choices=("torch", "onnx"))
    remote: str = param("", "policy server address tcp://HOST:PORT instead of a local model", name="policy.remote")
    remote_keys_dir: str = param("", "CURVE keys for a policy server off loopback", name="policy.remote_keys_dir")
    policy_class: str = param("", "a Policy class 'module:Class' built with no arguments", name="policy.class")
    tts: str = param("espeak", "speech backend ('hibari', 'piper', 'espeak') or a TTS class 'module:Class'",
                     name="speech.tts")
    vad: str = param("energy", "'energy' (built in) or a VAD backend name ('silero')", name="speech.vad")
    asr: str = param("", "transcriber backend for spoken instructions; '' hears typed text only",
                     name="speech.asr")
    stop_words: tuple[str, ...] = param(("stop", "wait", "pause", "halt"), "words that halt the arm",
                                        name="speech.stop_words")
    keywords: bool = param(False, "spot stop words in the audio (a keyword spotter backend)",
                           name="speech.keywords")
    backchannel_s: float = param(0.1, "user speech still voiced this long after its onset pauses the robot's "
                                      "voice, keeping its place", name="speech.backchannel_s", low=0.02, high=2.0)
    resume_window_s: float = param(1.0, "user speech that ends within this long of its onset is a backchannel "
                                        "(the voice plays on); still going then, it cuts the voice",
                                   name="speech.resume_window_s", low=0.05, high=5.0)
    stop_hold_s: float = param(4.0, "a spotted stop word holds the arm, keeping its plan, until the utterance's "
                                    "transcript judges it; unjudged this long, it halts", name="speech.stop_hold_s",
                               low=0.1, high=10.0)
    front_end: bool = param(True, "the listening front end before VAD and ASR, as in simulation: 120 Hz "
                                  "high-pass, bursts dropped, pauses under 1 s joined into one utterance",
                            name="speech.front_end")
    vocabulary: tuple[str, ...] = param((), "names of the objects in the robot's scene: they bias recognition",
                                        name="speech.vocabulary")
    policy_failing_after: int = param(3, "consecutive blocks without a decision after which a "
                                         "`policy_failing` event is sent (the arm holds meanwhile)", low=1)

    def check(self) -> None:
        if self.block_s and self.block_s < 0.16:
            raise ParamError("block_s", f"{self.block_s} is below the minimum 0.16 (0.0: the policy's own)")
        chosen = [n for n, v in (("policy.checkpoint", self.checkpoint), ("policy.remote", self.remote),
                                 ("policy.class", self.policy_class)) if v]
        if len(chosen) > 1:
            raise ParamError(chosen[1], f"set only one of {chosen}")
        if self.resume_window_s <= self.backchannel_s:
            raise ParamError("speech.resume_window_s", f"{self.resume_window_s} s is not longer than "
                             f"speech.backchannel_s ({self.backchannel_s} s): the voice pauses at the backchannel "
                             f"length, and only later can the pause turn into a cut")
        if self.keywords and not [w for w in self.stop_words if w.strip()]:
            raise ParamError("speech.stop_words", "is empty, but speech.keywords spots stop words: name the words "
                             "that halt the arm")
        if self.remote and not self.remote.startswith("tcp://"):
            raise ParamError("policy.remote", f"{self.remote!r} is not a tcp://HOST:PORT address")
        if self.policy_class and ":" not in self.policy_class:
            raise ParamError("policy.class", f"{self.policy_class!r} is not 'module:Class'")
        if not self.cameras or len(set(self.cameras)) != len(self.cameras):
            raise ParamError("cameras", f"{list(self.cameras)}: need at least one camera, each named once")
        if (self.image_width == 0) != (self.image_height == 0):
            raise ParamError("image_width", "set both image_width and image_height, or neither")
        if len(set(self.joint_names)) != len(self.joint_names):
            raise ParamError("joint_names", "a joint is named twice")
        if self.state_source in ("ee_pose", "fk"):
            if self.action_space != "ee_delta" or self.dof != 7:
                raise ParamError("state_source", f"{self.state_source!r} builds the state of a 7-value "
                                                 f"end-effector-delta arm: action_space is {self.action_space!r}, "
                                                 f"dof {self.dof}")
            if len(self.gripper_joints) != 2:
                raise ParamError("gripper_joints", f"{list(self.gripper_joints)}: name the two finger joints")
            if len(self.base_xyz) != 3:
                raise ParamError("base_xyz", f"{list(self.base_xyz)}: give x, y, z in metres")
        if self.state_source == "ee_pose" and not self.pose_topic:
            raise ParamError("pose_topic", "state_source 'ee_pose' needs a pose topic")
        if self.state_source == "fk":
            if not self.urdf:
                raise ParamError("urdf", "state_source 'fk' needs the arm's URDF file")
            if not Path(self.urdf).is_file():
                raise ParamError("urdf", f"{self.urdf} does not exist")
            if not self.ee_link:
                raise ParamError("ee_link", "state_source 'fk' needs the end-effector link's name")
        self.check_commands()
        if self.action_space == "joint_positions":
            if not self.joint_names:
                raise ParamError("joint_names", "action_space 'joint_positions' needs the joint names")
            for name, lim in (("joint_low", self.joint_low), ("joint_high", self.joint_high)):
                if len(lim) != len(self.joint_names):
                    raise ParamError(name, f"{len(lim)} values for {len(self.joint_names)} joints")
            if any(lo > hi for lo, hi in zip(self.joint_low, self.joint_high)):
                raise ParamError("joint_low", "a lower limit is above its upper limit")

    def check_commands(self) -> None:
        for name in ("linear_scale", "angular_scale", "max_linear_speed", "max_angular_speed"):
            value = getattr(self, name)
            if not value > 0.0 or value == float("inf"):
                raise ParamError(name, f"{value} must be a finite value above 0")
        joint = self.action_space == "joint_positions"
        if self.command_interface == "moveit_servo" and (joint or self.dof != 7):
            raise ParamError("command_interface", "'moveit_servo' sends 7-value end-effector deltas as twists: "
                                                  f"action_space is {self.action_space!r}, dof {self.dof}")
        if self.command_interface == "joint_trajectory_controller" and not joint:
            raise ParamError("command_interface", "'joint_trajectory_controller' needs action_space "
                                                  "'joint_positions'")
        if self.command_interface == "forward_command":
            if not joint and self.dof != 7:
                raise ParamError("command_interface", f"'forward_command' with ee_delta needs dof 7, got {self.dof}")
            if not joint and self.forward_interface == "position":
                raise ParamError("forward_interface", "'position' needs action_space 'joint_positions' "
                                                      "(end-effector deltas are velocities)")
        if self.gripper_open == self.gripper_closed:
            raise ParamError("gripper_closed", f"equals gripper_open ({self.gripper_open})")

    @property
    def command_topic_name(self) -> str:
        return self.command_topic or COMMAND_TOPICS[self.command_interface]

    @property
    def sends_gripper(self) -> bool:
        """The gripper has an output of its own (the twist and ee forward commands carry 6 values)."""
        return bool(self.gripper_topic) and self.action_space == "ee_delta" and \
            self.command_interface in ("moveit_servo", "forward_command")

    @property
    def image_size(self) -> tuple[int, int] | None:
        return (self.image_height, self.image_width) if self.image_width else None

    @property
    def action_dof(self) -> int:
        return len(self.joint_names) if self.action_space == "joint_positions" else self.dof


# Executable -> its parameters. Nodes of other rooms (the sim bridge) check their own.
PARAMS_OF: dict[str, type[NodeParams]] = {
    "camera_node": CameraParams,
    "microphone_node": MicrophoneParams,
    "policy_node": PolicyParams,
    "speaker_node": SpeakerParams,
    "recorder_node": RecorderParams,
}
