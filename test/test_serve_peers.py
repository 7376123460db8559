"""Sessions belong to peers, on real loopback sockets: a live robot name is never taken by
another peer, sessions of peers that vanished are closed, HELLOs are rate-limited, and a
server holds many idle sessions.

Waits are generous ceilings of seconds; nothing here measures how long anything took.
"""
from __future__ import annotations

import socket
import time

import pytest
from test_serve_faults import RawPeer
from test_serve_session import SPEC, CountingPolicy, make_block

from ellsa_ros.cli import main
from ellsa_ros.serve import PolicyServer, RemoteConfig, RemotePolicy, RemotePolicyError, ServerConfig
from ellsa_ros.serve.protocol import Envelope, Kind, encode

CEILING_S = 30.0


def remote(server: PolicyServer, robot: str, **kw) -> RemotePolicy:
    kw.setdefault("timeout_s", 5.0)
    kw.setdefault("hello_timeout_s", 5.0)
    return RemotePolicy(RemoteConfig(server.endpoint, robot=robot, **kw))


def wait_until(condition, ceiling_s: float = CEILING_S) -> bool:
    deadline = time.monotonic() + ceiling_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def hello(robot: str, rid: int = 1) -> list:
    return encode(Envelope(Kind.HELLO, {"robot": robot}, rid))


def test_another_peer_cannot_take_a_live_robot_name_and_the_first_keeps_its_session():
    with PolicyServer(CountingPolicy, SPEC, ServerConfig(bind="tcp://127.0.0.1:*")) as server:
        arm = remote(server, "arm")
        assert [arm.step(make_block(i)).info["seen"] for i in range(2)] == [1, 2]
        raw = RawPeer(server.endpoint)
        reply = raw.ask(hello("arm"))
        assert (reply.kind, reply.body["code"]) == (Kind.ERROR, "session_taken")
        assert "'arm'" in reply.body["message"]
        # A RemotePolicy retries while the name is taken, then gives up naming why.
        impostor = remote(server, "arm", hello_timeout_s=2.0)
        with pytest.raises(RemotePolicyError, match="session_taken"):
            impostor.connect()
        assert [arm.step(make_block(i)).info["seen"] for i in (2, 3)] == [3, 4], "the first session went on"
        assert server.robots() == ["arm"]
        assert server.errors["session_taken"] >= 2
        raw.close()
        impostor.close()
        arm.close()


@pytest.fixture(scope="module")
def two_keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    assert main(["serve", "--gen-keys", str(d)]) == 0
    assert main(["serve", "--gen-keys", str(d), "--robot", "other"]) == 0
    return d


def test_with_curve_the_peer_is_the_key(two_keys):
    config = ServerConfig(bind="tcp://127.0.0.1:*", keys_dir=str(two_keys))
    with PolicyServer(CountingPolicy, SPEC, config) as server:
        arm = remote(server, "arm", keys_dir=str(two_keys))
        assert [arm.step(make_block(i)).info["seen"] for i in range(2)] == [1, 2]
        other_key = remote(server, "arm", keys_dir=str(two_keys), key_name="other", hello_timeout_s=2.0)
        with pytest.raises(RemotePolicyError, match="session_taken"):
            other_key.connect()
        assert arm.step(make_block(2)).info["seen"] == 3
        # The robot restarted: a new connection with the same key is the same peer, and gets a
        # fresh session at once (the old connection is still open here).
        restarted = remote(server, "arm", keys_dir=str(two_keys))
        d = restarted.step(make_block(0))
        assert (d.info["seen"], d.info["remote"]["new_session"]) == (1, True)
        assert server.robots() == ["arm"]
        for r in (arm, other_key, restarted):
            r.close()


