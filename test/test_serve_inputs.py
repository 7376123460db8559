"""What the served model cannot read is refused by name, on real loopback sockets: protocol
versions that are not the integer 1, unknown cameras, images under the model's input size,
non-finite or absurd states; and empty arrays travel instead of breaking the encoder.
"""
from __future__ import annotations

import argparse
from dataclasses import replace
from types import SimpleNamespace

import msgpack
import numpy as np
import pytest
from test_serve_faults import RawPeer
from test_serve_session import SPEC, CountingPolicy, make_block

from ellsa_ros.serve import PolicyServer, PolicySpec, RemoteConfig, RemotePolicy, RemotePolicyError, ServerConfig
from ellsa_ros.serve.codec import STATE_LIMIT, block_to_body
from ellsa_ros.serve.command import spec_for
from ellsa_ros.serve.protocol import EncodeError, Envelope, Kind, decode, encode

STRICT = replace(SPEC, cameras=("agentview", "wrist"), image_size=32, state_dim=8)


@pytest.fixture
def server():
    with PolicyServer(CountingPolicy, STRICT, ServerConfig(bind="tcp://127.0.0.1:*")) as s:
        yield s


@pytest.mark.parametrize("version", [1.0, True, "1", None, 2])
def test_only_the_integer_version_1_is_accepted(server, version):
    raw = RawPeer(server.endpoint)
    ping = {"kind": "ping", "id": 3, "session": "", "t": 0.0, "body": {}}
    reply = raw.ask([msgpack.packb({"v": version, **ping})])
    assert (reply.kind, reply.body["code"]) == (Kind.ERROR, "version"), reply.body
    assert repr(version) in reply.body["message"]
    assert raw.ask([msgpack.packb({"v": 1, **ping})]).kind is Kind.PONG
    raw.close()


def bad_blocks():
    def with_images(**images):
        def edit(b):
            b.images = {**b.images, **images}
            b.image_stamps = {cam: b.t_end for cam in b.images}
        return edit

    def with_state(values):
        def edit(b):
            b.state = np.asarray(values, np.float32)
        return edit

    return [
        ("unknown camera", with_images(gripper_cam=np.zeros((32, 32, 3), np.uint8)), "unknown_camera", "gripper_cam"),
        ("1x1 image", with_images(wrist=np.zeros((1, 1, 3), np.uint8)), "image_too_small", "1x1 px"),
        ("narrow image", with_images(wrist=np.zeros((64, 16, 3), np.uint8)), "image_too_small", "at least 32x32"),
        ("empty image", with_images(wrist=np.zeros((0, 0, 3), np.uint8)), "image_too_small", "0x0 px"),
        ("state 1e30", with_state([1e30] + [0.0] * 7), "bad_state", "state[0] = 1e+30"),
        ("state beyond the bound", with_state([0.0] * 7 + [-2 * STATE_LIMIT]), "bad_state", "state[7]"),
        ("state NaN", with_state([0.0, np.nan] + [0.0] * 6), "bad_state", "NaN or inf at index [1]"),
        ("state inf", with_state([np.inf] * 8), "bad_state", "NaN or inf"),
        ("state of 3 values", with_state([0.0] * 3), "bad_state", "3 values, the model reads 8"),
    ]


@pytest.mark.parametrize("name, edit, code, words", bad_blocks(), ids=[c[0] for c in bad_blocks()])
def test_blocks_the_model_cannot_read_are_refused_by_name_and_the_session_goes_on(server, name, edit, code, words):
    robot = RemotePolicy(RemoteConfig(server.endpoint, robot="arm", timeout_s=5.0))
    assert robot.step(make_block(0)).info["seen"] == 1
    block = make_block(1)
    edit(block)
    with pytest.raises(RemotePolicyError, match=code) as err:
        robot.step(block)
    assert err.value.code == code and words in str(err.value)
    assert robot.step(make_block(2)).info["seen"] == 2, "the refused block never reached the policy"
    robot.close()


def test_a_raw_peer_gets_the_same_named_refusal(server):
    raw = RawPeer(server.endpoint)
    welcome = raw.ask(encode(Envelope(Kind.HELLO, {"robot": "raw"}, 1)))
    body = block_to_body(make_block(0))
    body["state"] = np.full(8, 1e30, np.float32)
    reply = raw.ask(encode(Envelope(Kind.STEP, {"block": body}, 2, welcome.session)))
    assert (reply.id, reply.body["code"]) == (2, "bad_state")
    raw.close()
    assert server.errors["bad_state"] == 1


@pytest.mark.parametrize("shape", [(0,), (0, 3), (0, 0, 3), (4, 0)])
def test_empty_arrays_of_any_rank_travel(shape):
    a = np.zeros(shape, np.float32)
    env = decode(encode(Envelope(Kind.STEP, {"a": a, "b": np.ones(2, np.uint8)})), 1 << 20)
    assert env.body["a"].shape == shape and env.body["a"].dtype == np.float32
    assert env.body["b"].tolist() == [1, 1]


def test_what_cannot_be_encoded_raises_a_named_error():
    with pytest.raises(EncodeError, match="dtype object"):
        encode(Envelope(Kind.STEP, {"a": np.array([None, 1], dtype=object)}))
    with pytest.raises(EncodeError, match="cannot send a complex"):
        encode(Envelope(Kind.STEP, {"a": 1j}))


def test_the_spec_carries_what_the_model_reads_and_older_specs_still_read():
    assert PolicySpec.from_body(STRICT.to_body()) == STRICT
    old = {k: v for k, v in STRICT.to_body().items() if k not in ("cameras", "image_size", "state_dim", "state_limit")}
    assert PolicySpec.from_body(old) == SPEC
    with pytest.raises(ValueError, match="state_limit"):
        replace(SPEC, state_limit=0.0)


def test_ellsa_serve_takes_the_inputs_from_the_model_config():
    policy = SimpleNamespace(block_s=1.0, config=SimpleNamespace(chunk=10, dof=7, cameras=("agentview", "wrist"),
                                                                 image_size=128, state_dim=18))
    args = argparse.Namespace(block_s=None, chunk=None, dof=None, control_hz=None, action_space=None)
    spec = spec_for(policy, args, "model")
    assert (spec.cameras, spec.image_size, spec.state_dim, spec.state_limit) == (("agentview", "wrist"), 128, 18,
                                                                                  STATE_LIMIT)
