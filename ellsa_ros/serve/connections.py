"""`Connections`: which transport connection each ROUTER message came on, and which ended.

ZeroMQ hides connections behind routing identities; its socket monitor reports them by file
descriptor (EVENT_ACCEPTED, EVENT_DISCONNECTED), and every received frame knows the
descriptor it came on (ZMQ_SRCFD). A descriptor is reused once closed, so each connection
gets a serial number of its own: a session is bound to that serial, and the disconnect of
its connection (the peer closed, crashed, or stopped answering heartbeats) closes it, never
a later connection that reuses the descriptor.

Order: events and messages travel on different pipes, so `drain()` after receiving a
message sees every event that precedes it (libzmq queues a connection's ACCEPTED before its
first message and its DISCONNECTED after its last one, before the descriptor can be reused)
and possibly later ones too: the DISCONNECTED of the very connection a BYE came on, for one,
or of a peer whose last messages still wait in the ROUTER behind other peers' messages. So
`of()` answers for a connection that ended as well (`is_open()` tells), and the caller
closes what an ended connection opened only once the ROUTER has nothing left to read: by
then every message that connection sent was handled. A descriptor without any
event (a connection the monitor did not see accepted) is taken as a new open connection,
and its ACCEPTED, if it comes later, confirms that connection instead of starting another.
"""
from __future__ import annotations

import itertools

import zmq
from zmq.utils.monitor import recv_monitor_message

EVENTS = zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED


class Connections:
    """Owns the ROUTER's monitor socket; called from the server's socket thread only.
    Create it before the ROUTER binds, so that no connection is accepted unseen."""

    def __init__(self, router: zmq.Socket) -> None:
        self._router = router
        self.monitor = router.get_monitor_socket(EVENTS)
        self._open: dict[int, int] = {}      # open descriptor -> its connection's serial
        self._unconfirmed: set[int] = set()  # open descriptors known from a message, not an event
        self._ended: dict[int, int] = {}     # closed descriptor -> serial of its last connection
        self._live: set[int] = set()         # serials of open connections
        self._next = itertools.count(1)

    def drain(self) -> list[int]:
        """Reads every pending event; returns the serials of the connections that ended."""
        ended = []
        while self.monitor.poll(0):
            event = recv_monitor_message(self.monitor)
            fd = int(event["value"])
            if event["event"] == zmq.EVENT_ACCEPTED:
                if fd in self._unconfirmed:
                    self._unconfirmed.discard(fd)    # the connection its messages announced
                    continue
                if fd in self._open:                 # its end was never reported: it has ended
                    ended.append(self._close(fd))
                self._start(fd)
            elif event["event"] == zmq.EVENT_DISCONNECTED and fd in self._open:
                ended.append(self._close(fd))
        return ended

    def of(self, frame: zmq.Frame) -> int | None:
        """The serial (>= 1) of the connection a received frame came on, after `drain()`; it
        may have ended already (see `is_open`). None where the transport has no descriptors
        (inproc)."""
        try:
            fd = frame.get(zmq.SRCFD)
        except zmq.ZMQError:
            return None
        if fd < 0:
            return None
        if fd in self._open:
            return self._open[fd]
        if fd in self._ended:
            # Every connection's ACCEPTED precedes its messages: one on this descriptor after
            # its last reported end would have been drained, so the message is from that end.
            return self._ended[fd]
        self._unconfirmed.add(fd)
        return self._start(fd)

    def is_open(self, serial: int | None) -> bool:
        """False once the connection with this serial has ended (True without descriptors)."""
        return serial is None or serial in self._live

    def __len__(self) -> int:
        return len(self._open)

    def close(self) -> None:
        """Stops the monitor; call before closing the ROUTER."""
        self._router.disable_monitor()
        self.monitor.close()

    def _start(self, fd: int) -> int:
        serial = next(self._next)
        self._open[fd] = serial
        self._live.add(serial)
        self._ended.pop(fd, None)
        return serial

    def _close(self, fd: int) -> int:
        serial = self._open.pop(fd)
        self._unconfirmed.discard(fd)
        self._live.discard(serial)
        self._ended[fd] = serial
        return serial