class SilentPeer:
    """A ZeroMQ DEALER spoken by hand over TCP (ZMTP 3.1, NULL security): it handshakes, says
    HELLO, then never sends another byte, not even a heartbeat answer: a robot whose host
    vanished and left the connection half open."""

    def __init__(self, endpoint: str, robot: str) -> None:
        host, port = endpoint.removeprefix("tcp://").rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=10.0)
        self.sock.sendall(b"\xff" + bytes(8) + b"\x7f" + b"\x03\x01" + b"NULL".ljust(20, b"\x00") + bytes(32))
        self._read(64)                                       # the server's greeting
        ready = b"\x05READY" + _property(b"Socket-Type", b"DEALER") + _property(b"Identity", b"")
        self.sock.sendall(b"\x04" + bytes([len(ready)]) + ready)
        flags = self._read(1)[0]                             # the server's READY command
        self._read(int.from_bytes(self._read(8 if flags & 0x02 else 1), "big"))
        frames = [bytes(f) for f in hello(robot)]
        for i, f in enumerate(frames):
            more = 0x01 if i < len(frames) - 1 else 0x00
            size = len(f).to_bytes(8, "big") if len(f) > 255 else bytes([len(f)])
            self.sock.sendall(bytes([more | (0x02 if len(f) > 255 else 0)]) + size + f)

    def _read(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            assert chunk, "the server closed the connection during the handshake"
            out += chunk
        return out

    def close(self) -> None:
        self.sock.close()


def _property(name: bytes, value: bytes) -> bytes:
    return bytes([len(name)]) + name + len(value).to_bytes(4, "big") + value


def test_sessions_of_vanished_peers_are_closed_long_before_the_idle_limit():
    config = ServerConfig(bind="tcp://127.0.0.1:*", session_idle_s=3600.0, heartbeat_s=1.0)
    with PolicyServer(CountingPolicy, SPEC, config) as server:
        idle = remote(server, "idle")        # connected, never steps: its ZeroMQ answers heartbeats
        idle.connect()
        # A peer that closes its socket without BYE.
        raw = RawPeer(server.endpoint)
        assert raw.ask(hello("closed")).kind is Kind.WELCOME
        raw.close()
        assert wait_until(lambda: "closed" not in server.robots()), server.robots()
        # A peer that leaves the connection open and goes silent: heartbeats find it.
        silent = SilentPeer(server.endpoint, "silent")
        assert wait_until(lambda: "silent" in server.robots())
        assert wait_until(lambda: "silent" not in server.robots()), server.robots()
        assert server.robots() == ["idle"], "a live idle robot keeps its session"
        assert idle.step(make_block(0)).info["seen"] == 1
        # The name is free again for a new robot.
        again = remote(server, "silent")
        assert again.step(make_block(0)).info["seen"] == 1
        silent.close()
        idle.close()
        again.close()


def test_hellos_beyond_the_rate_limit_are_refused_for_that_peer_only():
    config = ServerConfig(bind="tcp://127.0.0.1:*", hello_per_s=0.01, hello_burst=3)
    with PolicyServer(CountingPolicy, SPEC, config) as server:
        eager = RawPeer(server.endpoint)
        answers = [eager.ask(hello("eager", rid)) for rid in range(1, 5)]
        assert [a.kind for a in answers[:3]] == [Kind.WELCOME] * 3
        assert (answers[3].kind, answers[3].body["code"]) == (Kind.ERROR, "rate_limited")
        calm = remote(server, "calm")
        assert calm.step(make_block(0)).info["seen"] == 1
        assert sorted(server.robots()) == ["calm", "eager"]
        eager.close()
        calm.close()


def test_twenty_idle_sessions_are_held_and_each_keeps_its_own_state():
    with PolicyServer(CountingPolicy, SPEC, ServerConfig(bind="tcp://127.0.0.1:*")) as server:
        robots = [remote(server, f"robot-{k:02d}") for k in range(20)]
        for r in robots:
            r.connect()
        assert server.robots() == [f"robot-{k:02d}" for k in range(20)]
        assert [r.step(make_block(0)).info["seen"] for r in robots] == [1] * 20
        assert robots[7].step(make_block(1)).info["seen"] == 2
        for r in robots:
            r.close()
