"""Stopping the policy server with a signal while a robot's request is running: when
`serve_forever()` gives the KeyboardInterrupt back, every thread of the server has ended,
so the process can exit without a server thread freeing the policy during interpreter
finalization (which aborts a process holding torch tensors).

Waits are generous ceilings of seconds; nothing here measures how long anything took.
"""
from __future__ import annotations

import signal
import threading
import time

import pytest
from test_serve_session import SPEC, CountingPolicy, make_block

from ellsa_ros.serve import PolicyServer, RemoteConfig, RemotePolicy, ServerConfig
from ellsa_ros.serve.client import ServerUnreachable

CEILING_S = 30.0


class SlowPolicy(CountingPolicy):
    """Says when a step began, then takes a while: the server is stopped during that step."""

    stepping = threading.Event()

    def step(self, block):
        SlowPolicy.stepping.set()
        time.sleep(0.5)
        return super().step(block)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def test_an_interrupt_during_a_request_returns_only_after_every_server_thread_ended():
    SlowPolicy.stepping.clear()
    server = PolicyServer(SlowPolicy, SPEC, ServerConfig(bind="tcp://127.0.0.1:*")).start()
    robot = RemotePolicy(RemoteConfig(server.endpoint, robot="arm", timeout_s=5.0, hello_timeout_s=5.0))
    outcome: list[object] = []

    def drive() -> None:
        try:
            outcome.append(robot.step(make_block(0)))
        except ServerUnreachable as e:   # the server stopped before answering
            outcome.append(e)

    def interrupt_main() -> None:
        if SlowPolicy.stepping.wait(CEILING_S):
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)

    previous = signal.signal(signal.SIGINT, _raise_interrupt)
    driver = threading.Thread(target=drive)
    signaller = threading.Thread(target=interrupt_main)
    try:
        driver.start()
        signaller.start()
        with pytest.raises(KeyboardInterrupt):
            server.serve_forever()
        alive = [t.name for t in threading.enumerate() if t.name.startswith("ellsa-")]
        assert alive == [], f"server threads still running after serve_forever returned: {alive}"
        assert server.stopped
    finally:
        signal.signal(signal.SIGINT, previous)
        server.close()
        signaller.join(CEILING_S)
        driver.join(CEILING_S)
        robot.close()
    assert SlowPolicy.stepping.is_set() and len(outcome) == 1
