"""`Connections`: which transport connection each ROUTER message came on, and which ended.

ZeroMQ hides connections behind routing identities; its socket monitor reports them by file
descriptor (EVENT_ACCEPTED, EVENT_DISCONNECTED), and every received frame knows the
descriptor it came on (ZMQ_SRCFD). A descriptor is reused once closed, so each accepted
connection gets a serial number of its own: a session is bound to that serial, and the
disconnect of its connection (the peer closed, crashed, or stopped answering heartbeats)
closes it, never a later connection that reuses the descriptor.

Order: a connection's DISCONNECTED event is queued before its descriptor is closed, so before
any message can arrive on a reused one. `drain()` after receiving a message and before
acting on it therefore sees every event that precedes the message.
"""
from __future__ import annotations

import itertools

import zmq
from zmq.utils.monitor import recv_monitor_message

EVENTS = zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED
ENDED = 0   # `of()` for a message whose connection ended before the message was handled


class Connections:
    """Owns the ROUTER's monitor socket; called from the server's socket thread only."""

    def __init__(self, router: zmq.Socket) -> None:
        self._router = router
        self.monitor = router.get_monitor_socket(EVENTS)
        self._serial: dict[int, int] = {}     # open descriptor -> its connection's serial
        self._next = itertools.count(1)

    def drain(self) -> list[int]:
        """Reads every pending event; returns the serials of the connections that ended."""
        ended = []
        while self.monitor.poll(0):
            event = recv_monitor_message(self.monitor)
            fd = int(event["value"])
            if event["event"] == zmq.EVENT_ACCEPTED:
                self._serial[fd] = next(self._next)
            elif event["event"] == zmq.EVENT_DISCONNECTED and fd in self._serial:
                ended.append(self._serial.pop(fd))
        return ended

    def of(self, frame: zmq.Frame) -> int | None:
        """The serial (>= 1) of the connection a received frame came on after `drain()`;
        ENDED when that connection is gone already; None where the transport has no
        descriptors (inproc)."""
        try:
            fd = frame.get(zmq.SRCFD)
        except zmq.ZMQError:
            return None
        return self._serial.get(fd, ENDED) if fd >= 0 else None

    def __len__(self) -> int:
        return len(self._serial)

    def close(self) -> None:
        self._router.disable_monitor()
        self.monitor.close()
