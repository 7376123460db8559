"""rclpy nodes: thin adapters between ROS 2 topics and the runtime.

One Node subclass per file (camera, microphone, policy, speaker, recorder). What they hand
off to lives beside them: message conversion (`messages`), parameters (`params`), the node
graph shared by the launch files and `ellsa bringup` (`graph`), the package's share folder
(`share`), input bookkeeping (`inputs`), audio and camera sources and sinks.
rclpy is imported only by the node files, so the rest stays importable without ROS.
"""
