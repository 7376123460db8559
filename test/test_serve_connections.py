"""`Connections` on real loopback sockets, in the orders in which monitor events and messages
can reach the server's socket thread: events and messages travel on different pipes.

Waits are generous ceilings of seconds; nothing here measures how long anything took.
"""
from __future__ import annotations

import time

import zmq
from test_serve_faults import RawPeer
from test_serve_peers import hello, wait_until
from test_serve_session import SPEC, CountingPolicy

from ellsa_ros.serve import PolicyServer, ServerConfig
from ellsa_ros.serve.connections import Connections
from ellsa_ros.serve.protocol import Envelope, Kind, encode

CEILING_MS = 10_000


def router() -> zmq.Socket:
    sock = zmq.Context.instance().socket(zmq.ROUTER)
    sock.linger = 0
    return sock


def dealer(endpoint: str) -> zmq.Socket:
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.linger = 0
    sock.connect(endpoint)
    return sock


def receive(sock: zmq.Socket) -> list:
    assert sock.poll(CEILING_MS), "no message within the ceiling"
    return sock.recv_multipart(copy=False)


def test_a_message_drained_together_with_the_end_of_its_connection_keeps_that_connection():
    rt = router()
    conns = Connections(rt)
    rt.bind("tcp://127.0.0.1:*")
    peer = dealer(rt.getsockopt_string(zmq.LAST_ENDPOINT))
    peer.send(b"hello")
    first = receive(rt)
    assert conns.drain() == []
    serial = conns.of(first[0])
    assert serial is not None and conns.is_open(serial)
    # The peer's last message and then its close: the DISCONNECTED event is pending before
    # the message is read, which is how a BYE reaches the server when the robot closes.
    peer.send(b"bye")
    peer.close()
    assert conns.monitor.poll(CEILING_MS), "the disconnect was not reported"
    last = receive(rt)
    assert conns.drain() == [serial]
    assert conns.of(last[0]) == serial, "the message is from the connection that just ended"
    assert not conns.is_open(serial)
    conns.close()
    rt.close()


def test_a_connection_accepted_before_the_monitor_saw_it_is_served_as_a_new_one_and_its_end_is_seen():
    rt = router()
    rt.bind("tcp://127.0.0.1:*")
    endpoint = rt.getsockopt_string(zmq.LAST_ENDPOINT)
    early = dealer(endpoint)
    early.send(b"hello")
    frames = receive(rt)
    conns = Connections(rt)          # the ACCEPTED of `early` happened before: it never comes
    assert conns.drain() == []
    serial = conns.of(frames[0])
    assert serial is not None and conns.is_open(serial), "an unknown open descriptor is a new connection"
    assert conns.of(receive_after(early, rt, b"step")[0]) == serial
    # A later connection is reported as usual and gets a serial of its own.
    late = dealer(endpoint)
    late.send(b"hello")
    frames = receive(rt)
    assert conns.drain() == []
    other = conns.of(frames[0])
    assert other is not None and other != serial and conns.is_open(other)
    early.close()
    assert wait_for_end(conns) == [serial], "the end of the unannounced connection is seen"
    assert conns.is_open(other)
    late.close()
    assert wait_for_end(conns) == [other]
    conns.close()
    rt.close()


def receive_after(peer: zmq.Socket, rt: zmq.Socket, payload: bytes) -> list:
    peer.send(payload)
    return receive(rt)


def wait_for_end(conns: Connections) -> list[int]:
    deadline = time.monotonic() + CEILING_MS / 1000
    ended: list[int] = []
    while not ended and time.monotonic() < deadline:
        if conns.monitor.poll(100):
            ended = conns.drain()
    return ended


def test_robots_that_say_bye_and_close_at_once_end_their_sessions_by_bye_without_errors():
    rounds = 40
    with PolicyServer(CountingPolicy, SPEC, ServerConfig(bind="tcp://127.0.0.1:*")) as server:
        for k in range(rounds):
            raw = RawPeer(server.endpoint)
            welcome = raw.ask(hello(f"quick-{k}"))
            assert welcome is not None and welcome.kind is Kind.WELCOME
            raw.sock.send_multipart(encode(Envelope(Kind.BYE, {}, None, welcome.session)))
            raw.close()
        assert wait_until(lambda: server.robots() == []), server.robots()
        assert server.errors["no_session"] == 0, "a BYE was handled after its connection's end"
