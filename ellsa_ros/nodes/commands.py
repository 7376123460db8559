"""Command outputs: the engine's normalized actions on the topic and message a controller reads.

The engine emits one normalized action per control tick (end-effector deltas in [-1, 1] with
the gripper last, or joint positions) and the plan after it. An output turns that into what
its consumer expects (`command_interface`):

  chunk                        Float32MultiArray [chunk, dof]: this tick and the plan ahead
                               (joint positions: a JointTrajectory, as action_chunk always was)
  moveit_servo                 TwistStamped in `frame_id`: deltas x linear_scale (m/s) and
                               angular_scale (rad/s), each speed capped after scaling
  joint_trajectory_controller  JointTrajectory over joint_names: this tick and the plan ahead
  forward_command              Float64MultiArray: the capped twist (ee_delta), joint velocities
                               of the plan or joint positions (`forward_interface`)
  gripper (its own topic)      Float64MultiArray [position] between gripper_open and _closed

What a hold sends (stale input, rejection, stop, shutdown) and what disarmed outputs send:
velocity outputs send zeros, every tick; position outputs (trajectories, forward positions,
the gripper) send nothing while disarmed, and on hold the position the engine holds. A chunk
of end-effector deltas holds with zero deltas. Nothing non-finite is ever published.
"""
from __future__ import annotations

from typing import Any

import numpy as np
from geometry_msgs.msg import TwistStamped
from std_msgs.msg import Float32MultiArray, Float64MultiArray
from trajectory_msgs.msg import JointTrajectory

from ellsa_ros.nodes import messages as m
from ellsa_ros.nodes.params import PolicyParams

ZERO3 = np.zeros(3)


