"""`DelayLine`: a ZeroMQ relay that adds network latency between robots and a policy server.

Put it between a RemotePolicy and a PolicyServer to see how the robot holds up at a given
round trip (tests, `ellsa bench serve`, field rehearsal before a long-haul link). Each robot
connection gets its own upstream DEALER, so the server still sees one peer per robot.
`rtt_s` is the added round trip, half on the way up and half on the way down; messages keep
their order.
"""
from __future__ import annotations

import heapq
import itertools
import threading
import time

import zmq


class DelayLine:
    """Listens on `endpoint` (tcp://127.0.0.1:* by default) and relays to `upstream`."""

    def __init__(self, upstream: str, rtt_s: float, bind: str = "tcp://127.0.0.1:*") -> None:
        if rtt_s < 0:
            raise ValueError(f"rtt_s={rtt_s} must be >= 0")
        self.upstream, self.rtt_s = upstream, rtt_s
        self.relayed = 0
        self._ctx = zmq.Context()
        self._front = self._ctx.socket(zmq.ROUTER)
        self._front.linger = 0
        self._front.bind(bind)
        self.endpoint = self._front.getsockopt_string(zmq.LAST_ENDPOINT)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="ellsa-delay-line", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)

    def __enter__(self) -> DelayLine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _loop(self) -> None:
        half = self.rtt_s / 2.0
        backs: dict[bytes, zmq.Socket] = {}     # robot connection -> its upstream socket
        owner: dict[zmq.Socket, bytes] = {}
        due: list[tuple[float, int, bytes, bool, list]] = []   # (time, seq, peer, upward, frames)
        seq = itertools.count()
        poller = zmq.Poller()
        poller.register(self._front, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                wait = 0.1 if not due else max(0.0, due[0][0] - time.monotonic())
                for sock, _ in poller.poll(timeout=min(100, int(wait * 1000) + 1)):
                    now = time.monotonic()
                    if sock is self._front:
                        peer, *frames = sock.recv_multipart()
                        if peer not in backs:
                            back = self._ctx.socket(zmq.DEALER)
                            back.linger = 0
                            back.connect(self.upstream)
                            backs[peer], owner[back] = back, peer
                            poller.register(back, zmq.POLLIN)
                        heapq.heappush(due, (now + half, next(seq), peer, True, frames))
                    else:
                        heapq.heappush(due, (now + half, next(seq), owner[sock], False, sock.recv_multipart()))
                now = time.monotonic()
                while due and due[0][0] <= now:
                    _, _, peer, upward, frames = heapq.heappop(due)
                    self.relayed += 1   # before sending: a reader woken by the message sees the count
                    if upward:
                        backs[peer].send_multipart(frames)
                    else:
                        self._front.send_multipart([peer, *frames])
        finally:
            for back in backs.values():
                back.close()
            self._front.close()
            self._ctx.term()
