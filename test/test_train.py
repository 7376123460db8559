"""`ellsa train` on a real (tiny) data-engine dataset: the loss falls, checkpoints load as a
policy, and a stopped run resumes where it stopped."""
from __future__ import annotations

import json
import os
import signal

import numpy as np
import pytest
import torch

from ellsa_ros.model import load_policy
from ellsa_ros.runtime.blocks import Block
from ellsa_ros.sim.datagen import generate as gen
from ellsa_ros.sim.datagen.patterns import PatternShares
from ellsa_ros.sim.datagen.reader import BlockFormat, DatasetReader
from ellsa_ros.sim.datagen.rollout import RolloutConfig
from ellsa_ros.sim.datagen.voices import Voice
from ellsa_ros.train.examples import block_example
from ellsa_ros.train.trainer import STATE_FILE, TrainConfig, train


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("train_data")
    rollout = RolloutConfig(voices=(Voice("espeak", "en-us", 1.6),), robot_voice=Voice("espeak", "en-us+m3", 1.3),
                            noise_levels=(0.0,), tail_s=0.5)
    gen.generate(gen.DatagenConfig(out=out, suites=("libero_spatial",), tasks="0", episodes_per_task=1,
                                   shard_size=1, image_size=64, rollout=rollout,
                                   shares=PatternShares({"instruction": 1.0}), seed=0), progress=False)
    return out


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def config(dataset, out, steps):
    return TrainConfig(data=[str(dataset)], out=str(out), size="tiny", block_s=0.5, steps=steps, batch=2,
                       max_blocks=6, lr=3e-3, warmup=2, save_every=5)


def test_training_fits_the_data_and_the_checkpoint_is_a_policy(dataset, tmp_path):
    folder = train(config(dataset, tmp_path, 30))
    meta = json.loads((tmp_path / "train.json").read_text())
    assert meta["step"] == 30
    policy = load_policy(folder)
    fmt = BlockFormat.for_model(policy.config, 0.5)
    pairs = next(DatasetReader(dataset).sequences(fmt))
    policy.reset()
    decisions = [policy.step(b) for b, _ in pairs]   # the instruction comes a few blocks in
    acting = [d for d in decisions if d.actions is not None]
    assert acting and all(d.actions.shape == (10, 7) and np.isfinite(d.actions).all() for d in acting)


def test_loss_falls(dataset, tmp_path, capsys):
    train(config(dataset, tmp_path, 40))
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("[train] step")]
    losses = [float(line.split(" loss ")[1].split()[0]) for line in lines]
    assert len(losses) == 4 and losses[-1] < 0.7 * losses[0]


def test_a_stopped_run_resumes(dataset, tmp_path, capsys):
    train(config(dataset, tmp_path, 10))
    state = torch.load(tmp_path / STATE_FILE, weights_only=False)
    assert state["step"] == 10
    train(config(dataset, tmp_path, 15))
    err = capsys.readouterr().err
    assert "resuming at step 10" in err and "step 15/15" in err and "step 10/15" not in err


class StopAt:
    """A log that stops the run, as Ctrl-C (or a job scheduler's SIGTERM) would, once it reads `line`."""

    def __init__(self, line: str, how: str) -> None:
        self.line, self.how, self.text = line, how, ""

    def write(self, text: str) -> None:
        self.text += text
        if self.line in text:
            if self.how == "sigterm":
                os.kill(os.getpid(), signal.SIGTERM)
            else:
                raise KeyboardInterrupt

    def flush(self) -> None:
        pass


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_a_run_stopped_between_checkpoints_saves_the_step_it_stopped_at(dataset, tmp_path, capsys, how):
    cfg = config(dataset, tmp_path, 30)
    cfg.save_every = 100
    log = StopAt("step 10/30", how)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, log=log)
    assert "stopped at step 10, saved" in log.text
    assert torch.load(tmp_path / STATE_FILE, weights_only=False)["step"] == 10
    assert signal.getsignal(signal.SIGTERM) is before        # the run's handler is gone
    train(cfg)
    assert "resuming at step 10" in capsys.readouterr().err


def test_bad_settings_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a dataset"):
        TrainConfig(data=[str(tmp_path)], out=str(tmp_path / "o"))


def test_a_rejected_block_teaches_no_action(dataset):
    from ellsa_ros.model.config import sized
    from ellsa_ros.model.text_tokenizer import TextTokenizer
    from ellsa_ros.runtime.policy import Decision
    c = sized("tiny")
    block = Block(0, 0.0, 0.5, np.zeros(8000, np.float32), 16000, {}, {}, np.zeros(18, np.float32), 0.0,
                  heard="pick up the elephant")
    ex = block_example(c, TextTokenizer(), block, Decision(actions=np.zeros((10, 7)), reject="no elephant here"))
    assert ex.actions is None and ex.controls == ("<reject>",) and ex.text_ids