class TwistScale:
    """Normalized deltas -> velocities (m/s, rad/s), each speed capped by the norm of its
    vector (the direction is kept). A non-finite action gives a zero twist."""

    def __init__(self, linear_scale: float, angular_scale: float, max_linear: float, max_angular: float) -> None:
        self.linear_scale, self.angular_scale = linear_scale, angular_scale
        self.max_linear, self.max_angular = max_linear, max_angular

    @classmethod
    def of(cls, p: PolicyParams) -> TwistScale:
        return cls(p.linear_scale, p.angular_scale, p.max_linear_speed, p.max_angular_speed)

    def twist(self, action: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(linear (3,), angular (3,)) for the first six values of `action`."""
        a = np.asarray(action, np.float64)[:6]
        if a.shape != (6,) or not np.isfinite(a).all():
            return ZERO3.copy(), ZERO3.copy()
        return _capped(a[:3] * self.linear_scale, self.max_linear), _capped(a[3:] * self.angular_scale,
                                                                            self.max_angular)

    def action(self, linear: np.ndarray, angular: np.ndarray) -> np.ndarray:
        """The inverse: the six normalized deltas a twist stands for, clipped to [-1, 1]."""
        a = np.concatenate([np.asarray(linear) / self.linear_scale, np.asarray(angular) / self.angular_scale])
        return np.clip(a, -1.0, 1.0)


def _capped(v: np.ndarray, cap: float) -> np.ndarray:
    norm = float(np.linalg.norm(v))
    # The factor sits just below cap / norm so that rounding never lands above the cap.
    return v * (cap / norm * (1.0 - 1e-9)) if norm > cap else v


class GripperScale:
    """Gripper action (-1 open .. +1 closed) <-> the controller's position."""

    def __init__(self, open_pos: float, closed_pos: float) -> None:
        self.open_pos, self.closed_pos = open_pos, closed_pos

    def position(self, action: float) -> float:
        return self.open_pos + (float(np.clip(action, -1.0, 1.0)) + 1.0) / 2.0 * (self.closed_pos - self.open_pos)

    def action(self, position: float) -> float:
        return float(np.clip(2.0 * (position - self.open_pos) / (self.closed_pos - self.open_pos) - 1.0, -1.0, 1.0))


def message_type(p: PolicyParams) -> type:
    """The message the command topic carries."""
    if p.command_interface == "moveit_servo":
        return TwistStamped
    if p.command_interface == "forward_command":
        return Float64MultiArray
    if p.command_interface == "joint_trajectory_controller" or p.action_space == "joint_positions":
        return JointTrajectory
    return Float32MultiArray


class CommandOutputs:
    """The policy node's outputs, built from its parameters; `send` is called on every control
    tick with this tick's action (dof,), the plan after it (n, dof), the tick's ROS time and
    whether the engine holds."""

    def __init__(self, node: Any, p: PolicyParams) -> None:
        self.p = p
        self.armed = p.armed_at_start
        self.scale = TwistScale.of(p)
        self.gripper = GripperScale(p.gripper_open, p.gripper_closed)
        self.joint = p.action_space == "joint_positions"
        self.previous: np.ndarray | None = None   # joint targets last sent (forward velocities)
        self.pub = node.create_publisher(message_type(p), p.command_topic_name, m.RELIABLE_QOS)
        self.gripper_pub = node.create_publisher(Float64MultiArray, p.gripper_topic, m.RELIABLE_QOS) \
            if p.sends_gripper else None
        self.sent = 0
        self.withheld = 0   # non-finite commands that were not published

    @property
    def topics(self) -> list[str]:
        return [self.pub.topic_name] + ([self.gripper_pub.topic_name] if self.gripper_pub else [])

    def send(self, action: np.ndarray, ahead: np.ndarray, now_ros_s: float, hold: bool) -> None:
        stamp = m.to_stamp(now_ros_s)
        moving = self.armed and not hold
        chunk = np.vstack([action[None, :], ahead])
        if not np.isfinite(chunk).all():
            self.withheld += 1
            moving, chunk = False, chunk[:1] * 0.0
        kind = self.p.command_interface
        if kind == "moveit_servo":
            lin, ang = self.scale.twist(action) if moving else (ZERO3, ZERO3)
            self.publish(m.twist_msg(lin, ang, stamp, self.p.frame_id))
        elif kind == "forward_command":
            self.send_forward(action, moving)
        elif self.armed:
            self.publish(m.trajectory_msg(chunk, self.p.joint_names, stamp, self.p.control_hz, self.p.frame_id)
                         if self.joint else m.chunk_array_msg(chunk))
        elif not self.joint:   # a disarmed chunk of deltas: zero motion, the gripper as held
            held = np.zeros_like(action)
            held[-1] = action[-1] if np.isfinite(action[-1]) else 0.0
            self.publish(m.chunk_array_msg(held[None, :]))
        if self.gripper_pub is not None and self.armed and np.isfinite(action[-1]):
            self.gripper_pub.publish(m.float64_array_msg([self.gripper.position(action[-1])]))

    def send_forward(self, action: np.ndarray, moving: bool) -> None:
        if not self.joint:
            lin, ang = self.scale.twist(action) if moving else (ZERO3, ZERO3)
            return self.publish(m.float64_array_msg(np.concatenate([lin, ang])))
        if self.p.forward_interface == "position":
            if self.armed and np.isfinite(action).all():
                self.publish(m.float64_array_msg(action))
            return None
        velocity = np.zeros(len(action))
        if moving and self.previous is not None:
            velocity = (action - self.previous) * self.p.control_hz
        self.previous = np.asarray(action, np.float64) if np.isfinite(action).all() else self.previous
        self.publish(m.float64_array_msg(velocity))

    def publish(self, msg: Any) -> None:
        self.pub.publish(msg)
        self.sent += 1

    def stop(self, now_ros_s: float) -> None:
        """Called at shutdown: disarmed, one last zero command for velocity outputs."""
        self.armed = False
        if self.p.command_interface == "moveit_servo":
            self.publish(m.twist_msg(ZERO3, ZERO3, m.to_stamp(now_ros_s), self.p.frame_id))
        elif self.p.command_interface == "forward_command" and (not self.joint or self.p.forward_interface
                                                                  == "velocity"):
            self.publish(m.float64_array_msg(np.zeros(6 if not self.joint else len(self.p.joint_names))))
