"""`RemotePolicy`: the runtime's Policy, answered by a policy server over ZeroMQ.

The robot side of the link (openpi's WebsocketClientPolicy, LeRobot's robot client). A worker
calls `step(block)` as for a policy in process; the block goes out with its capture stamps
and the Decision comes back for that block, so its actions start at `block.t_end` on the
robot's clock and the ActionQueue drops what the round trip made stale.

Faults: no answer within two block lengths (the served model's `block_s`) raises
`ServerUnreachable`; the worker reports it and the engine holds. The socket is then thrown
away (ZeroMQ's "lazy pirate"), and the next `step` connects again and says HELLO, which gives
a fresh session: the model's history on the server is gone, and `Decision.info["remote"]`
says `new_session`. A server that restarted between two steps answers NO_SESSION; the client
then says HELLO at once and retries within the same deadline.

Identity: a RemotePolicy keeps one ZeroMQ routing identity for its lifetime, so the server
knows its reconnects as the same peer (with CURVE the peer is its key). Another peer's live
session under the same robot name is answered `session_taken`: the client says HELLO again
every HELLO_RETRY_S until its deadline (a restarted robot waits there until the server
has seen its old connection end), then raises RemotePolicyError("session_taken").

Clock: every answer carries the server's receive and send stamps; with the client's own send
and receive stamps they give the round trip without server time, and the server clock's
offset (NTP's estimate, from the fastest recent exchange).
"""
from __future__ import annotations

import itertools
import logging
import os
import secrets
import socket
import statistics
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

import zmq
from zmq.utils.monitor import recv_monitor_message

from ..runtime.blocks import Block
from ..runtime.policy import Decision
from .codec import PolicySpec, block_to_body, decision_from_body
from .keys import ROBOT, apply_client, is_loopback, robot_keys
from .protocol import Envelope, ErrorCode, Kind, ProtocolError, decode, encode

log = logging.getLogger("ellsa.serve")

HELLO_RETRY_S = 0.5   # pause between HELLOs while the robot name is another peer's (session_taken)
_HANDSHAKE_FAILED = (zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                     | zmq.EVENT_HANDSHAKE_FAILED_AUTH)


class ServerUnreachable(ConnectionError):
    """No answer in time (dead, restarting or too slow a server, or a cut link)."""


class AuthenticationFailed(ServerUnreachable):
    """The security handshake failed: missing, wrong or unauthorized CURVE keys."""


