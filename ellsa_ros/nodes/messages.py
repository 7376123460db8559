"""Conversion between ROS 2 messages and the runtime's arrays, and the QoS of each topic.

Incoming messages that are malformed raise `InputError` (the runtime's: it names the
stream and what was wrong), so the policy node counts and drops them like the engine does.
Image bytes are assigned as `bytes`, never as ndarrays: rclpy checks array elements one by
one (measured ~57 ms for 640x480 against ~1.5 ms for bytes).
"""
from __future__ import annotations

import array

import numpy as np
from builtin_interfaces.msg import Duration, Time
from geometry_msgs.msg import PoseStamped, TwistStamped
from rclpy.qos import QoSDurabilityPolicy, QoSHistoryPolicy, QoSProfile, QoSReliabilityPolicy
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float32MultiArray, Float64MultiArray, Int16MultiArray, MultiArrayDimension
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from ellsa_ros.runtime.streams import InputError

# Cameras and microphones: a late frame is worth less than the next one.
SENSOR_QOS = QoSProfile(history=QoSHistoryPolicy.KEEP_LAST, depth=5,
                        reliability=QoSReliabilityPolicy.BEST_EFFORT, durability=QoSDurabilityPolicy.VOLATILE)
# Actions, the robot's speech, transcripts and events: every message counts.
RELIABLE_QOS = QoSProfile(history=QoSHistoryPolicy.KEEP_LAST, depth=50,
                          reliability=QoSReliabilityPolicy.RELIABLE, durability=QoSDurabilityPolicy.VOLATILE)
# What describes the scene (its object names): kept for a node that subscribes later.
LATCHED_QOS = QoSProfile(history=QoSHistoryPolicy.KEEP_LAST, depth=1,
                         reliability=QoSReliabilityPolicy.RELIABLE, durability=QoSDurabilityPolicy.TRANSIENT_LOCAL)

AUDIO_DIMS = ("samples", "channels")
CHUNK_DIMS = ("chunk", "dof")


# --- time ---------------------------------------------------------------------------------

def to_stamp(t_s: float) -> Time:
    """Seconds (ROS time) -> builtin_interfaces/Time."""
    sec = int(np.floor(t_s))
    return Time(sec=sec, nanosec=min(int(round((t_s - sec) * 1e9)), 999_999_999))


def from_stamp(stamp: Time) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def to_duration(t_s: float) -> Duration:
    sec = int(np.floor(t_s))
    return Duration(sec=sec, nanosec=min(int(round((t_s - sec) * 1e9)), 999_999_999))


# --- images -------------------------------------------------------------------------------

def image_msg(frame: np.ndarray, stamp: Time, frame_id: str) -> Image:
    """(H, W, 3) uint8 RGB -> sensor_msgs/Image rgb8."""
    h, w = frame.shape[:2]
    msg = Image(height=h, width=w, encoding="rgb8", is_bigendian=0, step=w * 3)
    msg.header.stamp, msg.header.frame_id = stamp, frame_id
    msg.data = np.ascontiguousarray(frame, dtype=np.uint8).tobytes()
    return msg


def image_array(msg: Image, stream: str) -> np.ndarray:
    """sensor_msgs/Image (rgb8 or bgr8) -> (H, W, 3) uint8 RGB; InputError otherwise."""
    if msg.encoding not in ("rgb8", "bgr8"):
        raise InputError(stream, f"image encoding {msg.encoding!r}, expected rgb8 or bgr8")
    h, w = msg.height, msg.width
    if msg.step < w * 3 or len(msg.data) != msg.step * h or h == 0 or w == 0:
        raise InputError(stream, f"image {w}x{h} with step {msg.step} does not match {len(msg.data)} bytes")
    rows = np.frombuffer(bytes(msg.data), np.uint8).reshape(h, msg.step)
    rgb = rows[:, : w * 3].reshape(h, w, 3)
    return rgb[:, :, ::-1].copy() if msg.encoding == "bgr8" else rgb


# --- audio --------------------------------------------------------------------------------

def audio_msg(samples: np.ndarray) -> Int16MultiArray:
    """(samples, channels) or (samples,) int16 -> Int16MultiArray, dims `samples`, `channels`."""
    a = np.asarray(samples, np.int16)
    if a.ndim == 1:
        a = a[:, None]
    n, ch = a.shape
    msg = Int16MultiArray()
    msg.layout.dim = [MultiArrayDimension(label="samples", size=n, stride=n * ch),
                      MultiArrayDimension(label="channels", size=ch, stride=ch)]
    # array.array passes rclpy's type check at once; lists and ndarrays are checked per element.
    msg.data = array.array("h", np.ascontiguousarray(a).tobytes())
    return msg


def audio_array(msg: Int16MultiArray, stream: str = "audio") -> np.ndarray:
    """Int16MultiArray -> (samples, channels) int16; InputError if the layout is not ours."""
    dims = msg.layout.dim
    labels = tuple(d.label for d in dims)
    if labels != AUDIO_DIMS:
        raise InputError(stream, f"audio layout {labels}, expected {AUDIO_DIMS}")
    n, ch = dims[0].size, dims[1].size
    if ch < 1 or n * ch != len(msg.data):
        raise InputError(stream, f"audio layout says {n} samples x {ch} channels but holds {len(msg.data)} values")
    return np.frombuffer(msg.data, np.int16).reshape(n, ch) if isinstance(msg.data, array.array) \
        else np.asarray(msg.data, np.int16).reshape(n, ch)