@pytest.mark.parametrize("sentence_dim", [0, 384])
def test_a_late_training_window_sees_what_the_streaming_policy_holds(dataset, tmp_path, sentence_dim):
    """Block k of a window after the instruction, laid out for training and streamed block by block through
    ModelPolicy with the same answers: the same tokens, at the same positions, visible."""
    from ellsa_ros.model.layout import visibility
    from ellsa_ros.model.network import EllsaNet
    from ellsa_ros.model.policy import ModelPolicy
    from ellsa_ros.model.tokenizers_for import tokenizers_for
    from ellsa_ros.model.torch_backend import TorchBackend
    from ellsa_ros.train.examples import episode_layout
    from ellsa_ros.train.trainer import load_sequences

    cfg = config(dataset, tmp_path, 1)
    cfg.model_overrides = {"sentence_dim": sentence_dim}
    c = cfg.model_config()
    pairs = next(DatasetReader(dataset).sequences(BlockFormat.for_model(c, cfg.block_s)))
    heard_at = next(b.index for b, _ in pairs if b.heard)
    window = next(w for w in load_sequences(cfg, c) if w.loss_from > heard_at)
    k = min(window.loss_from + c.keep_blocks + 1, len(window.blocks) - 1)   # past the last-K of the window start
    assert k - heard_at > c.keep_blocks, "the test episode is too short"
    assert window.loss_from % cfg.max_blocks == 0 and len(window.blocks) == min(len(pairs),
                                                                                window.loss_from + cfg.max_blocks)
    assert window.blocks[heard_at].heard_ids, "the instruction, heard before the window, is part of its context"
    seg = window.seg
    # the taught answers are exactly those of the window's blocks
    taught = np.unique(seg.block[window.targets != -100])
    assert taught.min() == window.loss_from and taught.max() == len(window.blocks) - 1

    torch.manual_seed(0)
    text, fast = tokenizers_for(c)
    policy = ModelPolicy(TorchBackend(EllsaNet(c).eval()), text, fast)
    full = episode_layout(c, text, fast, pairs[:k + 1])
    for b in range(k + 1):
        choices = [int(t) for t in full.targets[full.seg.block == b] if t != -100]
        policy.replay(pairs[b][0], choices)
    streamed = np.array([t for _, t in policy.stream])
    n = policy.cache.length
    cached = policy.cache.position[:n]
    last = int(cached.max())                          # the last token of block k that was fed
    assert (seg.ids[:len(streamed)] == streamed).all()
    row = visibility(seg.block[[last]], np.asarray([last]), seg.block, seg.keep, np.arange(len(seg)),
                     c.keep_blocks, c.history_tokens)[0]
    seen_in_training = {(int(p), int(seg.ids[p])) for p in np.flatnonzero(row)}
    seen_streaming = {(int(p), int(streamed[p])) for p in cached}
    assert seen_in_training == seen_streaming
    # the collapse dropped old pixels and actions, but kept what was heard
    assert n < last + 1
    heard = {int(p) for p in np.flatnonzero(seg.block == heard_at) if seg.keep[p]}
    assert heard and heard <= {p for p, _ in seen_streaming}
    assert (policy.vocab.sentence in {int(seg.ids[p]) for p in heard}) == bool(sentence_dim)


def test_checkpoints_are_chosen_by_closed_loop_success_and_the_curve_is_drawn(dataset, tmp_path, capsys):
    from ellsa_ros.train.selection import Curve
    cfg = TrainConfig(data=[str(dataset)], out=str(tmp_path), size="tiny", block_s=0.5, steps=10, batch=2,
                      max_blocks=6, lr=3e-3, warmup=2, save_every=100, eval_every=5, eval_tasks="libero_spatial:0",
                      eval_init_states=(48, 49), eval_max_steps=30)
    train(cfg)
    curve = json.loads((tmp_path / "curve.json").read_text())
    assert [s for s, _ in curve["success"]] == [5, 10]
    assert all(r["episodes"] == 2 and 0.0 <= r["success_rate"] <= 1.0 for _, r in curve["success"])
    assert (tmp_path / "curve.png").stat().st_size > 1000
    episodes = sorted((tmp_path / "selection").glob("step*/libero_spatial/episodes/*.json"))
    # every episode keeps its own record
    assert len(episodes) == 4 and [json.loads(e.read_text())["init_state"] for e in episodes] == [48, 49, 48, 49]
    # the best checkpoint (ties go to the later one) is a policy
    assert load_policy(tmp_path / "best").config.size == "tiny"
    assert "closed-loop success" in capsys.readouterr().err
    # a resumed run keeps the curve it had
    assert len(Curve(tmp_path).points["success"]) == 2


def test_a_selection_set_that_names_no_suite_is_refused(dataset, tmp_path):
    with pytest.raises(ValueError, match="unknown suite 'libero_nope'"):
        TrainConfig(data=[str(dataset)], out=str(tmp_path), eval_every=5, eval_tasks="libero_nope:0")
    with pytest.raises(ValueError, match="eval_every needs eval_tasks"):
        TrainConfig(data=[str(dataset)], out=str(tmp_path), eval_every=5)


