"""The model behind the server: sessions share one set of weights and keep their own streaming
state, also when robots step at the same time (real tiny SA-MoE, real loopback sockets)."""
from __future__ import annotations

import argparse
import threading

import numpy as np
import pytest
import torch

from ellsa_ros.model.config import sized
from ellsa_ros.model.fast import FastTokenizer
from ellsa_ros.model.network import EllsaNet
from ellsa_ros.model.policy import ModelPolicy
from ellsa_ros.model.text_tokenizer import TextTokenizer
from ellsa_ros.model.torch_backend import TorchBackend
from ellsa_ros.runtime.blocks import Block
from ellsa_ros.serve import PolicyServer, RemoteConfig, RemotePolicy, ServerConfig
from ellsa_ros.serve.command import spec_for

pytestmark = pytest.mark.usefixtures("one_torch_thread")

EPISODES = {"left": ["pick up the black bowl", "", ""], "right": ["", "open the drawer", ""]}


def tiny_policy() -> ModelPolicy:
    torch.manual_seed(0)
    c = sized("tiny", max_text_tokens=4, max_action_tokens=12)
    return ModelPolicy(TorchBackend(EllsaNet(c).eval()), TextTokenizer(), FastTokenizer(c.chunk, c.dof, c.fast_scale))


def block(i: int, heard: str, seed: int) -> Block:
    rng = np.random.default_rng(100 * seed + i)
    images = {cam: rng.integers(0, 255, (128, 128, 3), dtype=np.uint8) for cam in ("agentview", "wrist")}
    return Block(i, float(i), i + 1.0, np.zeros(16000, np.float32), 16000, images, {c: i + 1.0 for c in images},
                 rng.uniform(-1, 1, 18).astype(np.float32), i + 1.0, heard=heard)


def episode(name: str) -> list[Block]:
    return [block(i, heard, seed=len(name)) for i, heard in enumerate(EPISODES[name])]


def outcome(decisions) -> list[tuple]:
    return [(None if d.actions is None else d.actions.tolist(), d.say, d.reject, d.info["text_ids"])
            for d in decisions]


@pytest.fixture(scope="module")
def base():
    return tiny_policy()


@pytest.fixture(scope="module")
def alone(base):
    """Each episode on a fresh session of its own, one after the other."""
    out = {}
    for name in EPISODES:
        session = base.new_session()
        out[name] = outcome([session.step(b) for b in episode(name)])
    return out


def test_sessions_share_the_weights_and_not_the_state(base, alone):
    left, right = base.new_session(), base.new_session()
    assert left.backend is base.backend and left.text is base.text and left.fast is base.fast
    assert left.cache is not right.cache and left.audio is not right.audio
    got = {"left": [], "right": []}
    for bl, br in zip(episode("left"), episode("right")):     # interleaved, block by block
        got["left"].append(left.step(bl))
        got["right"].append(right.step(br))
    assert {k: outcome(v) for k, v in got.items()} == alone


def test_robots_stepping_at_once_on_the_server_get_what_they_would_in_process(base, alone):
    args = argparse.Namespace(block_s=None, chunk=None, dof=None, control_hz=None, action_space=None)
    spec = spec_for(base, args, "tiny")
    assert (spec.cameras, spec.image_size, spec.state_dim) == (("agentview", "wrist"), 128, 18)
    with PolicyServer(base.new_session, spec, ServerConfig(bind="tcp://127.0.0.1:*")) as server:
        got: dict[str, list] = {}

        def drive(name: str) -> None:
            robot = RemotePolicy(RemoteConfig(server.endpoint, robot=name, timeout_s=30.0, hello_timeout_s=30.0))
            got[name] = [robot.step(b) for b in episode(name)]
            robot.close()

        threads = [threading.Thread(target=drive, args=(name,)) for name in EPISODES]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120.0)
        assert {k: outcome(v) for k, v in got.items()} == alone