def mono_float(samples: np.ndarray) -> np.ndarray:
    """(samples, channels) int16 -> (samples,) float32 in [-1, 1], channels averaged."""
    return (samples.astype(np.float32) / 32768.0).mean(axis=1)


def pcm16(audio: np.ndarray) -> np.ndarray:
    """float32 in [-1, 1] -> int16."""
    return (np.clip(audio, -1.0, 1.0) * 32767.0).astype(np.int16)


# --- joint states -------------------------------------------------------------------------

def joint_positions(msg: JointState, joint_names: tuple[str, ...]) -> np.ndarray:
    """Positions in the order of `joint_names` (as published when it is empty)."""
    if len(msg.position) != len(msg.name) and msg.name:
        raise InputError("state", f"{len(msg.name)} names but {len(msg.position)} positions")
    if not joint_names:
        return np.asarray(msg.position, np.float64)
    index = {n: i for i, n in enumerate(msg.name)}
    missing = [n for n in joint_names if n not in index]
    if missing:
        raise InputError("state", f"joint_states lacks joints {missing}")
    return np.asarray([msg.position[index[n]] for n in joint_names], np.float64)


def pose_parts(msg: PoseStamped, frame: str) -> tuple[np.ndarray, np.ndarray]:
    """(position (3,), quaternion x, y, z, w (4,)) of a pose; InputError when it is in another
    frame than `frame` ('' accepts any) or is not finite."""
    if frame and msg.header.frame_id != frame:
        raise InputError("state", f"pose in frame {msg.header.frame_id!r}, expected {frame!r} (pose_frame)")
    p, q = msg.pose.position, msg.pose.orientation
    pos, quat = np.array([p.x, p.y, p.z]), np.array([q.x, q.y, q.z, q.w])
    if not (np.isfinite(pos).all() and np.isfinite(quat).all()):
        raise InputError("state", "pose contains non-finite values")
    return pos, quat


# --- action chunks ------------------------------------------------------------------------

def chunk_array_msg(actions: np.ndarray) -> Float32MultiArray:
    """(chunk, dof) float32 -> Float32MultiArray with dims `chunk`, `dof` (end-effector deltas)."""
    a = np.asarray(actions, np.float32)
    n, dof = a.shape
    msg = Float32MultiArray()
    msg.layout.dim = [MultiArrayDimension(label="chunk", size=n, stride=n * dof),
                      MultiArrayDimension(label="dof", size=dof, stride=dof)]
    msg.data = array.array("f", a.tobytes())
    return msg


def chunk_array(msg: Float32MultiArray) -> np.ndarray:
    """Float32MultiArray [chunk, dof] -> (chunk, dof) float32; InputError if the layout differs."""
    labels = tuple(d.label for d in msg.layout.dim)
    if labels != CHUNK_DIMS:
        raise InputError("actions", f"chunk layout {labels}, expected {CHUNK_DIMS}")
    n, dof = msg.layout.dim[0].size, msg.layout.dim[1].size
    if n * dof != len(msg.data):
        raise InputError("actions", f"layout says {n}x{dof} but holds {len(msg.data)} values")
    return np.asarray(msg.data, np.float32).reshape(n, dof)


def trajectory_msg(actions: np.ndarray, joint_names: tuple[str, ...], start: Time, hz: float,
                   frame_id: str) -> JointTrajectory:
    """(chunk, joints) positions -> JointTrajectory starting at `start`, one point per 1/hz."""
    a = np.asarray(actions, np.float64)
    msg = JointTrajectory(joint_names=list(joint_names))
    msg.header.stamp, msg.header.frame_id = start, frame_id
    msg.points = [JointTrajectoryPoint(positions=row.tolist(), time_from_start=to_duration(i / hz))
                  for i, row in enumerate(a)]
    return msg


# --- controller commands ------------------------------------------------------------------

def twist_msg(linear: np.ndarray, angular: np.ndarray, stamp: Time, frame_id: str) -> TwistStamped:
    """Linear (m/s, 3) and angular (rad/s, 3) velocity -> geometry_msgs/TwistStamped."""
    msg = TwistStamped()
    msg.header.stamp, msg.header.frame_id = stamp, frame_id
    t = msg.twist
    t.linear.x, t.linear.y, t.linear.z = (float(v) for v in linear)
    t.angular.x, t.angular.y, t.angular.z = (float(v) for v in angular)
    return msg


def twist_parts(msg: TwistStamped, frame: str) -> tuple[np.ndarray, np.ndarray]:
    """(linear (3,), angular (3,)) of a twist; InputError when it is in another frame than
    `frame` ('' accepts any) or is not finite."""
    if frame and msg.header.frame_id != frame:
        raise InputError("twist", f"twist in frame {msg.header.frame_id!r}, expected {frame!r}")
    lin, ang = msg.twist.linear, msg.twist.angular
    linear, angular = np.array([lin.x, lin.y, lin.z]), np.array([ang.x, ang.y, ang.z])
    if not (np.isfinite(linear).all() and np.isfinite(angular).all()):
        raise InputError("twist", "twist contains non-finite values")
    return linear, angular


def float64_array_msg(values: np.ndarray) -> Float64MultiArray:
    """(n,) values -> Float64MultiArray with one dimension, as ros2_control's
    forward_command_controller reads it (one value per joint or interface)."""
    a = np.asarray(values, np.float64).ravel()
    msg = Float64MultiArray()
    msg.layout.dim = [MultiArrayDimension(label="values", size=len(a), stride=len(a))]
    msg.data = array.array("d", a.tobytes())
    return msg
