"""The training step: `loss(batch)` (text CE + action loss) trains, for both action heads and the audio path."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ellsa_ros.model.config import sized
from ellsa_ros.model.encoders import AudioStream
from ellsa_ros.model.fast import TRAJECTORIES_PATH, FastTokenizer
from ellsa_ros.model.inputs import heard_text
from ellsa_ros.model.network import EllsaNet
from ellsa_ros.model.sentence import shared_encoder
from ellsa_ros.model.text_tokenizer import TextTokenizer
from ellsa_ros.model.training_batch import BlockExample, collate, episode_segment

pytestmark = pytest.mark.usefixtures("one_torch_thread")


TEXT = TextTokenizer()


def episode(c, fast, rng):
    trajectory = np.load(TRAJECTORIES_PATH)["actions"]
    audio = AudioStream(c)
    blocks = []
    for b in range(3):
        heard = "put the black bowl on the plate" if b == 0 else ""
        blocks.append(BlockExample(
            heard_ids=TEXT.encode(heard_text(heard)) if c.speech_input == "text" else None,
            sentence=shared_encoder().embed(heard_text(heard)) if c.sentence_dim and heard else None,
            mel=audio.push(rng.standard_normal(16000).astype(np.float32) * 0.05) if c.speech_input == "audio" else None,
            images=rng.integers(0, 255, (2, 128, 128, 3), dtype=np.uint8),
            state=rng.standard_normal(18).astype(np.float32),
            text_ids=TEXT.encode("Okay, I will put the black bowl on the plate.") if b == 0 else [],
            controls=("<done>",) if b == 2 else (),
            actions=trajectory[20 * b:20 * b + 10] if b < 2 else None))
    return episode_segment(c, TEXT.encode(c.prompt), blocks, fast)


@pytest.mark.parametrize("head,speech,sentence_dim", [("fast", "text", 0), ("continuous", "audio", 0),
                                                     ("continuous", "text", 384)])
def test_a_few_optimizer_steps_fit_one_episode(head, speech, sentence_dim):
    torch.manual_seed(0)
    c = sized("tiny", action_head=head, speech_input=speech, sentence_dim=sentence_dim)
    fast = FastTokenizer(c.chunk, c.dof, c.fast_scale) if head == "fast" else None
    net = EllsaNet(c)
    rng = np.random.default_rng(0)
    batch = collate(c, [episode(c, fast, rng), episode(c, fast, rng)])
    assert (batch.targets >= 0).sum() > 20
    opt = torch.optim.AdamW(net.parameters(), lr=3e-3)
    first = None
    for _ in range(25):
        out = net.loss(batch)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        first = first or {k: float(v.detach()) for k, v in out.items()}
    last = {k: float(v.detach()) for k, v in net.loss(batch).items()}
    assert last["text"] < 0.5 * first["text"]
    assert last["action"] < 0.7 * first["action"]
    if head == "continuous":
        assert len(batch.chunk_targets) == 4 and net.queries.grad is not None
    if sentence_dim:   # the projection of the frozen embedding learns with the rest
        assert batch.sentences.shape == (2, sentence_dim) and net.sentence.weight.grad.abs().sum() > 0
