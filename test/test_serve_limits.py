"""The server's limits: sessions at once, requests waiting, idle sessions, policies that cannot be built."""
from __future__ import annotations

import threading
import time

import pytest
from test_serve_faults import RawPeer
from test_serve_session import SPEC, CountingPolicy, make_block

from ellsa_ros.serve import PolicyServer, RemoteConfig, RemotePolicy, RemotePolicyError, ServerConfig
from ellsa_ros.serve.codec import block_to_body
from ellsa_ros.serve.protocol import Envelope, Kind, decode, encode


def test_a_full_server_refuses_another_robot_and_keeps_serving_its_own():
    config = ServerConfig(bind="tcp://127.0.0.1:*", max_sessions=1)
    with PolicyServer(CountingPolicy, SPEC, config) as server:
        first = RemotePolicy(RemoteConfig(server.endpoint, robot="first", timeout_s=5.0))
        assert first.step(make_block(0)).info["seen"] == 1
        second = RemotePolicy(RemoteConfig(server.endpoint, robot="second", timeout_s=5.0))
        with pytest.raises(RemotePolicyError, match="full: the server already serves 1 robots"):
            second.step(make_block(0))
        assert first.step(make_block(1)).info["seen"] == 2
        first.close()
        second.close()


class GatedPolicy(CountingPolicy):
    """Holds each step until the test opens the gate; says when a step has started."""

    def __init__(self, started: threading.Event, gate: threading.Event) -> None:
        super().__init__()
        self.started, self.gate = started, gate

    def step(self, block):
        self.started.set()
        assert self.gate.wait(10.0)
        return super().step(block)


def test_requests_beyond_the_queue_are_answered_busy():
    started, gate = threading.Event(), threading.Event()
    config = ServerConfig(bind="tcp://127.0.0.1:*", max_queued_steps=1)
    with PolicyServer(lambda: GatedPolicy(started, gate), SPEC, config) as server:
        raw = RawPeer(server.endpoint)
        hello = raw.ask(encode(Envelope(Kind.HELLO, {"robot": "eager"}, 1)))

        def send_step(rid: int) -> None:
            raw.sock.send_multipart(encode(Envelope(Kind.STEP, {"block": block_to_body(make_block(0))}, rid,
                                                    hello.session)))

        send_step(2)
        assert started.wait(5.0)          # 2 runs (held at the gate)
        send_step(3)                      # 3 waits in the queue
        send_step(4)                      # 4 finds the queue full
        assert raw.sock.poll(5000)
        busy = decode(raw.sock.recv_multipart(), 1 << 20)
        assert (busy.id, busy.kind, busy.body["code"]) == (4, Kind.ERROR, "busy")
        gate.set()
        answers = [decode(raw.sock.recv_multipart(), 1 << 20) for _ in range(2) if raw.sock.poll(5000)]
        assert [(a.id, a.kind, a.body["info"]["seen"]) for a in answers] == [(2, Kind.DECISION, 1),
                                                                             (3, Kind.DECISION, 2)]
        raw.close()


def test_an_idle_session_is_closed_and_the_robot_gets_a_fresh_one():
    config = ServerConfig(bind="tcp://127.0.0.1:*", session_idle_s=0.2)
    with PolicyServer(CountingPolicy, SPEC, config) as server:
        robot = RemotePolicy(RemoteConfig(server.endpoint, robot="sleepy", timeout_s=5.0))
        assert robot.step(make_block(0)).info["seen"] == 1
        deadline = time.monotonic() + 5.0
        while server.robots() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.robots() == []
        d = robot.step(make_block(1))
        assert (d.info["seen"], d.info["remote"]["new_session"]) == (1, True)
        robot.close()


def test_a_policy_that_cannot_be_built_is_answered_and_leaves_no_session():
    def broken() -> CountingPolicy:
        raise OSError("checkpoint shard 3 is missing")

    with PolicyServer(broken, SPEC, ServerConfig(bind="tcp://127.0.0.1:*")) as server:
        robot = RemotePolicy(RemoteConfig(server.endpoint, robot="arm", timeout_s=5.0))
        with pytest.raises(RemotePolicyError, match="policy not created: OSError: checkpoint shard 3 is missing"):
            robot.step(make_block(0))
        deadline = time.monotonic() + 5.0
        while server.robots() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.robots() == []
        robot.close()
