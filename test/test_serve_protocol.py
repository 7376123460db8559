"""The wire format: envelopes with raw numpy frames, Block/Decision bodies, and what decoding refuses."""
from __future__ import annotations

import re

import msgpack
import numpy as np
import pytest
from test_serve_session import SPEC, make_block

from ellsa_ros.runtime.policy import Decision
from ellsa_ros.serve.codec import PolicySpec, block_from_body, block_to_body, decision_from_body, decision_to_body
from ellsa_ros.serve.protocol import ARRAY_EXT, MAX_FRAMES, Envelope, Kind, ProtocolError, decode, encode


def roundtrip(env: Envelope, max_bytes: int = 1 << 20) -> Envelope:
    return decode([bytes(f) for f in encode(env)], max_bytes)


def test_arrays_travel_as_their_own_frames_and_come_back_equal_and_writable():
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    b = np.arange(6, dtype=np.uint8)[::2]          # not contiguous
    frames = encode(Envelope(Kind.STEP, {"x": {"a": a, "list": [b, np.int64(3)]}}, 7, "tok", 1.5))
    assert len(frames) == 3 and bytes(frames[1]) == a.tobytes()
    env = decode(frames, 1 << 20)
    assert (env.kind, env.id, env.session, env.t) == (Kind.STEP, 7, "tok", 1.5)
    np.testing.assert_array_equal(env.body["x"]["a"], a)
    np.testing.assert_array_equal(env.body["x"]["list"][0], b)
    assert env.body["x"]["list"][1] == 3
    env.body["x"]["a"][0, 0] = 99.0                # the receiver owns its arrays


def test_a_block_comes_back_field_for_field():
    block = make_block(2, state_value=0.5, heard="put the bowl on the plate")
    block.utterances = [np.ones(320, np.float32)]
    block.said, block.interrupted, block.stale, block.dropped_blocks = "okay", True, ("camera",), 1
    got = block_from_body(roundtrip(Envelope(Kind.STEP, {"b": block_to_body(block)})).body["b"])
    for name in ("index", "t_start", "t_end", "sample_rate", "image_stamps", "state_stamp", "heard", "user_speaking",
                 "interrupted", "keywords", "said", "robot_speaking", "acting", "stale", "dropped_blocks"):
        assert getattr(got, name) == getattr(block, name), name
    np.testing.assert_array_equal(got.audio, block.audio)
    np.testing.assert_array_equal(got.state, block.state)
    assert got.images.keys() == block.images.keys()
    for cam in block.images:
        np.testing.assert_array_equal(got.images[cam], block.images[cam])
    np.testing.assert_array_equal(got.utterances[0], block.utterances[0])


def test_a_decision_comes_back_and_is_checked_against_the_spec():
    d = Decision(actions=np.full((4, 7), 0.25, np.float32), say="on it", reject=None, cancel=False, done=True,
                 heard="pick it up", info={"p": np.float32(0.5), "obj": object(), "nested": {"k": (1, 2)}})
    got = decision_from_body(roundtrip(Envelope(Kind.DECISION, decision_to_body(d))).body, SPEC)
    np.testing.assert_array_equal(got.actions, d.actions)
    assert (got.say, got.reject, got.cancel, got.done, got.heard) == ("on it", None, False, True, "pick it up")
    assert got.info["p"] == 0.5 and got.info["obj"].startswith("<object") and got.info["nested"] == {"k": [1, 2]}
    noop = decision_from_body(roundtrip(Envelope(Kind.DECISION, decision_to_body(Decision(reject="no")))).body, SPEC)
    assert noop.actions is None and noop.reject == "no"
    wrong = decision_to_body(Decision(actions=np.zeros((4, 6), np.float32)))
    with pytest.raises(ProtocolError, match=r"actions \(4, 6\), expected \(n >= 1, 7\)"):
        decision_from_body(roundtrip(Envelope(Kind.DECISION, wrong)).body, SPEC)
    nan = decision_to_body(Decision(actions=np.full((2, 7), np.nan, np.float32)))
    with pytest.raises(ProtocolError, match="NaN"):
        decision_from_body(roundtrip(Envelope(Kind.DECISION, nan)).body, SPEC)


def bad_block(**changes) -> dict:
    body = block_to_body(make_block(0))
    body.update(changes)
    return roundtrip(Envelope(Kind.STEP, {"b": body})).body["b"]


