"""The policy server: a ZeroMQ ROUTER that serves one Policy session per robot.

One socket thread reads every message, checks it (size, envelope, kind, session, and a
block against the served PolicySpec), answers protocol errors at once, and hands STEP and
RESET to the robot's session thread; sessions answer through an inproc PULL socket that the
same thread forwards to the ROUTER. So no user code runs on the socket thread, one slow
model does not stall another robot, and a bad message costs its sender an ERROR answer and
nothing else.

Peers and sessions: a session belongs to the peer that opened it, the CURVE client public
key when CURVE is on, else the ZeroMQ routing identity (RemotePolicy keeps one for its
lifetime, across reconnects). A HELLO for a robot whose live session belongs to another
peer is answered `session_taken` and the session goes on; the same peer saying hello again
gets a fresh session. A session ends on BYE, when the connection it was opened on ends
(socket monitor events; ZMTP heartbeats every `heartbeat_s` find peers that vanished
without closing, after 3 x `heartbeat_s` of silence), or after `session_idle_s` without a
request. HELLOs are rate-limited per peer (`hello_per_s`, `hello_burst`: `rate_limited`).

Limits: messages over `max_message_bytes` get a TOO_LARGE answer; a single frame over twice
that makes ZeroMQ drop the connection before the bytes are held (MAXMSGSIZE). Binding a
non-loopback address requires CURVE keys; with keys, peers whose public key is not
authorized fail the handshake and are dropped without an answer.
"""
from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Callable

import zmq
from zmq.auth.thread import ThreadAuthenticator

from ..runtime.policy import Policy
from .codec import PolicySpec, block_from_body, check_block
from .connections import Connections
from .hello_limit import HelloLimit
from .keys import apply_server, is_loopback, server_keys
from .protocol import Envelope, ErrorCode, Kind, ProtocolError, decode, encode
from .session import Request, Session

log = logging.getLogger("ellsa.serve")

CLOSE_TIMEOUT_S = 5.0   # close() waits this long for the socket thread (sessions get 1 s of it)
LATE_MESSAGE_S = 1.0    # longest a session outlives its connection while the ROUTER has messages to read


@dataclass
class ServerConfig:
    """bind: ZeroMQ endpoint; "tcp://127.0.0.1:*" picks a free port (see `PolicyServer.endpoint`).
    keys_dir: CURVE keys from `ellsa serve --gen-keys`; required to bind off loopback.
    max_message_bytes: largest request answered normally (a block with two 224 px images and
        2 s of audio is about 0.45 MB).
    max_sessions: robots served at once (HELLO beyond it: `full`). With a policy factory that
        shares weights (`ModelPolicy.new_session`) a session costs its model state, a thread
        and a socket: 64 fit a 2-core robot-class machine.
    session_idle_s: a session without requests is closed after this.
    max_queued_steps: requests a session may have waiting behind the one running.
    heartbeat_s: ZMTP PING interval; a connection silent for 3 x this is dropped, and the
        session opened on it closed (0 turns heartbeats off: only a closed connection or
        `session_idle_s` ends a session then).
    hello_per_s / hello_burst: HELLOs one peer may send, sustained and at once (`rate_limited`).
    """
    bind: str = "tcp://127.0.0.1:5555"
    keys_dir: str | None = None
    max_message_bytes: int = 8 << 20
    max_sessions: int = 64
    session_idle_s: float = 300.0
    max_queued_steps: int = 2
    heartbeat_s: float = 1.0
    hello_per_s: float = 2.0
    hello_burst: int = 10

    def __post_init__(self) -> None:
        if not is_loopback(self.bind) and self.keys_dir is None:
            raise ValueError(f"binding {self.bind} (not loopback) requires CURVE keys: create them with "
                             "`ellsa serve --gen-keys DIR` and pass --keys DIR")
        if self.max_message_bytes < 1024:
            raise ValueError(f"max_message_bytes={self.max_message_bytes} is too small for any block")
        if self.max_sessions < 1 or self.max_queued_steps < 1 or not self.session_idle_s > 0:
            raise ValueError("max_sessions and max_queued_steps must be >= 1, session_idle_s > 0")
        if self.heartbeat_s < 0:
            raise ValueError(f"heartbeat_s={self.heartbeat_s} must be >= 0 (0: no heartbeats)")
        if not self.hello_per_s > 0 or self.hello_burst < 1:
            raise ValueError(f"hello_per_s={self.hello_per_s} must be > 0 and hello_burst={self.hello_burst} >= 1")


