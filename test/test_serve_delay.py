"""Real delays on the link (0–400 ms through a DelayLine) and the client's clock estimates."""
from __future__ import annotations

import re
import time

import numpy as np
import pytest
from test_serve_session import BLOCK_S, SPEC, CountingPolicy, make_block, trajectory

from ellsa_ros.serve import PolicyServer, RemoteConfig, RemotePolicy, ServerConfig, ServerUnreachable
from ellsa_ros.serve.client import LinkClock
from ellsa_ros.serve.delay import DelayLine


@pytest.fixture(scope="module")
def server():
    with PolicyServer(CountingPolicy, SPEC, ServerConfig(bind="tcp://127.0.0.1:*")) as s:
        yield s


@pytest.mark.parametrize("rtt_s", [0.0, 0.24, 0.4])
def test_steps_cross_a_delayed_link_and_the_round_trip_is_measured(server, rtt_s):
    # A ceiling of seconds on each answer, far above the link's 400 ms: the test is about what
    # is measured, never about how fast a loaded machine answers.
    with DelayLine(server.endpoint, rtt_s) as link:
        robot = RemotePolicy(RemoteConfig(link.endpoint, robot=f"arm-{rtt_s}", timeout_s=5.0))
        for i in range(2):
            t0 = time.monotonic()
            d = robot.step(make_block(i))
            elapsed = time.monotonic() - t0
            np.testing.assert_array_equal(d.actions[0], trajectory(np.array([(i + 1) * BLOCK_S]))[0])
            assert d.info["seen"] == i + 1
            remote = d.info["remote"]
            # The link's delay is in the round trip, and the server's own time is not: the round
            # trip plus the server's time lie within the step as this side saw it, whatever the load.
            assert rtt_s <= remote["rtt_s"] and remote["rtt_s"] > 0
            assert 0 <= remote["server_infer_s"] and remote["rtt_s"] + remote["server_infer_s"] <= elapsed
        assert rtt_s <= robot.clock.rtt_s <= max(s.rtt_s for s in robot.clock.samples)
        assert link.relayed >= 6   # hello, welcome and two steps each way
        robot.close()


def test_a_link_slower_than_two_blocks_is_given_up_on(server):
    with DelayLine(server.endpoint, rtt_s=4 * BLOCK_S) as slow:
        far = RemotePolicy(RemoteConfig(slow.endpoint, robot="farther", hello_timeout_s=5.0))
        assert far.connect() == SPEC          # opening a session may take longer than a step
        with pytest.raises(ServerUnreachable, match="to step within") as gave_up:
            far.step(make_block(0))          # a step may not: two 0.25 s blocks, less than the link
        waited = float(re.search(r"within (\d+\.\d+) s", str(gave_up.value)).group(1))
        assert 0 < waited <= 2 * BLOCK_S
        assert not far.connected
        far.close()


def test_clock_offset_is_estimated_against_a_server_clock_five_seconds_ahead():
    ahead = lambda: time.monotonic() + 5.0  # noqa: E731
    with PolicyServer(CountingPolicy, SPEC, ServerConfig(bind="tcp://127.0.0.1:*"), clock=ahead) as server, \
            DelayLine(server.endpoint, rtt_s=0.1) as link:
        robot = RemotePolicy(RemoteConfig(link.endpoint, robot="arm", timeout_s=5.0))
        samples = [robot.ping() for _ in range(3)]
        for s in samples:
            assert s.rtt_s >= 0.1
            # NTP's bound: the error of one sample is at most half its round trip.
            assert abs(s.offset_s - 5.0) <= s.rtt_s / 2 + 1e-3
        assert robot.clock.offset_s == pytest.approx(5.0, abs=robot.clock.rtt_s / 2 + 1e-3)
        robot.close()


def test_link_clock_arithmetic():
    clock = LinkClock(window=3)
    assert (clock.rtt_s, clock.offset_s) == (0.0, 0.0)
    # client sends at 10.0; server (clock +100) receives at 110.05, answers at 110.25; back at 10.35
    s = clock.add(10.0, 110.05, 110.25, 10.35)
    assert s.rtt_s == pytest.approx(0.15) and s.offset_s == pytest.approx(99.975)
    clock.add(20.0, 120.2, 120.3, 20.4)          # rtt 0.3: more queueing
    clock.add(30.0, 130.01, 130.02, 30.03)       # rtt 0.02: the best sample
    assert clock.offset_s == pytest.approx(100.0)
    assert clock.rtt_s == pytest.approx(0.15)
    clock.add(40.0, 140.0, 140.0, 40.5)
    assert len(clock.samples) == 3
