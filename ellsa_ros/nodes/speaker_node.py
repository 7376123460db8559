"""speaker_node: the robot's voice from `speech_audio` -> a sound device or a WAV file.

Publishes each frame it actually played on `speech_played` (the echo reference: what left
the loudspeaker, at the time it did). Both topics are reliable: speech is never dropped.
"""
from __future__ import annotations

import sys

import numpy as np
from rclpy.node import Node
from std_msgs.msg import Int16MultiArray

from ellsa_ros.nodes.audio_io import DeviceOutput, WavFileSink
from ellsa_ros.nodes.messages import RELIABLE_QOS, audio_array, audio_msg
from ellsa_ros.nodes.params import ParamError, SpeakerParams, declare
from ellsa_ros.nodes.process import run_node
from ellsa_ros.runtime.streams import InputError


class SpeakerNode(Node):
    def __init__(self) -> None:
        super().__init__("speaker")
        self.params: SpeakerParams = declare(self, SpeakerParams)
        p = self.params
        try:
            self.sink = WavFileSink(p.file, p.sample_rate) if p.sink == "file" else \
                DeviceOutput(p.device, p.sample_rate, int(p.sample_rate * 0.02))
        except OSError as e:
            raise ParamError("file" if p.sink == "file" else "device", str(e)) from None
        self.played_pub = self.create_publisher(Int16MultiArray, "speech_played", RELIABLE_QOS)
        self.sink.on_played = self.played_callback
        self.subscription = self.create_subscription(Int16MultiArray, "speech_audio", self.speech_callback,
                                                     RELIABLE_QOS)
        self.frames = 0
        where = p.file if p.sink == "file" else (p.device or "default device")
        self.get_logger().info(f"{self.subscription.topic_name} -> {where}")

    def speech_callback(self, msg: Int16MultiArray) -> None:
        try:
            pcm = audio_array(msg, "speech_audio")
        except InputError as e:
            self.get_logger().warning(f"dropped a speech frame: {e}", throttle_duration_sec=5.0)
            return
        self.sink.play(pcm[:, 0] if pcm.shape[1] == 1 else pcm.mean(axis=1).astype(np.int16))
        self.frames += 1

    def played_callback(self, frame: np.ndarray) -> None:
        """Called by the sink (maybe on the audio thread) with each frame it played."""
        self.played_pub.publish(audio_msg(frame))

    def destroy_node(self) -> None:
        if hasattr(self, "sink"):   # absent when a bad parameter stopped the start
            self.sink.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return run_node(SpeakerNode, "speaker", args)


if __name__ == "__main__":
    sys.exit(main())
