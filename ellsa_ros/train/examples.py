"""(Block, Decision) pairs from the data engine -> the model's teacher-forced training sequences.

The inputs go through the same preparation as at inference (`model.inputs`: image resizing,
state and audio checks; the heard text normalised by `heard_text` and, for a model with a
sentence encoder, embedded by the same shared encoder the policy uses), and the targets say
what the policy should have answered: words to speak (or <silence>), the control tokens, and
the action chunk (or <noop>).
"""
from __future__ import annotations

import numpy as np

from ellsa_ros.model.config import ModelConfig
from ellsa_ros.model.encoders import AudioStream
from ellsa_ros.model.fast import FastTokenizer
from ellsa_ros.model.inputs import camera_images, heard_text, microphone, proprioception, truncated
from ellsa_ros.model.sentence import shared_encoder
from ellsa_ros.model.text_tokenizer import TextTokenizer
from ellsa_ros.model.training_batch import BlockExample, EpisodeLayout, episode_segment
from ellsa_ros.runtime.blocks import Block
from ellsa_ros.runtime.policy import Decision


def controls_of(target: Decision) -> tuple[str, ...]:
    out = []
    if target.reject is not None:
        out.append("<reject>")
    if target.cancel:
        out.append("<cancel>")
    if target.done:
        out.append("<done>")
    return tuple(out)


def block_example(c: ModelConfig, text: TextTokenizer, block: Block, target: Decision,
                  audio: AudioStream | None = None) -> BlockExample:
    """One block as the model sees it at run time, with what it should have answered."""
    images, present = camera_images(c, block)
    say = target.say or (target.reject or "")
    actions = None
    if target.actions is not None and target.reject is None:
        actions = np.asarray(target.actions, np.float32)
        if 0 < len(actions) < c.chunk and actions.shape[1:] == (c.dof,):
            # The recording ended inside this chunk: the rest is a hold (no motion, gripper kept).
            hold = np.zeros((c.chunk - len(actions), c.dof), np.float32)
            hold[:, -1] = actions[-1, -1]
            actions = np.concatenate([actions, hold])
        if actions.shape != (c.chunk, c.dof):
            raise ValueError(f"block {block.index}: target chunk {actions.shape}, the model emits ({c.chunk}, {c.dof})")
    words_heard = heard_text(block.heard)
    if c.speech_input == "text":
        heard_ids, mel = truncated(text.encode(words_heard), c.max_heard_tokens, "heard text"), None
    else:
        heard_ids, mel = None, audio.push(microphone(c, block))
    sentence = shared_encoder().embed(words_heard) if c.sentence_dim and words_heard else None
    return BlockExample(
        heard_ids=heard_ids, mel=mel, sentence=sentence,
        images=images.astype(np.uint8) if all(present) else None,
        state=proprioception(c, block),
        controls=controls_of(target),
        text_ids=truncated(text.encode(say), c.max_text_tokens, "target text") if say else [],
        actions=actions,
    )


def episode_layout(c: ModelConfig, text: TextTokenizer, fast: FastTokenizer | None,
                   pairs: list[tuple[Block, Decision]], loss_from: int = 0) -> EpisodeLayout:
    """A sequence of blocks from the episode's start, laid out after the prompt exactly as
    streaming lays it out; the answers of blocks from `loss_from` on are taught."""
    audio = AudioStream(c) if c.speech_input == "audio" else None
    blocks = [block_example(c, text, b, d, audio) for b, d in pairs]
    return episode_segment(c, text.encode(c.prompt), blocks, fast, loss_from)