@dataclass
class Incoming:
    """Where a message came from: `route` answers it, `peer` owns sessions, `conn` is the
    connection (None without descriptor events), `t_recv` the server clock on arrival."""
    route: bytes
    peer: bytes
    conn: int | None
    t_recv: float


class PolicyServer:
    """`make_policy()` is called once per session (per robot HELLO), on that session's thread;
    give a factory that shares the weights between sessions (`ModelPolicy.new_session`)."""

    def __init__(self, make_policy: Callable[[], Policy], spec: PolicySpec, config: ServerConfig | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config or ServerConfig()
        self.spec = spec
        self.server_id = secrets.token_hex(6)
        self.errors: Counter[str] = Counter()    # answered errors by ErrorCode value
        self._make_policy, self._clock = make_policy, clock
        self._ctx = zmq.Context()
        self._auth: ThreadAuthenticator | None = None
        self._router: zmq.Socket | None = None
        self._replies: zmq.Socket | None = None
        self._connections: Connections | None = None
        self._hellos = HelloLimit(self.config.hello_per_s, self.config.hello_burst)
        self._reply_endpoint = f"inproc://ellsa-replies-{self.server_id}"
        self._by_route: dict[bytes, Session] = {}
        self._by_robot: dict[str, Session] = {}
        self._threads: list[threading.Thread] = []   # every session thread not yet finished
        self._ended: list[tuple[int, float]] = []   # (connection, when seen ended) to close
        self._stop = threading.Event()
        self._finished = threading.Event()   # set by the socket thread once it has shut down
        self._thread = threading.Thread(target=self._loop, name="ellsa-serve", daemon=True)
        self.endpoint = ""

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> PolicyServer:
        """Binds (raising here if the address is taken or keys are bad) and starts serving."""
        keys = server_keys(self.config.keys_dir) if self.config.keys_dir is not None else None
        router = self._ctx.socket(zmq.ROUTER)
        router.linger = 0
        router.maxmsgsize = 2 * self.config.max_message_bytes
        # The same routing identity on a new connection (a robot that reconnected) takes over
        # the route at once instead of waiting for the old connection to time out.
        router.router_handover = 1
        if self.config.heartbeat_s > 0:
            router.heartbeat_ivl = int(self.config.heartbeat_s * 1000)
            router.heartbeat_timeout = int(3 * self.config.heartbeat_s * 1000)
            router.heartbeat_ttl = int(3 * self.config.heartbeat_s * 1000)
        if keys is not None:
            self._auth = ThreadAuthenticator(self._ctx)
            self._auth.start()
            self._auth.configure_curve(domain="*", location=str(keys.authorized_dir))
            apply_server(router, keys)
        # The monitor starts before the bind: a connection accepted before it would be unknown.
        connections = Connections(router)
        try:
            router.bind(self.config.bind)
        except zmq.ZMQError as e:
            connections.close()
            router.close()
            self._shutdown_context()
            raise OSError(f"cannot bind {self.config.bind}: {e}") from None
        self.endpoint = router.getsockopt_string(zmq.LAST_ENDPOINT)
        self._connections = connections
        self._replies = self._ctx.socket(zmq.PULL)
        self._replies.linger = 0
        self._replies.bind(self._reply_endpoint)
        self._router = router
        self._thread.start()
        log.info("serving %s on %s (server %s)", self.spec.model or "policy", self.endpoint, self.server_id)
        return self

    def serve_forever(self) -> None:
        """Serves until interrupted (KeyboardInterrupt) or closed; starts first if needed."""
        if self._router is None:
            self.start()
        try:
            # An Event, not Thread.join(): a KeyboardInterrupt inside join() makes CPython (3.11,
            # gh-90882) release the running thread's state lock and call it finished, so close()
            # would not wait for it and the process would finalize under a live socket thread.
            while not self._finished.wait(timeout=0.5):
                pass
        finally:
            self.close()

    def close(self) -> None:
        """Stops serving and waits for the socket thread to end; sessions end after their
        current request (waited for up to 1 s in all)."""
        self._stop.set()
        if self._thread.ident is None:
            return   # never started
        self._finished.wait(timeout=CLOSE_TIMEOUT_S)
        # The thread's last step drops its reference to this server: after close() the
        # caller's reference is the last one, so the policy is never freed on the socket
        # thread while the interpreter finalizes (torch aborts the process then).
        self._thread.join(timeout=CLOSE_TIMEOUT_S)

    @property
    def stopped(self) -> bool:
        """True once the socket thread and every session thread have ended. A session whose
        policy was still inside step() when the server closed keeps its thread."""
        if self._thread.ident is None:
            return True   # never started
        return (self._finished.is_set() and not self._thread.is_alive()
                and not any(t.is_alive() for t in self._threads))

    def __enter__(self) -> PolicyServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def robots(self) -> list[str]:
        """The robots with an open session (a snapshot, for logs and tests)."""
        return sorted(self._by_robot)

    # --- the socket thread -----------------------------------------------------------------

    def _loop(self) -> None:
        poller = zmq.Poller()
        poller.register(self._router, zmq.POLLIN)
        poller.register(self._replies, zmq.POLLIN)
        poller.register(self._connections.monitor, zmq.POLLIN)
        next_sweep = self._clock()
        try:
            while not self._stop.is_set():
                ready = dict(poller.poll(timeout=100))
                if self._replies in ready:
                    # Drain every answer first: they are what robots are waiting for.
                    while self._replies.poll(0):
                        self._router.send_multipart(self._replies.recv_multipart())
                if self._router in ready:
                    for _ in range(64):   # bounded, so answers are not starved by a flood
                        if not self._router.poll(0):
                            break
                        frames = self._router.recv_multipart(copy=False)
                        self._received(frames, self._clock())
                if self._connections.monitor in ready:
                    self._note_ended(self._connections.drain())
                self._close_ended()
                if self._clock() >= next_sweep:
                    self._sweep()
                    next_sweep = self._clock() + 0.5
        finally:
            try:
                self._shutdown()
            finally:
                self._finished.set()

    def _received(self, frames: list, t_recv: float) -> None:
        self._note_ended(self._connections.drain())
        self._on_message(frames, t_recv, self._connections.of(frames[0]))

    def _note_ended(self, conns: list[int]) -> None:
        now = self._clock()
        self._ended.extend((conn, now) for conn in conns)

    def _close_ended(self) -> None:
        # A connection's messages are all readable before its DISCONNECTED is, but the ROUTER
        # reads its peers' pipes in turn: a BYE may still wait behind other peers' messages.
        # So the sessions of ended connections close once the ROUTER had nothing left to read
        # after the event was seen (or, under a flood that never lets it empty, a while later).
        if not self._ended:
            return
        if self._router.poll(0) and self._clock() - self._ended[0][1] < LATE_MESSAGE_S:
            return
        ended, self._ended = [conn for conn, _ in self._ended], []
        self._disconnected(ended)

    def _incoming(self, frames: list, t_recv: float, conn: int | None) -> Incoming:
        route = frames[0].bytes
        # The User-Id of a CURVE peer is its public key (z85), set by the authenticator; every
        # frame of a message carries the connection's metadata.
        user = ""
        if self._auth is not None:
            try:
                user = frames[-1].get("User-Id")
            except zmq.ZMQError:   # no metadata: such a message cannot have passed the handshake
                user = ""
        peer = b"curve:" + user.encode() if user else b"route:" + route
        return Incoming(route, peer, conn, t_recv)

    def _on_message(self, frames: list, t_recv: float, conn: int | None) -> None:
        rid = None
        src = Incoming(frames[0].bytes, b"", None, t_recv)
        try:
            src = self._incoming(frames, t_recv, conn)
            env = decode(frames[1:], self.config.max_message_bytes)
            rid = env.id
            self._dispatch(src, env)
        except ProtocolError as e:
            self._error(src.route, rid, e.code, str(e), src.t_recv)
        except Exception as e:  # noqa: BLE001 - one bad message must never stop the server
            log.exception("internal error on a message from %s", src.route.hex())
            self._error(src.route, rid, ErrorCode.INTERNAL, f"{type(e).__name__}: {e}", src.t_recv)

    def _dispatch(self, src: Incoming, env: Envelope) -> None:
        if env.kind is Kind.PING:
            self._send(src.route, Envelope(Kind.PONG, {"t_recv": src.t_recv}, env.id, env.session))
        elif env.kind is Kind.HELLO:
            self._hello(src, env)
        elif env.kind in (Kind.STEP, Kind.RESET, Kind.BYE):
            session = self._by_route.get(src.route)
            if session is None or session.token != env.session or session.peer != src.peer:
                raise ProtocolError(ErrorCode.NO_SESSION, "no session for this connection: send hello first")
            session.last_seen = src.t_recv
            if env.kind is Kind.BYE:
                self._end(session, "bye")
                return
            block = None
            if env.kind is Kind.STEP:
                block = block_from_body(_field(env.body, "block", dict))
                check_block(block, self.spec)
            if not session.offer(Request(env.kind, env.id, src.t_recv, block)):
                raise ProtocolError(ErrorCode.BUSY, f"session {session.robot} already has "
                                                    f"{self.config.max_queued_steps} requests waiting")
        else:
            raise ProtocolError(ErrorCode.UNKNOWN_KIND, f"a server does not accept {env.kind.value!r} messages")

    def _hello(self, src: Incoming, env: Envelope) -> None:
        if not self._hellos.allow(src.peer, src.t_recv):
            raise ProtocolError(ErrorCode.RATE_LIMITED, f"more than {self.config.hello_burst} hellos at "
                                                        f"{self.config.hello_per_s:g}/s from this peer")
        robot = _field(env.body, "robot", str)
        if not 0 < len(robot) <= 128:
            raise ProtocolError(ErrorCode.MALFORMED, "robot name must have 1 to 128 characters")
        if not self._connections.is_open(src.conn):
            log.info("hello for %s from a connection that has ended: ignored", robot)
            return
        owner = self._by_robot.get(robot)
        if owner is not None and owner.peer != src.peer:
            raise ProtocolError(ErrorCode.SESSION_TAKEN,
                                f"robot {robot!r} has a live session opened by another peer; it ends when that "
                                "peer says bye, disconnects or stays idle")
        # The same peer saying hello again (a reset link, a restarted robot with its CURVE key)
        # gets a fresh session: the old state goes.
        for old in {self._by_route.get(src.route), owner} - {None}:
            self._end(old, "replaced by a new hello")
        if len(self._by_robot) >= self.config.max_sessions:
            raise ProtocolError(ErrorCode.FULL, f"the server already serves {self.config.max_sessions} robots")
        session = Session(self._ctx, self._reply_endpoint, src.route, robot, secrets.token_hex(8),
                          self._make_policy, self.spec, self.server_id, self._clock,
                          Request(Kind.HELLO, env.id, src.t_recv), self.config.max_queued_steps, src.peer, src.conn)
        self._by_route[src.route] = session
        self._by_robot[robot] = session
        self._threads.append(session.thread)
        log.info("session for %s opened (%d robots)", robot, len(self._by_robot))

    def _disconnected(self, conns: list[int]) -> None:
        for conn in conns:
            for s in [s for s in self._by_robot.values() if s.conn == conn]:
                self._end(s, "its connection ended")

    def _end(self, session: Session, why: str) -> None:
        session.close()
        if self._by_route.get(session.routing_id) is session:
            del self._by_route[session.routing_id]
        if self._by_robot.get(session.robot) is session:
            del self._by_robot[session.robot]
        log.info("session for %s closed: %s", session.robot, why)

    def _sweep(self) -> None:
        now = self._clock()
        self._threads = [t for t in self._threads if t.is_alive()]
        for s in list(self._by_robot.values()):
            if not s.thread.is_alive():
                self._end(s, "its policy could not be created")
            elif now - s.last_seen > self.config.session_idle_s:
                self._end(s, f"idle for {now - s.last_seen:.0f} s")
        self._hellos.forget_idle(now)

    def _error(self, peer: bytes, rid: int | None, code: ErrorCode, message: str, t_recv: float) -> None:
        self.errors[code.value] += 1
        log.info("error %s to %s: %s", code.value, peer.hex(), message)
        self._send(peer, Envelope(Kind.ERROR, {"code": code.value, "message": message, "t_recv": t_recv}, rid))

    def _send(self, peer: bytes, env: Envelope) -> None:
        env.t = self._clock()
        self._router.send_multipart([peer, *encode(env)])

    def _shutdown(self) -> None:
        for s in list(self._by_robot.values()):
            self._end(s, "server stopping")
        # Sessions finish while the reply socket is open: a last answer pushed to a closed
        # PULL would block its session thread until the context ends.
        deadline = time.monotonic() + 1.0
        for t in self._threads:
            t.join(timeout=max(0.0, deadline - time.monotonic()))
        self._connections.close()   # the monitor first: it watches the router
        self._router.close()
        self._replies.close()
        if any(t.is_alive() for t in self._threads):
            # A policy still inside step() holds its socket; the context dies with the process.
            log.warning("a session did not finish its request; leaving its context open")
            if self._auth is not None:
                self._auth.stop()
            return
        self._shutdown_context()

    def _shutdown_context(self) -> None:
        if self._auth is not None:
            self._auth.stop()
            self._auth = None
        self._ctx.term()


def _field(body: dict, key: str, kind: type) -> object:
    v = body.get(key)
    if not isinstance(v, kind):
        raise ProtocolError(ErrorCode.MALFORMED, f"body field {key!r} must be a {kind.__name__}")
    return v
