"""microphone_node: a sounddevice input or a WAV file at real-time pace -> `audio`.

Publishes std_msgs/Int16MultiArray frames (layout dims `samples`, `channels`; 20 ms at
16 kHz by default) on `audio` with sensor-data QoS, from the audio thread as each frame
completes.
"""
from __future__ import annotations

import sys

import numpy as np
from rclpy.node import Node
from std_msgs.msg import Int16MultiArray

from ellsa_ros.nodes.audio_io import DeviceInput, WavFileSource
from ellsa_ros.nodes.messages import SENSOR_QOS, audio_msg
from ellsa_ros.nodes.params import MicrophoneParams, ParamError, declare
from ellsa_ros.nodes.process import run_node


class MicrophoneNode(Node):
    def __init__(self) -> None:
        super().__init__("microphone")
        self.params: MicrophoneParams = declare(self, MicrophoneParams)
        p = self.params
        self.frame_samples = int(round(p.sample_rate * p.frame_ms / 1000.0))
        self.publisher = self.create_publisher(Int16MultiArray, "audio", SENSOR_QOS)
        self.published = 0
        try:
            if p.source == "file":
                self.source = WavFileSource(p.file, p.sample_rate, self.frame_samples, p.channels,
                                            self.frame_callback, p.loop)
            else:
                self.source = DeviceInput(p.device, p.sample_rate, self.frame_samples, p.channels,
                                          self.frame_callback)
        except (OSError, ValueError) as e:
            raise ParamError("file" if p.source == "file" else "device", str(e)) from None
        self.source.start()
        what = p.file if p.source == "file" else (p.device or "default device")
        self.get_logger().info(f"{what}: {p.sample_rate} Hz, {self.frame_samples} samples x {p.channels} "
                               f"channels per frame -> {self.publisher.topic_name}")

    def frame_callback(self, frame: np.ndarray) -> None:
        """Called on the audio thread with each (samples, channels) int16 frame."""
        self.publisher.publish(audio_msg(frame))
        self.published += 1

    def destroy_node(self) -> None:
        if hasattr(self, "source"):   # absent when a bad parameter stopped the start
            self.source.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return run_node(MicrophoneNode, "microphone", args)


if __name__ == "__main__":
    sys.exit(main())
