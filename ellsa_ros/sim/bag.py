"""An episode as a rosbag2 recording (MCAP storage), readable by ros2 bag, Foxglove and mcap.

Messages are serialized by rclpy (the ROS 2 wheels), written by `rosbags`. Timestamps are
simulation time in nanoseconds from the start of the episode. Topics:
  /agentview/image, /wrist/image   sensor_msgs/Image rgb8, every frame the episode rendered: both
                                   cameras at the bridge's camera rate (what the robot saw), and
                                   the agentview at the video rate
  /joint_states                    sensor_msgs/JointState, the 18-d proprioception as position,
                                   every control tick
  /audio/heard                     std_msgs/Int16MultiArray, the microphone (dims samples, channels)
  /audio/robot                     std_msgs/Int16MultiArray, the robot's voice
  /events                          std_msgs/String, every engine event as JSON
  /transcript                      std_msgs/String, who said what, as JSON
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np

from ellsa_ros.sim.bridge import EpisodeResult

AUDIO_MESSAGE_S = 0.1    # audio is cut into messages of this length


def write_bag(path: str | Path, result: EpisodeResult, sample_rate: int = 16000) -> Path:
    """Writes `result` as a rosbag2 folder at `path` (which must not exist yet)."""
    from rclpy.serialization import serialize_message
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore
    from sensor_msgs.msg import Image, JointState
    from std_msgs.msg import Int16MultiArray, MultiArrayDimension, String
    with warnings.catch_warnings():
        # Message classes import this on first use; it imports lark, which imports sre_parse
        # (deprecated since Python 3.11): a warning about other code amid the episode's log.
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="lark")
        import rosidl_generator_py  # noqa: F401

    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path} exists; a rosbag2 recording needs a new folder")
    typestore = get_typestore(Stores.ROS2_KILTED)
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        topics = {name: writer.add_connection(name, msgtype, typestore=typestore) for name, msgtype in (
            ("/agentview/image", "sensor_msgs/msg/Image"), ("/wrist/image", "sensor_msgs/msg/Image"),
            ("/joint_states", "sensor_msgs/msg/JointState"), ("/audio/heard", "std_msgs/msg/Int16MultiArray"),
            ("/audio/robot", "std_msgs/msg/Int16MultiArray"), ("/events", "std_msgs/msg/String"),
            ("/transcript", "std_msgs/msg/String"))}

        def put(topic: str, t: float, msg) -> None:
            writer.write(topics[topic], _ns(t), serialize_message(msg))

        for t, images in result.frames:
            for camera in ("agentview", "wrist"):
                if camera in images:
                    put(f"/{camera}/image", t, _image(Image, images[camera], t, camera))
        for t, state in result.states:
            js = JointState()
            js.header.stamp.sec, js.header.stamp.nanosec = divmod(_ns(t), 1_000_000_000)
            js.name = [f"proprio_{i}" for i in range(len(state))]
            js.position = [float(x) for x in state]
            put("/joint_states", t, js)
        for topic, audio in (("/audio/heard", result.heard_audio), ("/audio/robot", result.voice_audio)):
            if audio is None:
                continue
            step = int(AUDIO_MESSAGE_S * sample_rate)
            pcm = (np.clip(audio, -1.0, 1.0) * 32767.0).astype(np.int16)
            for start in range(0, len(pcm), step):
                msg = Int16MultiArray()
                part = pcm[start:start + step]
                msg.layout.dim = [MultiArrayDimension(label="samples", size=len(part), stride=len(part)),
                                  MultiArrayDimension(label="channels", size=1, stride=1)]
                msg.data = part.tolist()
                put(topic, start / sample_rate, msg)
        for e in result.events:
            put("/events", float(e["t"]), String(data=json.dumps(e, default=str)))
        for line in result.transcript:
            put("/transcript", float(line["t"]), String(data=json.dumps(line)))
    return path


def _ns(t: float) -> int:
    return int(round(max(t, 0.0) * 1e9))


def _image(image_type, frame: np.ndarray, t: float, camera: str):
    msg = image_type()
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(_ns(t), 1_000_000_000)
    msg.header.frame_id = camera
    msg.height, msg.width = int(frame.shape[0]), int(frame.shape[1])
    msg.encoding = "rgb8"
    msg.step = int(frame.shape[1] * 3)
    msg.data = np.ascontiguousarray(frame, np.uint8).tobytes()   # bytes, not an array: ~40x faster
    return msg
