"""The LIBERO simulation graph: the sim bridge, the policy and a speaker writing a file.

    ros2 launch ellsa_ros sim.launch.py [params_file:=FILE]

The bridge publishes the cameras, joint states and audio, and executes `action_chunk`.
`ellsa bringup --config config/sim.yaml` starts the same executables without `ros2 launch`.
"""
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from ellsa_ros.nodes.graph import SIM
from ellsa_ros.nodes.share import config_file
from launch import LaunchDescription


def generate_launch_description():
    arguments = [DeclareLaunchArgument("params_file", default_value=str(config_file("sim.yaml")),
                                       description="ROS 2 params YAML with one section per node")]
    nodes = [Node(package="ellsa_ros", executable=node.executable, name=node.name, output="screen",
                  parameters=[LaunchConfiguration("params_file")], remappings=list(node.remappings))
             for node in SIM]
    return LaunchDescription(arguments + nodes)
