"""Faults on real loopback sockets: bad traffic, failing and slow policies, server restarts.

Nothing a client sends may crash the server or touch another robot's session: each test
keeps a well-behaved robot mid-episode and checks that its session count goes on unbroken.
"""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import msgpack
import numpy as np
import pytest
import zmq
from test_serve_session import BLOCK_S, DOF, HZ, SPEC, CountingPolicy, make_block

from ellsa_ros.runtime.actions import ActionLimits
from ellsa_ros.runtime.blocks import Block
from ellsa_ros.runtime.engine import DuplexEngine, EngineConfig
from ellsa_ros.runtime.events import PolicyError
from ellsa_ros.runtime.policy import SteppedWorker
from ellsa_ros.serve import PolicyServer, RemoteConfig, RemotePolicy, RemotePolicyError, ServerConfig, ServerUnreachable
from ellsa_ros.serve.codec import block_to_body
from ellsa_ros.serve.protocol import PROTOCOL_VERSION, Envelope, Kind, decode, encode

MAX_BYTES = 64 * 1024
# The longest a step or a session's opening may wait here: a ceiling on a wait for an answer
# (seconds, so that a loaded machine never trips it), not a measure of how fast one comes.
CEILING_S = 2.0
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def server():
    config = ServerConfig(bind="tcp://127.0.0.1:*", max_message_bytes=MAX_BYTES)
    with PolicyServer(lambda: CountingPolicy(fail_on_block=7), SPEC, config) as s:
        yield s


class RawPeer:
    """A DEALER that sends whatever frames it is given and reads the raw answer."""

    def __init__(self, endpoint: str) -> None:
        self.sock = zmq.Context.instance().socket(zmq.DEALER)
        self.sock.linger = 0
        self.sock.connect(endpoint)

    def ask(self, frames: list, wait_ms: int = 2000) -> Envelope | None:
        self.sock.send_multipart(frames)
        if not self.sock.poll(wait_ms):
            return None
        return decode(self.sock.recv_multipart(), 1 << 20)

    def close(self) -> None:
        self.sock.close()


def header(kind: str = "step", version: int = PROTOCOL_VERSION, **body) -> bytes:
    return msgpack.packb({"v": version, "kind": kind, "id": 5, "session": "", "t": 0.0, "body": body})


def small_block() -> Block:
    b = make_block(0)
    b.audio = b.audio[:100]
    return b


def test_bad_messages_get_named_errors_and_other_sessions_go_on(server):
    robot = RemotePolicy(RemoteConfig(server.endpoint, robot="good", timeout_s=5.0))
    assert robot.step(make_block(0)).info["seen"] == 1
    raw = RawPeer(server.endpoint)
    nd = msgpack.ExtType(1, msgpack.packb([1, "|O", [2]]))
    cases = [
        ([b"\x00garbage\xff"], "malformed", "not valid msgpack"),
        ([msgpack.packb([1, 2, 3])], "malformed", "not a map"),
        ([header(version=99)], "version", "protocol version 99"),
        ([header(kind="launch_missiles")], "unknown_kind", "launch_missiles"),
        ([header(kind="decision")], "unknown_kind", "does not accept 'decision'"),
        ([msgpack.packb({"v": 1, "kind": "step", "id": 1, "body": {"a": nd}}), b"x" * 16], "malformed", "dtype"),
        ([msgpack.packb({"v": 1, "kind": "step", "id": 1, "body": {
            "a": msgpack.ExtType(1, msgpack.packb([1, "<f4", [3]]))}}), b"x" * 16], "malformed", "needs 12 bytes"),
        ([header(), b"unreferenced"], "malformed", "1 array frames sent, 0 referenced"),
        ([msgpack.packb({"v": 1, "kind": "ping", "id": 1, "body": {"x": msgpack.ExtType(42, b"")}})],
         "malformed", "extension type 42"),
        ([header(kind="step", block={})], "no_session", "send hello first"),
        ([header(kind="hello", robot="")], "malformed", "robot name"),
        ([header(kind="hello")], "malformed", "'robot'"),
        ([header(), b"\x00" * (MAX_BYTES + 10)], "too_large", f"max_message_bytes={MAX_BYTES}"),
    ]
    for frames, code, words in cases:
        reply = raw.ask(frames)
        assert reply is not None and reply.kind is Kind.ERROR, frames[0][:40]
        assert reply.body["code"] == code, reply.body
        assert words in reply.body["message"], reply.body
    # A session whose block is bad gets an error for that request and keeps its state.
    hello = raw.ask(encode(Envelope(Kind.HELLO, {"robot": "raw"}, 1)))
    assert hello.kind is Kind.WELCOME
    body = block_to_body(small_block())
    body["images"]["wrist"] = np.zeros((4, 4), np.uint8)
    reply = raw.ask(encode(Envelope(Kind.STEP, {"block": body}, 2, hello.session)))
    assert (reply.body["code"], reply.id) == ("malformed", 2)
    assert "images['wrist']" in reply.body["message"]
    reply = raw.ask(encode(Envelope(Kind.STEP, {"block": block_to_body(small_block())}, 3, hello.session)))
    assert reply.kind is Kind.DECISION and reply.body["info"]["seen"] == 1
    # Another robot's token does not open its session.
    reply = raw.ask(encode(Envelope(Kind.STEP, {"block": block_to_body(small_block())}, 4, "f" * 16)))
    assert reply.body["code"] == "no_session"
    raw.close()
    assert [robot.step(make_block(i)).info["seen"] for i in (1, 2)] == [2, 3]
    assert server.errors["malformed"] >= 8
    robot.close()


