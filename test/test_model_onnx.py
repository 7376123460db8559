"""ONNX export of the block step with the KV cache as inputs/outputs; onnxruntime matches torch."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import ellsa_ros.model as model
from ellsa_ros.cli import main as ellsa
from ellsa_ros.model import checkpoint
from ellsa_ros.model.config import sized
from ellsa_ros.model.network import EllsaNet
from ellsa_ros.model.onnx_policy import OnnxBackend
from ellsa_ros.model.torch_backend import TorchBackend
from ellsa_ros.runtime.blocks import Block

pytestmark = pytest.mark.usefixtures("one_torch_thread")



@pytest.fixture(scope="module", params=[0, 384], ids=["plain", "sentence"])
def exported(tmp_path_factory, request):
    torch.manual_seed(0)
    net = EllsaNet(sized("tiny", action_head="fast", max_text_tokens=4, max_action_tokens=12,
                         sentence_dim=request.param)).eval()
    folder = checkpoint.save(net, tmp_path_factory.mktemp("ck") / "tiny")
    assert ellsa(["export", str(folder)]) == 0
    return folder, net


def blocks(n):
    rng = np.random.default_rng(3)
    return [Block(i, float(i), i + 1.0, np.zeros(16000, np.float32), 16000,
                  {cam: rng.integers(0, 255, (128, 128, 3), dtype=np.uint8) for cam in ("agentview", "wrist")}, {},
                  rng.standard_normal(18).astype(np.float32), 0.0, heard="turn on the stove" if i == 0 else "")
            for i in range(n)]


def test_step_graph_matches_torch_within_1e4_with_a_cache(exported):
    folder, net = exported
    c = net.c
    onnx, eager = OnnxBackend(folder / "onnx", c, threads=1), TorchBackend(net)
    rng = np.random.default_rng(0)
    S, T = 17, 6
    args = (rng.integers(0, 500, T), rng.standard_normal((T, c.d_model)).astype(np.float32),
            np.array([0, 0, 1, 1, 0, 1]), np.arange(S, S + T), np.tril(np.ones((T, S + T), bool), S),
            rng.standard_normal((c.n_layers, 1, c.n_kv_heads, S, c.head_dim)).astype(np.float32),
            rng.standard_normal((c.n_layers, 1, c.n_kv_heads, S, c.head_dim)).astype(np.float32))
    for got, want in zip(onnx.step(*args), eager.step(*args)):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    # a decode step: one token, so one expert's weights only, while the graph still holds both
    for e in (0, 1):
        one = (args[0][:1], args[1][:1], np.array([e]), args[3][:1], args[4][:1, :S + 1], args[5], args[6])
        for got, want in zip(onnx.step(*one), eager.step(*one)):
            np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    images = rng.integers(0, 255, (2, 128, 128, 3)).astype(np.float32)
    for got, want in zip(onnx.encode_observation(images, np.ones(18, np.float32)),
                         eager.encode_observation(images, np.ones(18, np.float32))):
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    mel = rng.standard_normal((42, c.n_mels)).astype(np.float32)
    np.testing.assert_allclose(onnx.encode_audio(mel), eager.encode_audio(mel), atol=1e-4, rtol=0)
    if c.sentence_dim:
        embedding = rng.standard_normal(c.sentence_dim).astype(np.float32)
        got, want = onnx.encode_sentence(embedding), eager.encode_sentence(embedding)
        assert got.shape == (c.d_model,)
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    else:
        assert not (folder / "onnx" / "sentence.onnx").exists()


def test_onnx_policy_decides_as_the_torch_policy(exported):
    folder, _ = exported
    p_onnx, p_torch = model.load_policy(folder, backend="onnx"), model.load_policy(folder)
    assert p_onnx.backend.providers[-1] == "CPUExecutionProvider"
    for b in blocks(4):
        d1, d2 = p_onnx.step(b), p_torch.step(b)
        assert d1.say == d2.say and d1.control == d2.control
        assert d1.info["action_ids"] == d2.info["action_ids"] if "action_ids" in d2.info else d1.actions is None
        if d2.actions is not None:
            np.testing.assert_allclose(d1.actions, d2.actions, atol=1e-4)
    assert list(p_onnx.stream) == list(p_torch.stream)
    assert (p_torch.vocab.sentence in {t for _, t in p_torch.stream}) == bool(p_torch.config.sentence_dim)


def test_onnx_policy_without_export_names_the_command(tmp_path):
    folder = checkpoint.save(EllsaNet(sized("tiny")), tmp_path / "ck")
    with pytest.raises(FileNotFoundError, match="ellsa export"):
        model.load_policy(folder, backend="onnx")
