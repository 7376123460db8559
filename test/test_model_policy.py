"""ModelPolicy: the runtime Policy over the tiny model — layout, decoding constraints, bad input, audio."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from ellsa_ros.model.config import sized
from ellsa_ros.model.encoders import MEL_CONTEXT, AudioStream
from ellsa_ros.model.fast import FastTokenizer
from ellsa_ros.model.inputs import heard_text
from ellsa_ros.model.layout import SENTENCE, SPECIAL_ID, Vocab
from ellsa_ros.model.network import EllsaNet
from ellsa_ros.model.policy import ModelPolicy
from ellsa_ros.model.sentence import shared_encoder
from ellsa_ros.model.text_tokenizer import TextTokenizer
from ellsa_ros.model.torch_backend import TorchBackend
from ellsa_ros.model.training_batch import BlockExample, collate, episode_segment
from ellsa_ros.runtime.blocks import Block
from ellsa_ros.runtime.policy import Decision, Policy

pytestmark = pytest.mark.usefixtures("one_torch_thread")


TEXT = TextTokenizer()


class RecordingBackend(TorchBackend):
    """The torch backend, keeping the features of every token it was fed."""

    def __init__(self, net):
        super().__init__(net)
        self.fed: list[np.ndarray] = []

    def step(self, ids, features, *rest):
        self.fed.append(np.array(features))
        return super().step(ids, features, *rest)


def make_policy(**kw) -> ModelPolicy:
    torch.manual_seed(0)
    c = sized("tiny", **{"max_text_tokens": 4, "max_action_tokens": 12, **kw})  # untrained: decodes to the limits
    fast = FastTokenizer(c.chunk, c.dof, c.fast_scale) if c.action_head == "fast" else None
    return ModelPolicy(RecordingBackend(EllsaNet(c).eval()), TEXT, fast)


def block(i: int, heard: str = "", images=True, state=True, audio=None, size=128) -> Block:
    rng = np.random.default_rng(i)
    imgs = {cam: rng.integers(0, 255, (size, size, 3), dtype=np.uint8) for cam in ("agentview", "wrist")} \
        if images else {}
    return Block(i, float(i), i + 1.0, np.zeros(16000, np.float32) if audio is None else audio, 16000, imgs, {},
                 rng.standard_normal(18).astype(np.float32) if state else None, None, heard=heard)


@pytest.mark.parametrize("head", ["fast", "continuous"])
def test_policy_steps_blocks_and_returns_decisions(head):
    policy = make_policy(action_head=head)
    assert isinstance(policy, Policy)
    vocab = Vocab(policy.config)
    # block 0 is decoded along an acting path (silence, then a chunk), the others greedily
    act = [SPECIAL_ID["<act_q>"]] if head == "continuous" else \
        [vocab.action_base + 1 + k for k in range(6)] + [SPECIAL_ID["<eoa>"]]
    for i in range(4):
        b = block(i, "pick up the black bowl and place it on the plate" if i == 0 else "")
        d = policy.replay(b, [SPECIAL_ID["<silence>"], *act]) if i == 0 else policy.step(b)
        assert isinstance(d, Decision)
        if i == 0:
            assert d.say == "" and d.actions is not None
        if d.actions is not None:
            assert d.actions.shape == (10, 7) and d.actions.dtype == np.float32
            assert np.all(np.abs(d.actions) <= 1.0) and np.isfinite(d.actions).all()
        assert d.info["block"] == i
    # a block step costs the block, not the history: the cache holds at most K blocks plus kept text
    assert policy.cache.length < policy.cache.next_position


@pytest.mark.parametrize("sentence_dim", [0, 384])
def test_streamed_tokens_equal_the_training_layout_of_the_same_episode(sentence_dim):
    policy = make_policy(action_head="fast", sentence_dim=sentence_dim)
    c, vocab = policy.config, Vocab(policy.config)
    heard = {1: "Put the bowl on the stove.", 2: "please put the bowl on the stove"}
    blocks, examples = [block(i, heard.get(i, "")) for i in range(4)], []
    for b in blocks:
        d = policy.step(b)
        words = heard_text(b.heard)
        examples.append(BlockExample(
            heard_ids=TEXT.encode(words), images=np.stack([b.images[k] for k in c.cameras]), state=b.state,
            sentence=shared_encoder().embed(words) if sentence_dim and words else None,
            controls=tuple(d.info["controls"]), text_ids=d.info["text_ids"],
            actions=d.actions, action_ids=d.info.get("action_ids")))
        assert d.info["sentence"] == bool(sentence_dim and words)
    ep = episode_segment(c, policy._prompt_ids, examples, policy.fast)
    streamed = np.array([t for _, t in policy.stream])
    n = len(streamed)
    assert (streamed == ep.seg.ids[:n]).all()
    # what no logits were needed for (the last block's <eoa>, and a token before it) waits for the next block
    waiting = ep.seg.ids[n:].tolist()
    assert 1 <= len(waiting) <= 2 and waiting[-1] == SPECIAL_ID["<eoa>"] and (ep.seg.block[n:] == 3).all()
    assert waiting[0] in (SPECIAL_ID["<noop>"], SPECIAL_ID["<eoa>"]) or vocab.is_action(waiting[0])
    # the same features at the same tokens: images, state and the sentence slots
    net = policy.backend.net
    batch = collate(c, [ep])
    with torch.no_grad():
        trained = net.feature_table(batch)[batch.feature_index][0, :n].numpy()
    np.testing.assert_allclose(np.concatenate(policy.backend.fed), trained, atol=1e-5)
    slots = np.flatnonzero(ep.seg.src == SENTENCE)
    assert ep.seg.block[slots].tolist() == ([1, 2] if sentence_dim else [])
    if sentence_dim:
        assert ep.seg.ids[slots].tolist() == [vocab.sentence] * 2 and vocab.size == vocab.action_end + 1
        assert not np.allclose(trained[slots[0]], trained[slots[1]])  # a paraphrase is close, not the same


def test_an_old_instruction_keeps_its_sentence_slot_after_its_block_collapsed():
    policy = make_policy(action_head="continuous", sentence_dim=384)
    c = policy.config
    for i in range(3 * c.keep_blocks + 2):
        policy.step(block(i, "pick up the black bowl and place it on the plate" if i == 1 else ""))
    slot = Vocab(c).sentence
    stream = list(policy.stream)
    at = next(p for p, (b, t) in enumerate(stream) if t == slot)
    assert stream[at][0] == 1 and sum(t == slot for _, t in stream) == 1
    held = {int(p) for p in policy.cache.position[:policy.cache.length]}
    assert at in held                                      # what was asked is still visible ...
    assert not any(stream[p][0] == 1 and stream[p][1] == SPECIAL_ID["<img>"] for p in held)  # ... its pixels are not


def test_a_model_without_a_sentence_encoder_lays_out_no_sentence_slot():
    policy = make_policy(action_head="continuous")
    d = policy.step(block(0, "open the drawer"))
    assert policy.sentences is None and not d.info["sentence"]
    assert Vocab(policy.config).sentence is None and Vocab(policy.config).size == Vocab(policy.config).action_end


class LogitsThatWantText:
    """A backend double for the decoding logic: real shapes, logits that always prefer a text token."""

    def __init__(self, c):
        self.config, self.name = c, "double"
        self.queries = np.zeros((c.chunk, c.d_model), np.float32)
        self.vocab = Vocab(c)
        self.calls = 0

    def encode_observation(self, images, state):
        return np.zeros((len(self.config.cameras) * self.config.image_tokens, self.config.d_model), np.float32), \
            np.zeros(self.config.d_model, np.float32)

    def encode_audio(self, mel):
        return np.zeros(((len(mel) - MEL_CONTEXT) // self.config.mel_frames_per_token, self.config.d_model), np.float32)

    def step(self, ids, features, experts, positions, mask, past_k, past_v):
        c = self.config
        self.calls += 1
        logits = np.zeros(self.vocab.size, np.float32)
        logits[self.vocab.text_base + 3] = 10.0     # a word: best of all
        logits[SPECIAL_ID["<eot>"]] = 9.0
        logits[self.vocab.action_base + 1 + self.calls % 5] = 5.0
        shape = (c.n_layers, c.n_kv_heads, len(ids), c.head_dim)
        return logits, np.zeros((len(ids), c.dof), np.float32), np.zeros(shape, np.float32), np.zeros(shape, np.float32)


def test_constrained_decoding_never_emits_a_non_action_token_inside_an_action_segment():
    c = sized("tiny")
    fast = FastTokenizer(c.chunk, c.dof, c.fast_scale)
    policy = ModelPolicy(LogitsThatWantText(c), TEXT, fast)
    vocab = Vocab(c)
    for i in range(3):
        d = policy.step(block(i))
        assert len(d.info["text_ids"]) == c.max_text_tokens   # text wins wherever text may appear
        assert d.actions is not None and d.info["action_tokens"] == c.max_action_tokens
    ids = [t for _, t in policy.stream]
    inside = False
    for t in ids:
        if t == SPECIAL_ID["<boa>"]:
            inside = True
        elif t == SPECIAL_ID["<eoa>"]:
            inside = False
        elif inside:
            assert vocab.is_action(t), f"token {t} inside an action segment"


def test_missing_modalities_run_with_placeholders():
    policy = make_policy(action_head="continuous")
    d = policy.step(block(0, images=False, state=False))
    assert isinstance(d, Decision)
    ids = [t for _, t in policy.stream]
    assert ids.count(SPECIAL_ID["<no_img>"]) == 2 and ids.count(SPECIAL_ID["<no_state>"]) == 1
    assert SPECIAL_ID["<img>"] not in ids
    assert ids[ids.index(SPECIAL_ID["<bos>"]) + 1] == SPECIAL_ID["<silence>"]  # nothing heard: explicit silence
    policy.step(block(1, size=96))  # other image sizes are resized
    assert policy.stream.count((1, SPECIAL_ID["<img>"])) == 2 * policy.config.image_tokens


def test_over_long_text_is_truncated_with_a_warning(caplog):
    policy = make_policy(action_head="continuous")
    with caplog.at_level(logging.WARNING):
        d = policy.step(block(0, " ".join(["pick up the bowl"] * 40)))
    assert d.info["heard_tokens"] == policy.config.max_heard_tokens
    assert any("heard text" in r.message and "keeping the first" in r.message for r in caplog.records)


@pytest.mark.parametrize("field,value,message", [
    ("state", np.full(18, np.nan, np.float32), "state contains non-finite"),
    ("state", np.zeros(5, np.float32), "state has 5 values"),
    ("audio", np.full(16000, np.inf, np.float32), "audio contains non-finite"),
    ("images", {"agentview": np.zeros((8, 8), np.uint8)}, "image 'agentview' has shape"),
])
def test_bad_input_raises_a_clear_error_before_the_forward_pass(field, value, message):
    policy = make_policy(action_head="continuous")
    b = block(0)
    setattr(b, field, value)
    with pytest.raises(ValueError, match=message):
        policy.step(b)
    assert policy.cache.length == 0 and policy._calls == 0


def test_audio_encoder_streams_block_by_block_as_it_encodes_the_whole_recording():
    c = sized("tiny", speech_input="audio")
    torch.manual_seed(0)
    net = EllsaNet(c).eval()
    audio = np.random.default_rng(0).standard_normal(16000 * 3).astype(np.float32) * 0.1
    whole = AudioStream(c).push(audio)
    stream, parts = AudioStream(c), []
    for a, z in [(0, 7000), (7000, 16000), (16000, 16100), (16100, 48000)]:
        mel = stream.push(audio[a:z])
        if len(mel) > MEL_CONTEXT:
            with torch.no_grad():
                parts.append(net.encode_audio(torch.from_numpy(mel[None]))[0])
    with torch.no_grad():
        expect = net.encode_audio(torch.from_numpy(whole[None]))[0]
    assert expect.shape == (15, c.d_model)  # 5 speech embeddings per second
    assert torch.allclose(torch.cat(parts), expect, atol=1e-5)


def test_audio_path_lays_out_speech_embeddings():
    policy = make_policy(action_head="continuous", speech_input="audio")
    audio = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1
    policy.step(block(0, heard="ignored on the audio path", audio=audio))
    policy.step(block(1, audio=audio[:8000]))
    policy.step(block(2, audio=audio[8000:]))
    counts = [policy.stream.count((b, SPECIAL_ID["<audio>"])) for b in range(3)]
    assert counts == [5, 2, 3]   # 100 mel frames per second, 20 per embedding, the rest carried over


def test_speech_the_model_did_not_generate_enters_after_robot_marker():
    policy = make_policy(action_head="continuous")
    d = policy.step(block(0, "open the drawer"))
    b1 = block(1)
    b1.said = d.say  # what it generated itself: nothing new
    policy.step(b1)
    assert (1, SPECIAL_ID["<robot>"]) not in policy.stream
    b2 = block(2)
    b2.said = "Sorry, I can't do that: the drawer is locked."  # the engine's words, not the model's
    policy.step(b2)
    assert (2, SPECIAL_ID["<robot>"]) in policy.stream


def test_replay_feeds_the_given_choices_and_refuses_ones_the_layout_forbids():
    policy = make_policy(action_head="fast")
    vocab = Vocab(policy.config)
    words = TEXT.encode("Okay.")
    ids = policy.fast.encode(np.full((10, 7), 0.25, np.float32))
    d = policy.replay(block(0, "open the drawer"),
                      list(vocab.text(words)) + [SPECIAL_ID["<eot>"]] + list(vocab.action(ids)) + [SPECIAL_ID["<eoa>"]])
    assert d.say == "Okay." and d.info["action_ids"] == ids
    np.testing.assert_allclose(d.actions, 0.25, atol=policy.fast.max_abs_error())
    with pytest.raises(ValueError, match="not allowed"):
        policy.replay(block(1), [int(vocab.action([0])[0])])  # an action token where text must come
    assert policy.cache.length == 0 and policy.cache.next_position == 0  # the half-fed block was dropped
