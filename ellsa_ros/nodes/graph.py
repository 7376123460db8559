"""The node graphs: which executables run, under which names, with which remappings.

One description serves both `launch/*.launch.py` (for `ros2 launch`) and `ellsa bringup`
(for machines with rclpy but no launch), so the two start the same processes. Node names
are the keys of the params YAML (`config/arm.yaml`, `config/sim.yaml`).

Topics (all relative, so a namespace or a remapping moves them):
  <camera>/image      sensor_msgs/Image             camera -> policy (sensor-data QoS)
  audio               std_msgs/Int16MultiArray      microphone -> policy (sensor-data QoS)
  joint_states        sensor_msgs/JointState        arm or sim -> policy
  instruction         std_msgs/String               console -> policy (typed instructions)
  ee_pose             geometry_msgs/PoseStamped     arm driver or sim -> policy (state_source ee_pose)
  action_chunk        Float32MultiArray | JointTrajectory   policy -> sim (command_interface chunk)
  /servo_node/delta_twist_cmds  TwistStamped        policy -> MoveIt Servo (moveit_servo)
  /gripper_controller/commands  Float64MultiArray   policy -> gripper controller
  (command_topic and gripper_topic move the controller topics; see config/arm.yaml)
  speech_audio        std_msgs/Int16MultiArray      policy -> speaker (the robot's voice)
  speech_played       std_msgs/Int16MultiArray      speaker -> policy (echo reference)
  transcript          std_msgs/String               policy -> console (what the robot says)
  events              std_msgs/String (JSON)        policy -> console, recorder
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GraphNode:
    executable: str                                # a console script of this package (or the sim's)
    name: str                                      # node name: its section in the params file
    remappings: tuple[tuple[str, str], ...] = ()   # (from, to) topic names
    remappable: tuple[str, ...] = ()               # topics a launch argument may point elsewhere


CAMERAS = ("agentview", "wrist")

ARM: tuple[GraphNode, ...] = (
    *(GraphNode("camera_node", f"{cam}_camera", (("image", f"{cam}/image"),)) for cam in CAMERAS),
    GraphNode("microphone_node", "microphone"),
    GraphNode("policy_node", "policy", remappable=("joint_states", "action_chunk")),
    GraphNode("speaker_node", "speaker"),
)

SIM: tuple[GraphNode, ...] = (
    GraphNode("sim_bridge_node", "sim_bridge"),
    GraphNode("policy_node", "policy"),
    GraphNode("speaker_node", "speaker"),
)

# The arm graph's real-arm path against the simulator: the bridge stands in for the arm's
# driver and controllers (joint_states, ee_pose; a Servo twist and a gripper command).
ARM_SIM: tuple[GraphNode, ...] = (
    GraphNode("sim_bridge_node", "sim_arm"),
    GraphNode("policy_node", "policy"),
    GraphNode("speaker_node", "speaker"),
)

GRAPHS: dict[str, tuple[GraphNode, ...]] = {"arm": ARM, "sim": SIM, "arm_sim": ARM_SIM}


def graph_for(node_names: set[str]) -> str:
    """The graph whose nodes are exactly the sections of a params file."""
    for name, nodes in GRAPHS.items():
        if {n.name for n in nodes} == node_names:
            return name
    known = {g: sorted(n.name for n in nodes) for g, nodes in GRAPHS.items()}
    raise ValueError(f"the params file configures nodes {sorted(node_names)}, which match no graph; "
                     f"expected one of {known}")


def ros_args(node: GraphNode, params_file: str, remaps: dict[str, str] | None = None) -> list[str]:
    """The `--ros-args` a process of `node` is started with (the same as launch_ros gives it)."""
    args = ["--ros-args", "-r", f"__node:={node.name}", "--params-file", params_file]
    for src, dst in node.remappings:
        args += ["-r", f"{src}:={dst}"]
    for src, dst in (remaps or {}).items():
        args += ["-r", f"{src}:={dst}"]
    return args
