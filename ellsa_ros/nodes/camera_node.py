"""camera_node: frames from a camera, a video file, a URL or a test pattern -> `image`.

Publishes sensor_msgs/Image (rgb8) on `image` with sensor-data QoS, stamped at capture.
"""
from __future__ import annotations

import sys

from rclpy.node import Node
from sensor_msgs.msg import Image

from ellsa_ros.nodes.camera_sources import open_source
from ellsa_ros.nodes.messages import SENSOR_QOS, image_msg
from ellsa_ros.nodes.params import CameraParams, ParamError, declare
from ellsa_ros.nodes.process import run_node


class CameraNode(Node):
    def __init__(self) -> None:
        super().__init__("camera")
        self.params: CameraParams = declare(self, CameraParams)
        p = self.params
        try:
            self.source = open_source(p.source, p.width, p.height, p.loop)
        except OSError as e:
            raise ParamError("source", str(e)) from None
        self.publisher = self.create_publisher(Image, "image", SENSOR_QOS)
        self.timer = self.create_timer(1.0 / p.fps, self.capture_callback)
        self.published = 0
        self.get_logger().info(f"{p.source} at {p.width}x{p.height}, {p.fps} fps -> {self.publisher.topic_name}")

    def capture_callback(self) -> None:
        frame = self.source.read()
        if frame is None:
            self.get_logger().warning("the source gave no frame (file ended or device lost)", once=True)
            return
        stamp = self.get_clock().now().to_msg()
        self.publisher.publish(image_msg(frame, stamp, self.params.frame_id))
        self.published += 1

    def destroy_node(self) -> None:
        if hasattr(self, "source"):   # absent when a bad parameter stopped the start
            self.source.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return run_node(CameraNode, "camera", args)


if __name__ == "__main__":
    sys.exit(main())