def test_oversized_frames_and_raw_tcp_garbage_are_dropped(server):
    robot = RemotePolicy(RemoteConfig(server.endpoint, robot="good", timeout_s=5.0))
    assert robot.step(make_block(0)).info["seen"] == 1
    raw = RawPeer(server.endpoint)
    # Over twice max_message_bytes in one frame: ZeroMQ drops the peer before holding the bytes.
    assert raw.ask([header(), b"\x00" * (3 * MAX_BYTES)], wait_ms=300) is None
    raw.close()
    host, port = server.endpoint.removeprefix("tcp://").rsplit(":", 1)
    for junk in (os.urandom(4096), b"\xff" + b"\x00" * 8 + b"\x7f" + os.urandom(64)):
        with socket.create_connection((host, int(port)), timeout=2.0) as s:
            try:
                s.sendall(junk)
                s.recv(64)
            except (ConnectionResetError, BrokenPipeError, TimeoutError):
                pass                        # ZeroMQ may hang up at once on a bad greeting
    assert [robot.step(make_block(i)).info["seen"] for i in (1, 2)] == [2, 3]
    robot.close()


def test_a_failing_policy_answers_an_error_and_the_session_goes_on(server):
    robot = RemotePolicy(RemoteConfig(server.endpoint, robot="arm", timeout_s=5.0))
    assert robot.step(make_block(6)).info["seen"] == 1
    with pytest.raises(RemotePolicyError, match="policy: RuntimeError: cannot decide block 7"):
        robot.step(make_block(7))
    assert robot.step(make_block(8)).info["seen"] == 3
    robot.close()


class GatedPolicy(CountingPolicy):
    """Holds one block until the test opens the gate: a server that cannot answer in time,
    however fast or slow the machine."""

    def __init__(self, gate: threading.Event, on_block: int) -> None:
        super().__init__()
        self.gate, self.on_block = gate, on_block

    def step(self, block: Block):
        if block.index == self.on_block:
            self.gate.wait(CEILING_S * 10)
        return super().step(block)


def unreachable_within(error: str) -> float:
    """The wait that ServerUnreachable reports, in seconds."""
    found = re.search(r"within (\d+\.\d+) s", error)
    assert found, error
    return float(found.group(1))


def test_a_slow_server_times_out_then_a_fresh_session_answers():
    gate = threading.Event()
    config = ServerConfig(bind="tcp://127.0.0.1:*")
    with PolicyServer(lambda: GatedPolicy(gate, on_block=2), SPEC, config) as server:
        robot = RemotePolicy(RemoteConfig(server.endpoint, robot="arm", timeout_s=CEILING_S))
        try:
            assert [robot.step(make_block(i)).info["seen"] for i in (0, 1)] == [1, 2]
            with pytest.raises(ServerUnreachable, match="no answer from .* to step within") as gave_up:
                robot.step(make_block(2))
            assert 0 < unreachable_within(str(gave_up.value)) <= CEILING_S
            assert not robot.connected
        finally:
            gate.set()
        d = robot.step(make_block(3))
        assert (d.info["seen"], d.info["remote"]["new_session"]) == (1, True)
        assert robot.sessions_opened == 2
        robot.close()