def test_the_averaged_weights_are_what_is_saved_and_a_resumed_run_keeps_them(dataset, tmp_path):
    from ellsa_ros.model import checkpoint
    cfg = TrainConfig(data=[str(dataset)], out=str(tmp_path), size="tiny", block_s=0.5, steps=6, batch=2,
                      max_blocks=6, lr=3e-3, warmup=2, save_every=3, ema=0.5, augment_shift_px=4,
                      augment_jitter=0.1)
    train(cfg)
    state = torch.load(tmp_path / STATE_FILE, weights_only=False)
    assert state["ema"] is not None
    raw = state["model"]
    shipped = checkpoint.load(tmp_path / "model").state_dict()
    assert any(not torch.equal(shipped[k], raw[k]) for k in raw if k in shipped), "the raw weights were saved"
    averaged = {k[len("module."):]: v for k, v in state["ema"].items() if k.startswith("module.")}
    assert averaged and all(torch.equal(shipped[k], averaged[k]) for k in averaged)
    train(TrainConfig(**{**cfg.__dict__, "steps": 9}))
    assert torch.load(tmp_path / STATE_FILE, weights_only=False)["step"] == 9
    with pytest.raises(ValueError, match="ema=1.0"):
        TrainConfig(data=[str(dataset)], out=str(tmp_path), ema=1.0)


def test_a_task_filter_trains_on_those_tasks_only(dataset, tmp_path):
    from ellsa_ros.train.trainer import load_sequences
    cfg = TrainConfig(**{**config(dataset, tmp_path, 1).__dict__, "tasks": "libero_spatial:0"})
    assert len(load_sequences(cfg, cfg.model_config())) == len(load_sequences(config(dataset, tmp_path, 1),
                                                                             cfg.model_config()))
    other = TrainConfig(**{**cfg.__dict__, "tasks": "libero_spatial:1"})
    with pytest.raises(ValueError, match="of the tasks 'libero_spatial:1'"):
        load_sequences(other, other.model_config())
    with pytest.raises(ValueError, match="unknown suite 'libero_nope'"):
        TrainConfig(**{**cfg.__dict__, "tasks": "libero_nope:0"})


def test_bf16_autocast_trains_fp32_weights(dataset, tmp_path, capsys):
    train(TrainConfig(**{**config(dataset, tmp_path, 20).__dict__, "bf16": True}))
    state = torch.load(tmp_path / STATE_FILE, weights_only=False)
    assert all(v.dtype == torch.float32 for v in state["model"].values() if v.is_floating_point())
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("[train] step")]
    losses = [float(line.split(" loss ")[1].split()[0]) for line in lines]
    assert len(losses) == 2 and all(np.isfinite(losses)) and losses[-1] < losses[0]


def test_a_fine_tune_to_longer_chunks_starts_from_the_checkpoint_and_acts_past_its_block(dataset, tmp_path, capsys):
    from ellsa_ros.model import checkpoint
    first = train(config(dataset, tmp_path / "short", 10))
    cfg = TrainConfig(**{**config(dataset, tmp_path / "long", 5).__dict__, "model_overrides": {"chunk": 20},
                         "init_from": str(first), "lr": 1e-9})
    folder = train(cfg)
    assert "starting from" in capsys.readouterr().err
    before, after = checkpoint.load(first).state_dict(), checkpoint.load(folder).state_dict()
    # with a learning rate of ~0 every weight is the one it started from; the new slots copy the last old one
    assert all(torch.allclose(before[k], after[k], atol=1e-5) for k in before if k != "queries")
    assert torch.allclose(after["queries"][:10], before["queries"], atol=1e-5)
    assert torch.allclose(after["queries"][10:], before["queries"][9].expand(10, -1), atol=1e-5)
    policy = load_policy(folder)
    pairs = next(DatasetReader(dataset).sequences(BlockFormat.for_model(policy.config, 0.5)))
    policy.reset()
    acting = [d for d in (policy.step(b) for b, _ in pairs) if d.actions is not None]
    assert acting and all(d.actions.shape == (20, 7) for d in acting)   # 1 s of actions from a 0.5 s block


def test_a_checkpoint_of_another_model_is_refused_as_a_start(dataset, tmp_path):
    first = train(config(dataset, tmp_path / "tiny", 5))
    cfg = TrainConfig(**{**config(dataset, tmp_path / "big", 5).__dict__, "model_overrides": {"d_model": 64},
                         "init_from": str(first)})
    with pytest.raises(ValueError, match=r"d_model \(128 there, 64 here\)"):
        train(cfg)
    with pytest.raises(ValueError, match="is not a checkpoint"):
        TrainConfig(**{**config(dataset, tmp_path / "x", 5).__dict__, "init_from": str(tmp_path)})
