"""The simulated Panda behind the interfaces a real one has: what the sim bridge does with
`arm_interface: moveit_servo`.

Commands come in as MoveIt Servo's do: a geometry_msgs/TwistStamped on `twist_topic` (in
`twist_frame`, the arm's base frame) and a std_msgs/Float64MultiArray [position] on
`gripper_topic`, as a forward-command gripper controller reads it. Each simulator step turns
the newest twist back into LIBERO's normalized deltas (the inverse of the policy node's
scaling, `linear_scale` / `angular_scale`) and the gripper position into its -1..+1 action.
A twist older than `command_timeout_s` counts as zero, as Servo's own timeout does.

State goes out as a driver's does: sensor_msgs/JointState with panda_joint1..7 and the two
finger joints, and the end-effector geometry_msgs/PoseStamped on `pose_topic` in
`pose_frame` (the base): LIBERO's grip site and hand orientation, less the base's pose.
"""
from __future__ import annotations

import numpy as np
from geometry_msgs.msg import PoseStamped, TwistStamped
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray

from ellsa_ros.nodes import messages as m
from ellsa_ros.nodes.commands import GripperScale, TwistScale
from ellsa_ros.runtime.streams import InputError

ARM_JOINTS = tuple(f"panda_joint{i}" for i in range(1, 8))
FINGER_JOINTS = ("panda_finger_joint1", "panda_finger_joint2")


class ServoArm:
    """Called by the sim bridge node: `action(now_s)` before each step, `publish(stamp)` after."""

    def __init__(self, node, p, env) -> None:
        self.node, self.p, self.env = node, p, env
        # Caps do not apply here: the policy node enforces them; this is the arm obeying.
        self.scale = TwistScale(p.linear_scale, p.angular_scale, np.inf, np.inf)
        self.gripper_scale = GripperScale(p.gripper_open, p.gripper_closed)
        self.twist: tuple[float, np.ndarray] | None = None   # (arrival s, six normalized deltas)
        self.gripper = -1.0                                  # open until told otherwise
        self.refused = 0
        self.twists = 0
        node.create_subscription(TwistStamped, p.twist_topic, self.twist_callback, m.RELIABLE_QOS)
        node.create_subscription(Float64MultiArray, p.gripper_topic, self.gripper_callback, m.RELIABLE_QOS)
        self.joint_pub = node.create_publisher(JointState, "joint_states", m.SENSOR_QOS)
        self.pose_pub = node.create_publisher(PoseStamped, p.pose_topic, m.SENSOR_QOS)

    def now_s(self) -> float:
        return self.node.get_clock().now().nanoseconds * 1e-9

    def twist_callback(self, msg: TwistStamped) -> None:
        try:
            linear, angular = m.twist_parts(msg, self.p.twist_frame)
        except InputError as e:
            return self.refuse(str(e))
        self.twist = (self.now_s(), self.scale.action(linear, angular))
        self.twists += 1

    def gripper_callback(self, msg: Float64MultiArray) -> None:
        if len(msg.data) != 1 or not np.isfinite(msg.data[0]):
            return self.refuse(f"gripper command {list(msg.data)}: expected one finite position")
        self.gripper = self.gripper_scale.action(msg.data[0])

    def refuse(self, reason: str) -> None:
        self.refused += 1
        if self.refused == 1 or self.refused % 100 == 0:
            self.node.get_logger().warning(f"refused command #{self.refused}: {reason}")

    def action(self) -> np.ndarray:
        """The 7 normalized actions for this step."""
        action = np.zeros(7)
        if self.twist is not None and self.now_s() - self.twist[0] <= self.p.command_timeout_s:
            action[:6] = self.twist[1]
        action[6] = self.gripper
        return action

    def publish(self, stamp) -> None:
        r = self.env.arm_readings()
        joints = JointState(name=[*ARM_JOINTS, *FINGER_JOINTS], position=[*r["joints"], *r["fingers"]])
        joints.header.stamp = stamp
        self.joint_pub.publish(joints)
        pose = PoseStamped()
        pose.header.stamp, pose.header.frame_id = stamp, self.p.pose_frame
        (pose.pose.position.x, pose.pose.position.y, pose.pose.position.z) = (float(v) for v in r["eef_pos"])
        o = pose.pose.orientation
        o.x, o.y, o.z, o.w = (float(v) for v in r["eef_quat_xyzw"])
        self.pose_pub.publish(pose)
