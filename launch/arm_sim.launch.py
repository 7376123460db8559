"""The real-arm path against the simulator: the sim bridge as a Panda behind MoveIt Servo's
twist and a gripper controller, the policy and a speaker writing a file.

    ros2 launch ellsa_ros arm_sim.launch.py [params_file:=FILE]

The bridge publishes the cameras, joint_states, ee_pose and audio, and executes the twist on
/servo_node/delta_twist_cmds and the gripper position on /gripper_controller/commands.
`ellsa bringup --config config/arm_sim.yaml` starts the same executables without `ros2 launch`.
"""
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from ellsa_ros.nodes.graph import ARM_SIM
from ellsa_ros.nodes.share import config_file
from launch import LaunchDescription


def generate_launch_description():
    arguments = [DeclareLaunchArgument("params_file", default_value=str(config_file("arm_sim.yaml")),
                                       description="ROS 2 params YAML with one section per node")]
    nodes = [Node(package="ellsa_ros", executable=node.executable, name=node.name, output="screen",
                  parameters=[LaunchConfiguration("params_file")], remappings=list(node.remappings))
             for node in ARM_SIM]
    return LaunchDescription(arguments + nodes)
