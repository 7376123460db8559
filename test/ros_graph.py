"""Running real node processes and a probe node for the ROS tests.

Every test module takes a ROS domain of its own from ros-domain-coordinator; node processes
get it through their environment, and the probe (in the test process) through its own
rclpy Context, so tests never hear each other.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node

from ellsa_ros.nodes.dds import configure_dds

TEST_DIR = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent


def ros_env(domain: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               PYTHONPATH=os.pathsep.join(filter(None, [str(TEST_DIR), env.get("PYTHONPATH", "")])),
               PYTHONUNBUFFERED="1", RCUTILS_LOGGING_BUFFERED_STREAM="0")
    return env


def spawn(executable: str, *ros_args: str, domain: int, log: Path, cwd: Path | None = None,
          extra: list[str] | None = None) -> subprocess.Popen:
    """Starts a console script of this environment with `--ros-args ...`; output goes to `log`."""
    cmd = [str(BIN / executable), *(extra or [])]
    if ros_args:
        cmd += ["--ros-args", *ros_args]
    out = open(log, "wb")
    return subprocess.Popen(cmd, env=ros_env(domain), stdout=out, stderr=subprocess.STDOUT, cwd=cwd)


def interrupt(proc: subprocess.Popen, timeout_s: float = 15.0) -> int:
    """Ctrl-C for a child: SIGINT, then its exit code (killed if it does not exit in time)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Polls `condition` until it holds; fails the test naming `what` if it never does."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def messages_from(executable: str, *ros_args: str, msg_type: type, topic: str, qos, count: int, log: Path,
                  what: str) -> list:
    """Runs one node on a domain of its own until a probe has `count` messages from `topic`,
    then Ctrl-C, which the node must survive with exit code 0. Returns the messages."""
    from domain_coordinator import domain_id
    with domain_id() as domain:
        node = spawn(executable, *ros_args, domain=domain, log=log)
        probe = Probe(domain)
        try:
            got = probe.collect(msg_type, topic, qos)
            wait_for(lambda: len(got) >= count, 30.0, what)
        finally:
            probe.close()
            assert interrupt(node) == 0
    return got


class Probe:
    """A node in the test process, on its own Context and executor thread."""

    def __init__(self, domain: int, name: str = "probe") -> None:
        configure_dds()
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain)
        self.node = Node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self.executor.spin, daemon=True)
        self._thread.start()

    def collect(self, msg_type: type, topic: str, qos) -> list:
        got: list = []
        self.node.create_subscription(msg_type, topic, got.append, qos)
        return got

    def call(self, client, request, timeout_s: float = 10.0):
        wait_for(client.service_is_ready, timeout_s, f"service {client.srv_name}")
        future = client.call_async(request)
        wait_for(future.done, timeout_s, f"an answer from {client.srv_name}")
        return future.result()

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.context.try_shutdown()
