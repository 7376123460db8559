"""The policy server on real loopback sockets: episodes, sessions per robot, latency on the robot's clock.

`CountingPolicy` is the served policy (the server is what is under test): its actions follow
a known trajectory of the robot's clock, starting at the block's end, and it counts the blocks
of its own session, so a leak of model state between robots or sessions shows up at once.
"""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from ellsa_ros.runtime.actions import ActionChunk, ActionLimits, ActionQueue, QueueConfig
from ellsa_ros.runtime.blocks import Block
from ellsa_ros.runtime.policy import Decision, SteppedWorker
from ellsa_ros.serve import PolicyServer, PolicySpec, RemoteConfig, RemotePolicy, ServerConfig

BLOCK_S, CHUNK, DOF, HZ = 0.25, 16, 7, 20.0
SPEC = PolicySpec(BLOCK_S, CHUNK, DOF, HZ, model="counting")


def trajectory(t: np.ndarray) -> np.ndarray:
    """(n,) robot-clock seconds -> (n, DOF) actions within the ee-delta limits."""
    return np.stack([0.5 * np.sin(t * (d + 1) * 0.5) for d in range(DOF)], axis=-1).astype(np.float32)


class CountingPolicy:
    block_s, chunk, dof, control_hz = BLOCK_S, CHUNK, DOF, HZ

    def __init__(self, stall_on_block: int | None = None, stall_s: float = 0.0,
                 fail_on_block: int | None = None) -> None:
        self.stall_on_block, self.stall_s, self.fail_on_block = stall_on_block, stall_s, fail_on_block
        self.seen = 0

    def reset(self) -> None:
        self.seen = 0

    def step(self, block: Block) -> Decision:
        self.seen += 1
        if block.index == self.fail_on_block:
            raise RuntimeError(f"cannot decide block {block.index}")
        if block.index == self.stall_on_block:
            time.sleep(self.stall_s)
        t = block.t_end + np.arange(CHUNK) / HZ
        state_sum = 0.0 if block.state is None else float(block.state.sum())
        return Decision(actions=trajectory(t), say=f"block {block.index} #{self.seen}", heard=block.heard,
                        info={"seen": self.seen, "state_sum": state_sum, "audio_n": len(block.audio)})


def make_block(index: int, state_value: float = 0.0, heard: str = "") -> Block:
    t0, t1 = index * BLOCK_S, (index + 1) * BLOCK_S
    rng = np.random.default_rng(index)
    return Block(index=index, t_start=t0, t_end=t1,
                 audio=rng.uniform(-0.1, 0.1, int(16000 * BLOCK_S)).astype(np.float32), sample_rate=16000,
                 images={"agentview": rng.integers(0, 255, (32, 32, 3), dtype=np.uint8),
                         "wrist": rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)},
                 image_stamps={"agentview": t1 - 0.03, "wrist": t1 - 0.02},
                 state=np.full(8, state_value, np.float32), state_stamp=t1 - 0.01, heard=heard,
                 keywords=("stop",) if index == 2 else ())


@pytest.fixture
def server():
    with PolicyServer(CountingPolicy, SPEC, ServerConfig(bind="tcp://127.0.0.1:*")) as s:
        yield s


def remote(server: PolicyServer, robot: str = "arm", **kw) -> RemotePolicy:
    """A client with room to spare (5 s) where timeouts are not what a test is about."""
    kw.setdefault("timeout_s", 5.0)
    return RemotePolicy(RemoteConfig(server.endpoint, robot=robot, hello_timeout_s=5.0, **kw))


def test_handshake_reports_the_served_spec(server):
    client = remote(server, timeout_s=None)
    assert client.connect() == SPEC
    assert client.timeout_s == pytest.approx(2 * BLOCK_S)
    assert server.robots() == ["arm"]
    client.close()


def test_an_episode_through_the_server_equals_the_policy_in_process(server):
    client, local = remote(server), CountingPolicy()
    local.reset()
    for i in range(6):
        block = make_block(i, state_value=0.1 * i, heard="pick up the bowl" if i == 1 else "")
        got, want = client.step(block), local.step(make_block(i, 0.1 * i, "pick up the bowl" if i == 1 else ""))
        np.testing.assert_array_equal(got.actions, want.actions)
        assert (got.say, got.heard, got.reject, got.cancel, got.done) == (want.say, want.heard, None, False, False)
        assert {k: got.info[k] for k in want.info} == want.info
        assert got.info["remote"]["new_session"] is (i == 0)
    client.reset()
    assert client.step(make_block(6)).info["seen"] == 1, "reset must clear the session's history"
    client.close()