@pytest.mark.parametrize("changes, words", [
    ({"audio": np.zeros(10, np.int16)}, "audio is int16"),
    ({"audio": np.array([0.0, np.inf], np.float32)}, "audio contains NaN or inf"),
    ({"images": {"wrist": np.zeros((8, 8, 4), np.uint8)}, "image_stamps": {"wrist": 0.0}}, "not (H, W, 3) uint8"),
    ({"images": {"wrist": np.zeros((8, 8, 3), np.uint8)}, "image_stamps": {}}, "no number for camera 'wrist'"),
    ({"state": np.zeros((2, 2), np.float32)}, "state is float32(2, 2)"),
    ({"index": True}, "'index' is a bool"),
    ({"heard": 3}, "'heard' is a int"),
    ({"keywords": ["stop", 1]}, "list of strings"),
    ({"t_start": 2.0, "t_end": 1.0}, "not in order"),
    ({"utterances": [np.zeros(3, np.float64), "x"]}, "utterances[1]"),
])
def test_a_bad_block_is_refused_with_the_field_named(changes, words):
    with pytest.raises(ProtocolError, match=re.escape(words)):
        block_from_body(bad_block(**changes))


def test_a_missing_field_is_named():
    body = bad_block()
    del body["sample_rate"]
    with pytest.raises(ProtocolError, match="'sample_rate' is missing"):
        block_from_body(body)


def test_decoding_refuses_what_it_cannot_trust():
    def frames(header: dict, *bufs: bytes) -> list[bytes]:
        return [msgpack.packb(header), *bufs]

    ok = {"v": 1, "kind": "ping", "id": 1, "session": "", "t": 0.0, "body": {}}
    assert decode(frames(ok), 1024).kind is Kind.PING
    ext = lambda *d: msgpack.ExtType(ARRAY_EXT, msgpack.packb(list(d)))  # noqa: E731
    cases = [
        ([], "empty message"),
        ([b"\x00"] * (MAX_FRAMES + 1), "frames, at most"),
        (frames({**ok, "id": True}), "request id must be an int"),
        (frames({**ok, "id": "7"}), "request id must be an int"),
        (frames({**ok, "t": "now"}), "t must be a number"),
        (frames({**ok, "body": [1]}), "body is a list"),
        (frames({**ok, "body": {"a": ext(1, "<f8", [2])}}, b"\x00" * 8), "needs 16 bytes"),
        (frames({**ok, "body": {"a": ext(2, "<f4", [1])}}, b"\x00" * 4), "frame 2, which is missing"),
        (frames({**ok, "body": {"a": ext(1, "<f4", [1]), "b": ext(1, "<f4", [1])}}, b"\x00" * 4), "reused"),
        (frames({**ok, "body": {"a": ext(1, "S4", [1])}}, b"\x00" * 4), "not a plain"),
        (frames({**ok, "body": {"a": ext(1, "(2,)f4", [1])}}, b"\x00" * 8), "not a plain"),
        (frames({**ok, "body": {"a": ext(1, "no such dtype", [1])}}, b"\x00" * 4), "not a plain"),
        (frames({**ok, "body": {"a": ext(1, "<f4", [-1])}}, b"\x00" * 4), "list of up to 8 sizes"),
        (frames({**ok, "body": {"a": ext(1, "<f4", [1 << 62, 1 << 62])}}, b"\x00" * 4), "needs"),
        (frames({**ok, "body": {"a": msgpack.ExtType(ARRAY_EXT, b"\xc1")}}), "not [index, dtype, shape]"),
        ([msgpack.packb(ok)[:-3]], "not valid msgpack"),
        ([msgpack.packb(ok) + b"\x00"], "not valid msgpack"),
        ([b"\x80" * 5000], "not valid msgpack"),
    ]
    for fr, words in cases:
        with pytest.raises(ProtocolError, match=re.escape(words)):
            decode(fr, 1 << 20)
    with pytest.raises(ProtocolError, match="exceeds max_message_bytes=100"):
        decode(frames(ok, b"\x00" * 200), 100)


def test_nothing_but_plain_numbers_is_sent():
    with pytest.raises(TypeError, match="dtype object"):
        encode(Envelope(Kind.STEP, {"a": np.array([object()])}))
    with pytest.raises(TypeError, match="cannot send a Decision"):
        encode(Envelope(Kind.STEP, {"a": Decision()}))


def test_policy_spec_is_validated():
    assert SPEC.horizon_s == pytest.approx(0.8)
    assert PolicySpec.from_body(SPEC.to_body()) == SPEC
    for bad, words in [(dict(block_s=5.0), "block_s"), (dict(chunk=0), "chunk"), (dict(control_hz=0.0), "control_hz"),
                       (dict(action_space="torque"), "action_space")]:
        with pytest.raises(ValueError, match=words):
            PolicySpec(**{**SPEC.to_body(), **bad})
    with pytest.raises(ProtocolError, match="policy spec is unusable"):
        PolicySpec.from_body({"block_s": 1.0})