class RemotePolicyError(RuntimeError):
    """The server answered with an error (the policy raised, or it refused the request)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


@dataclass
class RemoteConfig:
    """endpoint: the server, tcp://HOST:PORT (`policy.remote` in the config).
    robot: this robot's name; one session per name on the server.
    keys_dir / key_name: CURVE keys (`ellsa serve --gen-keys`); required off loopback.
    timeout_s: how long a step may wait; None means two block lengths of the served model.
    hello_timeout_s: how long opening a session may take (the server builds a policy for it;
        while another peer's session holds the robot name, HELLO is retried until then).
    """
    endpoint: str
    robot: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    keys_dir: str | None = None
    key_name: str = ROBOT
    timeout_s: float | None = None
    hello_timeout_s: float = 5.0
    max_message_bytes: int = 8 << 20

    def __post_init__(self) -> None:
        if not is_loopback(self.endpoint) and self.keys_dir is None:
            raise ValueError(f"{self.endpoint} is not loopback: observations would travel in clear; "
                             "set keys_dir to the robot's CURVE keys (`ellsa serve --gen-keys DIR`)")
        if self.timeout_s is not None and not self.timeout_s > 0:
            raise ValueError(f"timeout_s={self.timeout_s} must be > 0 (or None for two blocks)")
        if not self.hello_timeout_s > 0:
            raise ValueError(f"hello_timeout_s={self.hello_timeout_s} must be > 0")


@dataclass
class ClockSample:
    rtt_s: float       # round trip less the server's own time
    offset_s: float    # server clock minus client clock


class LinkClock:
    """Round-trip and clock-offset estimates from the last `window` exchanges."""

    def __init__(self, window: int = 16) -> None:
        self.samples: deque[ClockSample] = deque(maxlen=window)

    def add(self, t_send: float, t_server_recv: float, t_server_send: float, t_recv: float) -> ClockSample:
        """Times in seconds: client send, server receive, server send, client receive."""
        s = ClockSample((t_recv - t_send) - (t_server_send - t_server_recv),
                        ((t_server_recv - t_send) + (t_server_send - t_recv)) / 2.0)
        self.samples.append(s)
        return s

    @property
    def rtt_s(self) -> float:
        """Median recent round trip (network and queues, not inference); 0.0 before any exchange."""
        return statistics.median(s.rtt_s for s in self.samples) if self.samples else 0.0

    @property
    def offset_s(self) -> float:
        """Server clock minus client clock, from the fastest recent exchange (least queueing)."""
        return min(self.samples, key=lambda s: s.rtt_s).offset_s if self.samples else 0.0


class RemotePolicy:
    """A Policy whose `step` runs on a policy server. Thread-safe: calls are serialized."""

    def __init__(self, config: RemoteConfig, now: Callable[[], float] = time.monotonic) -> None:
        """`now`: this side's clock (seconds) for the round-trip and offset estimates."""
        self.config = config
        self.clock = LinkClock()
        self.sessions_opened = 0
        self._now = now
        self._keys = robot_keys(config.keys_dir, config.key_name) if config.keys_dir else None
        self._ctx = zmq.Context.instance()
        self._lock = threading.RLock()
        self._ids = itertools.count(1)
        self._sock: zmq.Socket | None = None
        self._monitor: zmq.Socket | None = None
        self._poller = zmq.Poller()
        self._session = ""
        self._answered = 0   # steps answered in the current session
        self._spec: PolicySpec | None = None
        # ZeroMQ reserves routing identities that start with a zero byte; this one never does.
        self._routing_id = b"ellsa-" + secrets.token_hex(8).encode()

    # --- Policy ----------------------------------------------------------------------------

    def reset(self) -> None:
        """Called before an episode: the session forgets its history. A link that fails here
        is dropped instead, and the next step opens a fresh (equally empty) session."""
        with self._lock:
            if self._sock is None:
                return
            try:
                reply, _ = self._request(Kind.RESET, {}, self._now() + self.timeout_s)
                if reply.kind is not Kind.RESET_OK:
                    self._drop()
            except ServerUnreachable:
                pass

    def step(self, block: Block) -> Decision:
        """Called by the policy worker once per block. Raises ServerUnreachable when no answer
        comes within `timeout_s`, RemotePolicyError when the server answers with an error."""
        with self._lock:
            if self._sock is None:
                self._open()
            deadline = self._now() + self.timeout_s
            body = {"block": block_to_body(block)}
            reply, sample = self._request(Kind.STEP, body, deadline)
            if reply.kind is Kind.ERROR and reply.body.get("code") == ErrorCode.NO_SESSION.value:
                log.warning("server %s lost our session (restarted?): opening a new one", self.config.endpoint)
                self._drop()
                self._open(deadline)
                reply, sample = self._request(Kind.STEP, body, deadline)
            if reply.kind is Kind.ERROR:
                raise RemotePolicyError(str(reply.body.get("code")), str(reply.body.get("message")))
            if reply.kind is not Kind.DECISION:
                raise RemotePolicyError(ErrorCode.MALFORMED.value, f"answer to a step was {reply.kind.value!r}")
            decision = decision_from_body(reply.body, self.spec)
            # new_session: the first answer of a session, so the model had no history for it.
            decision.info["remote"] = {"rtt_s": sample.rtt_s, "server_infer_s": float(reply.body.get("infer_s", 0.0)),
                                       "clock_offset_s": self.clock.offset_s, "new_session": self._answered == 0}
            self._answered += 1
            return decision

    # --- the link --------------------------------------------------------------------------

    @property
    def spec(self) -> PolicySpec:
        """The served model's spec (block length, chunk, action space); connects if needed."""
        with self._lock:
            if self._spec is None:
                self._open()
            return self._spec

    @property
    def timeout_s(self) -> float:
        return self.config.timeout_s if self.config.timeout_s is not None else 2.0 * self.spec.block_s

    @property
    def connected(self) -> bool:
        return self._sock is not None

    def connect(self) -> PolicySpec:
        """Opens a session now (rather than on the first step); returns the served spec."""
        with self._lock:
            if self._sock is None:
                self._open()
            return self._spec

    def ping(self) -> ClockSample:
        """One clock exchange without model work; raises ServerUnreachable."""
        with self._lock:
            if self._sock is None:
                self._open()
            _, sample = self._request(Kind.PING, {}, self._now() + self.timeout_s)
            return sample

    def close(self) -> None:
        """Ends the session (BYE, best effort) and closes the socket."""
        with self._lock:
            if self._sock is not None:
                try:
                    self._sock.send_multipart(encode(Envelope(Kind.BYE, {}, None, self._session, self._now())),
                                              flags=zmq.NOBLOCK)
                except zmq.ZMQError:
                    pass
            self._drop()

    def _open(self, deadline: float | None = None) -> None:
        sock = self._ctx.socket(zmq.DEALER)
        sock.linger = 0
        sock.maxmsgsize = 2 * self.config.max_message_bytes
        if self._keys is not None:
            apply_client(sock, self._keys)
        sock.routing_id = self._routing_id
        self._monitor = sock.get_monitor_socket(_HANDSHAKE_FAILED)
        sock.connect(self.config.endpoint)
        self._poller = zmq.Poller()
        self._poller.register(sock, zmq.POLLIN)
        self._poller.register(self._monitor, zmq.POLLIN)
        self._sock, self._session = sock, ""
        if deadline is None:
            deadline = self._now() + self.config.hello_timeout_s
        reply, _ = self._request(Kind.HELLO, {"robot": self.config.robot}, deadline)
        while (reply.kind is Kind.ERROR and reply.body.get("code") == ErrorCode.SESSION_TAKEN.value
               and self._now() + HELLO_RETRY_S < deadline):
            time.sleep(HELLO_RETRY_S)
            reply, _ = self._request(Kind.HELLO, {"robot": self.config.robot}, deadline)
        if reply.kind is Kind.ERROR:
            self._drop()
            raise RemotePolicyError(str(reply.body.get("code")), str(reply.body.get("message")))
        if reply.kind is not Kind.WELCOME:
            self._drop()
            raise RemotePolicyError(ErrorCode.MALFORMED.value, f"answer to hello was {reply.kind.value!r}")
        spec = PolicySpec.from_body(reply.body.get("spec", {}))
        if self._spec is not None and spec != self._spec:
            log.warning("server %s now serves a different spec: %s", self.config.endpoint, spec)
        self._spec, self._session, self._answered = spec, reply.session, 0
        self.sessions_opened += 1
        log.info("session with %s opened: %s", self.config.endpoint, spec)

    def _request(self, kind: Kind, body: dict, deadline: float) -> tuple[Envelope, ClockSample]:
        """Sends one request and waits for the answer with its id until `deadline`; answers
        to older requests (late ones) are dropped. On timeout the socket is thrown away."""
        rid = next(self._ids)
        frames = encode(Envelope(kind, body, rid, self._session, self._now()))
        t_send = self._now()
        try:
            self._sock.send_multipart(frames, flags=zmq.NOBLOCK, copy=False)
        except zmq.Again:
            self._drop()
            raise ServerUnreachable(f"cannot send to {self.config.endpoint}: send queue full") from None
        while True:
            wait_ms = max(0, int((deadline - self._now()) * 1000))
            ready = dict(self._poller.poll(wait_ms))
            if self._monitor in ready:
                event = recv_monitor_message(self._monitor)
                self._drop()
                raise AuthenticationFailed(f"security handshake with {self.config.endpoint} failed "
                                           f"(event {event['event']!r}): check the CURVE keys on both sides")
            if self._sock not in ready:
                if self._now() < deadline:
                    continue
                self._drop()
                raise ServerUnreachable(f"no answer from {self.config.endpoint} to {kind.value} within "
                                        f"{deadline - t_send:.2f} s")
            frames = self._sock.recv_multipart()   # answers are small: bytes beat zero-copy frames
            t_recv = self._now()
            try:
                reply = decode(frames, self.config.max_message_bytes)
            except ProtocolError as e:
                log.warning("unreadable answer from %s: %s", self.config.endpoint, e)
                continue
            if reply.id != rid:
                continue   # a late answer to a request we already gave up on
            t_server_recv = reply.body.get("t_recv")
            if not isinstance(t_server_recv, (int, float)):
                t_server_recv = reply.t
            sample = self.clock.add(t_send, float(t_server_recv), reply.t, t_recv)
            return reply, sample

    def _drop(self) -> None:
        if self._sock is not None:
            self._sock.disable_monitor()
            self._monitor.close()
            self._sock.close()
        self._sock, self._monitor, self._session = None, None, ""