def test_a_server_restarted_between_steps_is_picked_up_within_the_same_step():
    port = free_port()
    spec_server = lambda: PolicyServer(CountingPolicy, SPEC, ServerConfig(bind=f"tcp://127.0.0.1:{port}"))  # noqa: E731
    with spec_server() as first:
        robot = RemotePolicy(RemoteConfig(first.endpoint, robot="arm", timeout_s=5.0))
        assert [robot.step(make_block(i)).info["seen"] for i in (0, 1)] == [1, 2]
    with spec_server():
        d = robot.step(make_block(2))   # NO_SESSION from the new server, HELLO, retry
        assert (d.info["seen"], d.info["remote"]["new_session"]) == (1, True)
    robot.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server_process(port: int) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "test"), str(ROOT)]))
    proc = subprocess.Popen([sys.executable, "-m", "ellsa_ros.cli", "serve", "--policy-class",
                             "test_serve_session:CountingPolicy", "--bind", f"tcp://127.0.0.1:{port}"],
                            env=env, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:           # wait for the "serving" line: the port is bound
        if line.startswith("serving"):
            return proc
    raise AssertionError(f"ellsa serve exited with {proc.wait()}")


class FlatTTS:
    sample_rate = 16000

    def synthesize(self, text: str):
        yield np.zeros(160 * len(text), np.float32)


def test_kill_the_server_mid_episode_the_robot_holds_then_resumes():
    """`ellsa serve` in its own process, killed with SIGKILL mid-episode and started again;
    the engine on a stepped clock with the remote policy behind a 240 ms worker."""
    port = free_port()
    proc = start_server_process(port)
    robot = RemotePolicy(RemoteConfig(f"tcp://127.0.0.1:{port}", robot="arm", timeout_s=CEILING_S,
                                      hello_timeout_s=CEILING_S))
    engine = DuplexEngine(SteppedWorker(robot, latency_s=0.24), ActionLimits.ee_delta(DOF), FlatTTS(),
                          EngineConfig(block_s=BLOCK_S, control_hz=HZ, use_audio=False, state_dim=8))
    errors: list[float] = []
    engine.events.subscribe(lambda e: errors.append((e.t, e.error)) if isinstance(e, PolicyError) else None)
    engine.start(0.0)
    commands = []
    try:
        for k in range(1, 81):           # 4 s of robot time, 20 blocks
            now = k / HZ
            if k == 21:                  # 1.05 s: the server dies
                proc.send_signal(signal.SIGKILL)
                proc.wait()
            if k == 41:                  # 2.05 s: it is back
                proc = start_server_process(port)
            for cam in ("agentview", "wrist"):
                engine.push_image(cam, np.zeros((32, 32, 3), np.uint8), now)
            engine.push_state(np.zeros(8, np.float32), now)
            commands.append((now, engine.tick(now)))
    finally:
        proc.kill()
        proc.wait()
        robot.close()
    moving = [t for t, c in commands if not c.hold]
    assert errors, "the dead server must be reported as policy errors"
    assert "no answer from" in errors[0][1] and 0 < unreachable_within(errors[0][1]) <= CEILING_S
    assert 1.05 < errors[0][0] < 1.05 + 2 * BLOCK_S + 0.24 + 1e-6
    # While the server is away nothing new arrives: the last chunk runs out, then the arm holds.
    last_before = max(t for t in moving if t < 2.05)
    assert last_before <= 1.05 + 0.24 + SPEC.horizon_s + 1e-6   # a late chunk runs whole from its arrival
    assert all(c.hold for t, c in commands if last_before < t < 2.05)
    # Back: a fresh session answers and actions resume.
    assert any(t > 2.05 for t in moving)
    assert robot.sessions_opened == 2