def test_robots_have_their_own_sessions_and_state(server):
    robots = {name: remote(server, name) for name in ("left", "right", "mobile")}
    seen: dict[str, list[tuple[int, float]]] = {name: [] for name in robots}

    def drive(name: str, value: float, n: int) -> None:
        for i in range(n):
            d = robots[name].step(make_block(i, state_value=value))
            seen[name].append((d.info["seen"], d.info["state_sum"]))

    threads = [threading.Thread(target=drive, args=(name, v, n))
               for (name, v, n) in (("left", 1.0, 5), ("right", 2.0, 3), ("mobile", 3.0, 4))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen["left"] == [(k, 8.0) for k in range(1, 6)]
    assert seen["right"] == [(k, 16.0) for k in range(1, 4)]
    assert seen["mobile"] == [(k, 24.0) for k in range(1, 5)]
    assert server.robots() == ["left", "mobile", "right"]
    robots["right"].close()
    # BYE is one way: the next message from another robot lets the server have handled it.
    robots["left"].step(make_block(9))
    assert server.robots() == ["left", "mobile"]
    for r in robots.values():
        r.close()


def test_a_robot_that_says_hello_again_gets_a_fresh_session(server):
    from test_serve_faults import RawPeer

    from ellsa_ros.serve.codec import block_to_body
    from ellsa_ros.serve.protocol import Envelope, Kind, encode

    raw = RawPeer(server.endpoint)
    first = raw.ask(encode(Envelope(Kind.HELLO, {"robot": "arm"}, 1)))
    step = {"block": block_to_body(make_block(0))}
    assert raw.ask(encode(Envelope(Kind.STEP, step, 2, first.session))).body["info"]["seen"] == 1
    again = raw.ask(encode(Envelope(Kind.HELLO, {"robot": "arm"}, 3)))     # the same peer: a fresh session
    assert again.kind is Kind.WELCOME and again.session != first.session
    assert raw.ask(encode(Envelope(Kind.STEP, step, 4, first.session))).body["code"] == "no_session"
    assert raw.ask(encode(Envelope(Kind.STEP, step, 5, again.session))).body["info"]["seen"] == 1
    raw.close()                          # gone without a bye: the robot process died
    restarted = remote(server, "arm")    # the robot after a restart: a new peer, once the old one is gone
    d = restarted.step(make_block(0))
    assert (d.info["seen"], d.info["remote"]["new_session"]) == (1, True)
    assert server.robots() == ["arm"]
    restarted.close()


def run_stepped_episode(client: RemotePolicy, latency_s: float, blocks: int) -> dict:
    """The runtime's path on a stepped clock: the worker releases each remote answer
    `latency_s` after its block ended, and the ActionQueue places it at block.t_end (late
    chunks skip what is past: the policy here plans a trajectory in time)."""
    worker = SteppedWorker(client, latency_s=latency_s)
    queue = ActionQueue(ActionLimits.ee_delta(DOF), QueueConfig(hz=HZ, mode="blend", committed=1, late="skip"))
    ticks_per_block = int(round(BLOCK_S * HZ))
    out = {"underruns": 0, "skipped": [], "kept": [], "commands": [], "errors": []}
    started = False
    for k in range(1, blocks * ticks_per_block + 1):
        now = k / HZ
        if k % ticks_per_block == 0:
            worker.submit(make_block(k // ticks_per_block - 1), now)
        for answer in worker.poll(now):
            if answer.decision is None:
                out["errors"].append(answer.error)
                continue
            res = queue.add(ActionChunk(answer.decision.actions, answer.block.t_end, HZ, answer.block.index), now)
            assert res.accepted, res.reason
            out["skipped"].append(res.skipped)
            out["kept"].append(res.kept_committed)
        cmd = queue.tick(now)
        started = started or not cmd.hold
        if started:
            out["underruns"] += int(cmd.hold)
            out["commands"].append((now, cmd))
    return out


# Block 0.25 s, chunk 0.8 s: inference plus latency up to one block fits in the chunk horizon.
# (One step runs at a time, so a latency longer than a block also delays the next answer.)
@pytest.mark.parametrize("latency_s", [0.0, 0.12, 0.24])
def test_latency_shorter_than_the_chunk_keeps_actions_continuous(server, latency_s):
    client = remote(server)
    out = run_stepped_episode(client, latency_s, blocks=8)
    assert out["errors"] == []
    assert out["underruns"] == 0
    # What latency made stale is skipped: the actions meant for ticks before the first tick
    # at which the answer is there.
    assert out["skipped"][0] == int(np.ceil(latency_s * HZ - 1e-6))
    assert all(kept == 1 for kept in out["kept"][1:]), "the committed prefix of the plan must stay"
    # Every command lies on the trajectory at its own tick: chunks were placed on the robot's clock.
    times = np.array([t for t, _ in out["commands"]])
    actions = np.stack([c.action for _, c in out["commands"]])
    np.testing.assert_allclose(actions, trajectory(times), atol=1e-5)
    client.close()


def test_latency_beyond_the_chunk_horizon_underruns_and_holds(server):
    client = remote(server)
    out = run_stepped_episode(client, latency_s=0.6, blocks=8)
    assert out["errors"] == []
    holds = [c for _, c in out["commands"] if c.hold]
    assert out["underruns"] == len(holds) > 0
    assert all(c.action is not None and c.action[:-1].tolist() == [0.0] * (DOF - 1) for c in holds), \
        "an underrun holds: no new motion, the gripper keeps its last command"
    client.close()
