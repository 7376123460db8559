"""CURVE authentication: `ellsa serve --gen-keys`, keyed robots served, unkeyed and unknown ones dropped."""
from __future__ import annotations

import shutil
import socket
import stat
import threading

import pytest
from test_serve_session import SPEC, CountingPolicy, make_block

from ellsa_ros.cli import main
from ellsa_ros.serve import (
    AuthenticationFailed,
    PolicyServer,
    RemoteConfig,
    RemotePolicy,
    ServerConfig,
    ServerUnreachable,
)
from ellsa_ros.serve.keys import is_loopback


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    assert main(["serve", "--gen-keys", str(d)]) == 0
    return d


def test_gen_keys_writes_both_pairs_and_authorizes_the_robot(keys):
    names = sorted(p.relative_to(keys).as_posix() for p in keys.rglob("*") if p.is_file())
    assert names == ["authorized/robot.key", "robot.key", "robot.key_secret", "server.key", "server.key_secret"]
    for secret in ("robot.key_secret", "server.key_secret"):
        assert stat.S_IMODE((keys / secret).stat().st_mode) == 0o600
    assert main(["serve", "--gen-keys", str(keys), "--robot", "arm2"]) == 0
    assert (keys / "authorized" / "arm2.key").exists()
    assert (keys / "server.key_secret").read_bytes() != b""
    with pytest.raises(FileExistsError, match="robot.key_secret exists"):
        main(["serve", "--gen-keys", str(keys)])


def test_a_curve_server_serves_keyed_robots_and_drops_the_others(keys, tmp_path):
    config = ServerConfig(bind="tcp://127.0.0.1:*", keys_dir=str(keys))
    with PolicyServer(CountingPolicy, SPEC, config) as server:
        good = RemotePolicy(RemoteConfig(server.endpoint, robot="good", keys_dir=str(keys), timeout_s=5.0))
        assert good.step(make_block(0)).info["seen"] == 1

        plain = RemotePolicy(RemoteConfig(server.endpoint, robot="plain", hello_timeout_s=1.0))
        with pytest.raises(AuthenticationFailed, match="HANDSHAKE_FAILED"):
            plain.step(make_block(0))
        assert issubclass(AuthenticationFailed, ServerUnreachable), "the engine holds on either"


        # A well-formed key pair that the server never authorized.
        stranger_dir = tmp_path / "stranger"
        assert main(["serve", "--gen-keys", str(stranger_dir)]) == 0
        shutil.copy(keys / "server.key", stranger_dir / "server.key")
        stranger = RemotePolicy(RemoteConfig(server.endpoint, robot="stranger", keys_dir=str(stranger_dir),
                                             hello_timeout_s=1.0))
        with pytest.raises(AuthenticationFailed, match="check the CURVE keys"):
            stranger.step(make_block(0))

        assert [good.step(make_block(i)).info["seen"] for i in (1, 2)] == [2, 3]
        assert server.robots() == ["good"], "unauthenticated peers never reach a session"
        for r in (good, plain, stranger):
            r.close()


def test_off_loopback_needs_keys_on_both_sides(keys):
    with pytest.raises(ValueError, match="requires CURVE keys"):
        ServerConfig(bind="tcp://0.0.0.0:5555")
    with pytest.raises(ValueError, match="requires CURVE keys"):
        ServerConfig(bind="tcp://*:5555")
    with pytest.raises(ValueError, match="in clear"):
        RemoteConfig("tcp://10.0.0.7:5555")
    ServerConfig(bind="tcp://0.0.0.0:5555", keys_dir=str(keys))
    RemoteConfig("tcp://10.0.0.7:5555", keys_dir=str(keys))
    assert main(["serve", "--policy-class", "test_serve_session:CountingPolicy", "--bind", "tcp://0.0.0.0:5555"]) == 2


@pytest.mark.parametrize("endpoint, loopback", [
    ("tcp://127.0.0.1:5555", True), ("tcp://127.3.2.1:1", True), ("tcp://localhost:5555", True),
    ("tcp://[::1]:5555", True), ("ipc:///tmp/ellsa", True), ("tcp://0.0.0.0:5555", False),
    ("tcp://*:5555", False), ("tcp://192.168.1.20:5555", False), ("tcp://gpu-host:5555", False),
    ("tcp://eth0:5555", False),
])
def test_loopback_is_recognised(endpoint, loopback):
    assert is_loopback(endpoint) is loopback


def test_an_unknown_scheme_is_refused():
    with pytest.raises(ValueError, match="not tcp://HOST:PORT"):
        is_loopback("udp://127.0.0.1:5555")


def test_missing_keys_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="server.key_secret is missing"):
        PolicyServer(CountingPolicy, SPEC, ServerConfig(bind="tcp://127.0.0.1:*", keys_dir=str(tmp_path))).start()
    with pytest.raises(FileNotFoundError, match="robot.key_secret is missing"):
        RemotePolicy(RemoteConfig("tcp://127.0.0.1:5555", keys_dir=str(tmp_path)))


class Tap:
    """A plain TCP relay in front of a server that keeps every byte it passes on: what
    someone on the wire between the robot and the server would read."""

    def __init__(self, upstream: str) -> None:
        self.host, port = upstream.removeprefix("tcp://").rsplit(":", 1)
        self.upstream_port = int(port)
        self.seen = bytearray()
        self._lock = threading.Lock()
        self._listener = socket.create_server((self.host, 0))
        self.endpoint = f"tcp://{self.host}:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                robot, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection((self.host, self.upstream_port))
            for a, b in ((robot, server), (server, robot)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                with self._lock:
                    self.seen += data
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                s.close()

    def close(self) -> None:
        self._listener.close()


@pytest.mark.parametrize("keyed", [False, True])
def test_with_keys_nothing_the_robot_sends_travels_in_clear(keys, keyed):
    """The project's sockets use CURVE when given keys: a robot name and an image that cross
    the wire readable without keys are nowhere in the bytes with them."""
    keys_dir = str(keys) if keyed else None
    with PolicyServer(CountingPolicy, SPEC, ServerConfig(bind="tcp://127.0.0.1:*", keys_dir=keys_dir)) as server:
        tap = Tap(server.endpoint)
        robot = RemotePolicy(RemoteConfig(tap.endpoint, robot="robot-name-on-the-wire", keys_dir=keys_dir,
                                          timeout_s=5.0))
        block = make_block(0)
        block.images["wrist"][:] = 77      # 3 kB of one byte value: easy to find in clear
        try:
            assert robot.step(block).info["seen"] == 1
        finally:
            robot.close()
            tap.close()
    wire = bytes(tap.seen)
    assert len(wire) > block.images["wrist"].nbytes       # the block did cross the tap
    readable = (b"robot-name-on-the-wire" in wire, bytes([77]) * 256 in wire)
    assert readable == ((False, False) if keyed else (True, True))
