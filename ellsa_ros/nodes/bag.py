"""A rosbag2 folder with MCAP storage, written from serialized messages.

The recorder subscribes with `raw=True`, so rclpy hands over the CDR bytes it received and
they go to the bag unchanged (no deserialize / serialize round trip). rosbags writes the
folder (metadata.yaml + .mcap) with each topic's message definition, so `ros2 bag`,
Foxglove and `mcap-ros2-support` can read it back.
"""
from __future__ import annotations

import threading
from pathlib import Path

from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore


class BagWriter:
    """Opened at construction, closed by `close()`; `path` must not exist yet."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.exists():
            raise FileExistsError(f"bag folder {self.path} already exists")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._typestore = get_typestore(Stores.ROS2_KILTED)
        self._writer = Writer(self.path, version=9, storage_plugin=StoragePlugin.MCAP)
        self._writer.open()
        self._connections: dict[str, object] = {}
        self._lock = threading.Lock()
        self.counts: dict[str, int] = {}

    def knows(self, msgtype: str) -> bool:
        """Whether the message definition of `msgtype` ('std_msgs/msg/String') is known."""
        return msgtype in self._typestore.fielddefs

    def add_topic(self, topic: str, msgtype: str) -> None:
        """Called once per topic before its first message."""
        with self._lock:
            if topic not in self._connections:
                self._connections[topic] = self._writer.add_connection(topic, msgtype, typestore=self._typestore)
                self.counts[topic] = 0

    def write(self, topic: str, data: bytes, t_ns: int) -> None:
        """One serialized (CDR) message of `topic`, received at `t_ns` nanoseconds."""
        with self._lock:
            if self._writer is None:
                return
            self._writer.write(self._connections[topic], t_ns, data)
            self.counts[topic] += 1

    def close(self) -> None:
        with self._lock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None
