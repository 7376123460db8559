"""Checkpoints round-trip; mismatched versions and shapes fail naming the mismatch; load_policy."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import ellsa_ros.model as model
from ellsa_ros.model import checkpoint
from ellsa_ros.model.checkpoint import CheckpointError
from ellsa_ros.model.config import ModelConfig, sized
from ellsa_ros.model.network import EllsaNet
from ellsa_ros.runtime.blocks import Block

pytestmark = pytest.mark.usefixtures("one_torch_thread")



def net(**kw) -> EllsaNet:
    torch.manual_seed(0)
    return EllsaNet(sized("tiny", action_head="continuous", **kw)).eval()


def sample_block() -> Block:
    rng = np.random.default_rng(0)
    return Block(0, 0.0, 1.0, np.zeros(16000, np.float32), 16000,
                 {cam: rng.integers(0, 255, (128, 128, 3), dtype=np.uint8) for cam in ("agentview", "wrist")}, {},
                 rng.standard_normal(18).astype(np.float32), 0.0, heard="open the top drawer")


def test_checkpoint_round_trip_gives_the_same_decisions(tmp_path):
    a = net()
    checkpoint.save(a, tmp_path / "ck")
    assert checkpoint.read_config(tmp_path / "ck") == a.c
    p1, p2 = model.load_policy(tmp_path / "ck"), model.load_policy(tmp_path / "ck")
    d1, d2 = p1.step(sample_block()), p2.step(sample_block())
    assert d1.say == d2.say and np.array_equal(d1.actions, d2.actions)
    b = checkpoint.load(tmp_path / "ck")
    for (k, v), (k2, v2) in zip(a.state_dict().items(), b.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)


def test_half_precision_checkpoint_is_half_the_size_and_loads(tmp_path):
    a = net()
    full = checkpoint.save(a, tmp_path / "full") / checkpoint.WEIGHTS_FILE
    half = checkpoint.save(a, tmp_path / "half", half=True) / checkpoint.WEIGHTS_FILE
    assert half.stat().st_size < 0.55 * full.stat().st_size
    b = checkpoint.load(tmp_path / "half")
    assert torch.allclose(b.core.embed.weight, a.core.embed.weight, atol=1e-3)


def test_wrong_format_version_is_named(tmp_path):
    folder = checkpoint.save(net(), tmp_path / "ck")
    meta = json.loads((folder / "config.json").read_text())
    meta["format_version"] = 99
    (folder / "config.json").write_text(json.dumps(meta))
    with pytest.raises(checkpoint.CheckpointError, match="format_version 99"):
        checkpoint.load(folder)


def test_shape_mismatch_is_named(tmp_path):
    folder = checkpoint.save(net(), tmp_path / "ck")
    meta = json.loads((folder / "config.json").read_text())
    meta["config"]["d_ff"] = 384
    (folder / "config.json").write_text(json.dumps(meta))
    expected = r"gate_up.weight: checkpoint \(512, 128\) vs model \(768, 128\)"
    with pytest.raises(checkpoint.CheckpointError, match=expected):
        checkpoint.load(folder)


def test_unknown_config_field_and_bad_values_are_named():
    with pytest.raises(ValueError, match="unknown ModelConfig fields"):
        ModelConfig.from_dict({"d_model": 64, "wings": 2})
    with pytest.raises(ValueError, match="n_heads"):
        ModelConfig(d_model=100, n_heads=3)
    with pytest.raises(ValueError, match="routing sends"):
        ModelConfig(n_experts=1)


def test_the_embedded_default_loads_and_a_missing_checkpoint_is_named(tmp_path):
    policy = model.load_policy()
    assert policy.block_s == 0.5 and policy.config.size == "small"
    with pytest.raises(CheckpointError, match="config.json is missing"):
        model.load_policy(tmp_path / "nowhere")


def test_tiny_has_fewer_than_5m_parameters():
    assert sum(p.numel() for p in EllsaNet(sized("tiny")).parameters()) < 5_000_000


def test_a_checkpoint_from_before_the_sentence_encoder_loads_and_runs_without_it(tmp_path):
    # a checkpoint written before the field existed has no sentence_dim: it loads with the encoder off
    folder = checkpoint.save(net(), tmp_path / "old")
    meta = json.loads((folder / checkpoint.CONFIG_FILE).read_text())
    del meta["config"]["sentence_dim"]
    (folder / checkpoint.CONFIG_FILE).write_text(json.dumps(meta))
    assert checkpoint.load(folder).c.sentence_dim == 0
    policy = model.load_policy(folder)
    assert policy.config.sentence_dim == 0 and policy.sentences is None and policy.backend.net.sentence is None
    d = policy.step(sample_block())
    assert not d.info["sentence"] and policy.vocab.sentence is None
    assert policy.vocab.size == policy.backend.net.core.embed.num_embeddings


def test_the_embedded_default_reads_the_sentence_embedding_of_what_it_heard():
    policy = model.load_policy()
    assert policy.config.sentence_dim == 384 and policy.sentences is not None
    policy.reset()
    assert policy.step(sample_block()).info["sentence"]   # it heard "open the top drawer"


def test_a_sentence_checkpoint_round_trips_with_its_projection(tmp_path):
    a = net(sentence_dim=384)
    folder = checkpoint.save(a, tmp_path / "ck")
    b = checkpoint.load(folder)
    assert b.c.sentence_dim == 384 and torch.equal(b.sentence.weight, a.sentence.weight)
    assert b.core.embed.num_embeddings == EllsaNet(sized("tiny")).core.embed.num_embeddings + 1  # the <sent> slot
    p1, p2 = model.load_policy(folder), model.load_policy(folder)
    d1, d2 = p1.step(sample_block()), p2.step(sample_block())
    assert d1.info["sentence"] and d1.say == d2.say and np.array_equal(d1.actions, d2.actions)
    with pytest.raises(ValueError, match="sentence_dim"):
        ModelConfig(sentence_dim=-1)
