"""recorder_node: every runtime topic (or the ones named) -> a rosbag2 folder with MCAP.

Looks for new topics every `discover_period_s` and subscribes to each with raw=True once it
has a publisher; the QoS follows the publishers (best effort if any publisher is, so sensor
streams match). A subscription is not yet a stream: discovery between two processes can lag
by seconds, and a publisher matches the new subscription on its own schedule, so the log says
"first message on TOPIC" when the first message of each topic is in the bag. Ctrl-C writes the
messages that had already arrived, not yet handed to a callback, before the bag is closed.
"""
from __future__ import annotations

import importlib
import sys
import time

from rclpy.node import Node
from rclpy.qos import QoSHistoryPolicy, QoSProfile, QoSReliabilityPolicy

from ellsa_ros.nodes.bag import BagWriter
from ellsa_ros.nodes.params import ParamError, RecorderParams, declare
from ellsa_ros.nodes.process import run_node

ROS_OWN_TOPICS = ("/rosout", "/parameter_events")


def message_class(msgtype: str) -> type:
    package, kind, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{package}.{kind}"), name)


class RecorderNode(Node):
    def __init__(self) -> None:
        super().__init__("recorder")
        self.params: RecorderParams = declare(self, RecorderParams)
        p = self.params
        output = p.output or time.strftime("bags/ellsa_%Y%m%d_%H%M%S")
        try:
            self.bag = BagWriter(output)
        except OSError as e:
            raise ParamError("output", str(e)) from None
        self.wanted = {self.resolve_topic_name(t) for t in p.topics}
        self.skipped: set[str] = set()
        self.timer = self.create_timer(p.discover_period_s, self.discover_callback)
        self.get_logger().info(f"recording {sorted(self.wanted) or 'every topic'} -> {self.bag.path}")
        self.discover_callback()

    def discover_callback(self) -> None:
        for topic, types in self.get_topic_names_and_types():
            if topic in self.bag.counts or topic in self.skipped or topic in ROS_OWN_TOPICS:
                continue
            if self.wanted and topic not in self.wanted:
                continue
            if not self.count_publishers(topic):
                # Only subscribers so far: the QoS to match is the publishers', so wait for one
                # (a reliable subscription never hears a best-effort camera that appears later).
                continue
            if len(types) != 1 or not self.bag.knows(types[0]):
                self.skipped.add(topic)
                self.get_logger().warning(f"not recording {topic}: type {types} is unknown or ambiguous")
                continue
            self.bag.add_topic(topic, types[0])
            self.create_subscription(message_class(types[0]), topic,
                                     lambda data, topic=topic: self.message_callback(topic, data),
                                     self.qos_for(topic), raw=True)
            self.get_logger().info(f"recording {topic} ({types[0]})")

    def qos_for(self, topic: str) -> QoSProfile:
        best_effort = any(i.qos_profile.reliability == QoSReliabilityPolicy.BEST_EFFORT
                          for i in self.get_publishers_info_by_topic(topic))
        return QoSProfile(history=QoSHistoryPolicy.KEEP_LAST, depth=100,
                          reliability=QoSReliabilityPolicy.BEST_EFFORT if best_effort
                          else QoSReliabilityPolicy.RELIABLE)

    def message_callback(self, topic: str, data: bytes) -> None:
        first = self.bag.counts[topic] == 0
        self.bag.write(topic, data, self.get_clock().now().nanoseconds)
        if first:
            self.get_logger().info(f"first message on {topic}")

    def drain(self) -> None:
        """Writes what the subscriptions hold: Ctrl-C ends the spin between two callbacks, with
        messages received and not yet taken. At most one queue's worth each, so that a publisher
        that keeps sending cannot hold the shutdown."""
        for sub in list(self.subscriptions):
            with sub.handle:
                for _ in range(sub.qos_profile.depth):
                    taken = sub.handle.take_message(sub.msg_type, sub.raw)
                    if taken is None:
                        break
                    sub.callback(taken[0])

    def destroy_node(self) -> None:
        if not hasattr(self, "bag"):   # a bad parameter stopped the start
            return super().destroy_node()
        self.drain()
        self.bag.close()
        counts = ", ".join(f"{t}: {n}" for t, n in sorted(self.bag.counts.items()))
        self.get_logger().info(f"wrote {self.bag.path} ({counts or 'no messages'})")
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    return run_node(RecorderNode, "recorder", args, last_words=True)   # it drains its subscriptions at the end


if __name__ == "__main__":
    sys.exit(main())
