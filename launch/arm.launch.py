"""The arm graph: cameras, microphone, policy and speaker against a real arm.

    ros2 launch ellsa_ros arm.launch.py [params_file:=FILE] \
        [joint_states:=/franka/joint_states] [action_chunk:=/cartesian_controller/delta_chunk]

Every node reads its section of the params file (config/arm.yaml by default). The arm's
joint states and its controller's command topic are launch arguments. `ellsa bringup
--config config/arm.yaml` starts the same executables without `ros2 launch`.
"""
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from ellsa_ros.nodes.graph import ARM
from ellsa_ros.nodes.share import config_file
from launch import LaunchDescription


def generate_launch_description():
    arguments = [DeclareLaunchArgument("params_file", default_value=str(config_file("arm.yaml")),
                                       description="ROS 2 params YAML with one section per node")]
    topics = sorted({t for node in ARM for t in node.remappable})
    arguments += [DeclareLaunchArgument(t, default_value=t, description=f"the arm's {t} topic") for t in topics]
    nodes = [Node(package="ellsa_ros", executable=node.executable, name=node.name, output="screen",
                  parameters=[LaunchConfiguration("params_file")],
                  remappings=[*node.remappings, *((t, LaunchConfiguration(t)) for t in node.remappable)])
             for node in ARM]
    return LaunchDescription(arguments + nodes)
