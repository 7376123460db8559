"""`EllsaNet`: the SA-MoE core with its encoders, heads and training loss.

`step` is the block step every backend runs (the ONNX graph is exactly this function); the
encoders run once per block on its images, state and speech, and the sentence projection once
per block that heard something (a learned Linear from the frozen sentence embedding to the
model width, present only with `sentence_dim` > 0); `loss` is text cross-entropy
plus the action loss (FAST token cross-entropy, or L1 of the parallel chunk head).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig
from .encoders import AudioEncoder, StateEncoder, VisionEncoder
from .layout import Vocab
from .samoe import SAMoE
from .training_batch import TrainingBatch


class EllsaNet(nn.Module):
    def __init__(self, c: ModelConfig) -> None:
        super().__init__()
        self.c = c
        self.vocab = Vocab(c)
        self.core = SAMoE(c, self.vocab.size)
        self.vision = VisionEncoder(c)
        self.state = StateEncoder(c)
        self.audio = AudioEncoder(c)
        # absent without a sentence encoder: checkpoints from before it have no such tensors
        self.sentence = nn.Linear(c.sentence_dim, c.d_model) if c.sentence_dim else None
        self.queries = nn.Parameter(torch.randn(c.chunk, c.d_model) * 0.02)  # continuous head's action slots

    def step(self, ids: torch.Tensor, features: torch.Tensor, experts: torch.Tensor, positions: torch.Tensor,
             mask: torch.Tensor, past_k: torch.Tensor, past_v: torch.Tensor,
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One streaming call (shapes as SAMoE.forward) -> next-token logits of the last token
        (B, vocab), chunk-head outputs of every token (B, T, dof), new keys, new values."""
        hidden, k, v = self.core(ids, features, experts, positions, mask, past_k, past_v)
        return self.core.logits(hidden[:, -1]), torch.tanh(self.core.chunk_head(hidden)), k, v

    def encode_observation(self, images: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """images (N, n_cam, S, S, 3) in [0, 255], state (N, state_dim) -> (N, n_cam·grid², D), (N, D)."""
        img = self.vision(images)
        return img.reshape(img.shape[0], -1, img.shape[-1]), self.state(state)

    def encode_audio(self, mel: torch.Tensor) -> torch.Tensor:
        """mel (N, MEL_CONTEXT + F, n_mels) -> (N, F / mel_frames_per_token, D)."""
        return self.audio(mel)

    def encode_sentence(self, embedding: torch.Tensor) -> torch.Tensor:
        """embedding (N, sentence_dim) from the frozen sentence encoder -> (N, D)."""
        if self.sentence is None:
            raise ValueError("this model has no sentence input (sentence_dim = 0)")
        return self.sentence(embedding)

    def feature_table(self, b: TrainingBatch) -> torch.Tensor:
        """Rows the batch's feature_index points at: [zero, images, states, audio, sentences, action queries]."""
        D = self.c.d_model
        rows = [torch.zeros(1, D)]
        if len(b.images):
            rows.append(self.vision(b.images).reshape(-1, D))
        if len(b.states):
            rows.append(self.state(b.states))
        if len(b.mels):
            rows += [self.audio(m[None])[0] for m in b.mels]
        if len(b.sentences):
            rows.append(self.encode_sentence(b.sentences))
        rows.append(self.queries)
        return torch.cat(rows)

    def loss(self, b: TrainingBatch) -> dict[str, torch.Tensor]:
        """Teacher-forced loss of a batch: {"loss", "text", "action"} scalars."""
        features = self.feature_table(b)[b.feature_index]  # (B, T, D)
        B = b.ids.shape[0]
        past_k, past_v = self.core.empty_past(B)
        hidden, _, _ = self.core(b.ids, features, b.experts, b.positions, b.mask, past_k, past_v)
        logits = self.core.logits(hidden).float()           # (B, T, V); fp32 under a bf16 autocast
        ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), b.targets.reshape(-1), ignore_index=-100,
                             reduction="none").reshape(b.targets.shape)
        text_w = (b.targets >= 0) & ~b.target_is_action
        act_w = (b.targets >= 0) & b.target_is_action
        text = (ce * text_w).sum() / text_w.sum().clamp(min=1)
        action = (ce * act_w).sum() / act_w.sum().clamp(min=1)
        if len(b.chunk_targets):
            pred = torch.tanh(self.core.chunk_head(hidden).float())
            pred = pred.reshape(-1, self.c.dof)[b.chunk_slots]  # (N, chunk, dof)
            action = action + (pred - b.chunk_targets).abs().mean()
        return {"loss": text + action, "text": text.detach(), "action": action.detach()}
