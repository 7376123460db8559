"""The SA-MoE transformer of ELLSA (arXiv 2510.16756): experts per segment, one shared attention.

Per layer each expert owns an input RMSNorm, Q/K/V/O projections, a post-attention RMSNorm and
a gated MLP. Every token goes through its own expert's weights (routing is fixed by the
segment the token belongs to), then all tokens meet in ONE causal self-attention
(grouped-query, rotary positions). The attention is never split by expert: an expert's K/V
feed every later token, which is how speech, vision and action fuse.

One forward path serves training (whole sequences, empty past) and streaming (a few new tokens
against an explicit KV cache): `forward(ids, features, experts, positions, mask, past_k,
past_v)` returns the new tokens' hidden states and their keys and values; the caller owns the
cache (see streaming.py), which keeps this function pure and exportable to ONNX as is.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _exporting():  # plain ops, which onnxruntime fuses into its own RMS normalization
            return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight
        return F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)


def _exporting() -> bool:
    """Tracing for ONNX takes the plain-op path; eager takes fused kernels and skips empty experts."""
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()


def rotary(positions: torch.Tensor, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin of shape (B, 1, T, head_dim/2) for integer positions (B, T)."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32, device=positions.device) / head_dim))
    angles = positions.to(torch.float32).unsqueeze(-1) * inv_freq  # (B, T, hd/2)
    return angles.cos().unsqueeze(1), angles.sin().unsqueeze(1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: (B, H, T, hd), rotated pairwise (first half, second half)."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


def grouped_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax attention for the ONNX graph, without copying K/V per query head.

    q (B, H, T, hd); k, v (B, Hkv, S, hd); mask (B, T, S) -> (B, H, T, hd). The query heads that
    share a K/V head are stacked along time, so one matmul per K/V head serves the whole group.
    """
    B, H, _, hd = q.shape
    Hkv = k.shape[1]
    g = H // Hkv
    qg = q.reshape(B, Hkv, -1, hd)  # -1, not T: a constant shape in the graph (no shape arithmetic nodes)
    scores = qg @ k.transpose(-1, -2) * (hd ** -0.5)                      # (B, Hkv, g*T, S)
    allowed = mask.unsqueeze(1).repeat(1, 1, g, 1)                         # (B, 1, g*T, S)
    scores = scores.masked_fill(~allowed, float("-inf"))
    return (scores.softmax(-1) @ v).reshape(B, H, -1, hd)


class Expert(nn.Module):
    """One expert's weights in one layer."""

    def __init__(self, c: ModelConfig) -> None:
        super().__init__()
        kv = c.n_kv_heads * c.head_dim
        self.norm_in = RMSNorm(c.d_model, c.norm_eps)
        self.d_ff = c.d_ff
        # rows [0, D) are Q, then K, then V: one matmul instead of three
        self.qkv_proj = nn.Linear(c.d_model, c.d_model + 2 * kv, bias=False)
        self.o = nn.Linear(c.d_model, c.d_model, bias=False)
        self.norm_post = RMSNorm(c.d_model, c.norm_eps)
        self.gate_up = nn.Linear(c.d_model, 2 * c.d_ff, bias=False)  # rows [0, d_ff) gate, then up
        self.down = nn.Linear(c.d_ff, c.d_model, bias=False)

    def qkv(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, D) this expert's tokens -> (N, D + 2 kv) concatenated q, k, v."""
        return self.qkv_proj(self.norm_in(x))

    def out(self, x: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
        """Residual stream x and attention output (N, D) -> this layer's output for these tokens."""
        x = x + self.o(attn)
        gate, up = self.gate_up(self.norm_post(x)).split(self.d_ff, dim=-1)
        return x + self.down(F.silu(gate) * up)


class Routes:
    """Which flat token indices each expert owns; computed once per forward, used by every layer."""

    def __init__(self, experts: torch.Tensor, n_experts: int) -> None:
        flat = experts.reshape(-1)
        self.only: int | None = 0 if n_experts == 1 else None
        if self.only is None and not _exporting():
            present = torch.unique(flat).tolist()
            if len(present) == 1:  # a decode step: one expert's tokens only, no gathering
                self.only = int(present[0])
        if self.only is not None:
            return
        self.index = [torch.nonzero(flat == e).squeeze(1) for e in range(n_experts)]
        # the inverse permutation gathers expert outputs back into token order (gathers only: ONNX friendly)
        self.inverse = torch.argsort(torch.cat(self.index))

    def apply(self, fns, *xs: torch.Tensor) -> torch.Tensor:
        """Runs fns[e] on each expert's rows of xs (N, ·) and returns the rows in token order."""
        if self.only is not None:
            return fns[self.only](*xs)
        outs = [fn(*(x.index_select(0, idx) for x in xs)) for fn, idx in zip(fns, self.index)]
        return torch.cat(outs, dim=0).index_select(0, self.inverse)


class SAMoELayer(nn.Module):
    def __init__(self, c: ModelConfig) -> None:
        super().__init__()
        self.c = c
        self.experts = nn.ModuleList(Expert(c) for _ in range(c.n_experts))

    def forward(self, x: torch.Tensor, routes: Routes, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor,
                past_k: torch.Tensor, past_v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (B, T, D); mask (B, T, S+T) bool, True = may attend (when exporting), else the additive
        bias (B, 1, T, S+T) made from it once per forward; past (B, Hkv, S, hd) -> x, k_new, v_new."""
        c = self.c
        B, D = x.shape[0], c.d_model
        H, Hkv, hd = c.n_heads, c.n_kv_heads, c.head_dim
        flat = x.reshape(-1, D)  # (B*T, D); -1 keeps the exported graph free of shape arithmetic
        qkv = routes.apply([e.qkv for e in self.experts], flat)  # (B*T, D + 2 Hkv hd)
        heads = qkv.reshape(B, -1, H + 2 * Hkv, hd).transpose(1, 2)       # (B, H + 2 Hkv, T, hd)
        qk = apply_rotary(heads[:, :H + Hkv], cos, sin)                   # q and k rotated together
        q, k_new, v_new = qk[:, :H], qk[:, H:], heads[:, H + Hkv:]       # (B, H | Hkv | Hkv, T, hd)
        k_all = torch.cat([past_k, k_new], dim=2)  # (B, Hkv, S+T, hd)
        v_all = torch.cat([past_v, v_new], dim=2)
        if _exporting():
            attn = grouped_attention(q, k_all, v_all, mask)
        else:
            attn = F.scaled_dot_product_attention(q, k_all, v_all, attn_mask=mask, enable_gqa=H != Hkv)
        attn = attn.transpose(1, 2).reshape(-1, D)
        out = routes.apply([e.out for e in self.experts], flat, attn)
        return out.reshape(B, -1, D), k_new, v_new


class SAMoE(nn.Module):
    """Embeddings, SA-MoE layers, per-expert final norms, a tied LM head and a chunk head."""

    def __init__(self, c: ModelConfig, vocab_size: int) -> None:
        super().__init__()
        self.c = c
        self.vocab_size = vocab_size
        self.embed = nn.Embedding(vocab_size, c.d_model)
        self.layers = nn.ModuleList(SAMoELayer(c) for _ in range(c.n_layers))
        self.norms = nn.ModuleList(RMSNorm(c.d_model, c.norm_eps) for _ in range(c.n_experts))
        self.chunk_head = nn.Linear(c.d_model, c.dof)
        nn.init.normal_(self.embed.weight, std=0.02)
        for module in self.layers.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=0.02)

    def empty_past(self, batch: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """A zero-length KV cache: (L, B, Hkv, 0, hd) keys and values."""
        shape = (self.c.n_layers, batch, self.c.n_kv_heads, 0, self.c.head_dim)
        return torch.zeros(shape), torch.zeros(shape)

    def forward(self, ids: torch.Tensor, features: torch.Tensor, experts: torch.Tensor, positions: torch.Tensor,
                mask: torch.Tensor, past_k: torch.Tensor, past_v: torch.Tensor,
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Runs T new tokens against S cached ones.

        ids (B, T) int64; features (B, T, D) added to the token embeddings (encoder outputs at
        image/state/speech/action-query slots, zero elsewhere); experts (B, T) int64; positions
        (B, T) int64 absolute stream positions; mask (B, T, S+T) bool; past_k/past_v
        (L, B, Hkv, S, hd). Returns hidden (B, T, D) after the final norm, and new keys and
        values (L, B, Hkv, T, hd) to append to the cache.
        """
        routes = Routes(experts, self.c.n_experts)
        cos, sin = rotary(positions, self.c.head_dim, self.c.rope_theta)
        x = self.embed(ids) + features
        if not _exporting():  # one additive bias for all layers instead of a bool->float conversion in each
            mask = torch.zeros(mask.shape, dtype=x.dtype, device=x.device).masked_fill(~mask, float("-inf"))[:, None]
        ks, vs = [], []
        for i, layer in enumerate(self.layers):
            x, k, v = layer(x, routes, cos, sin, mask, past_k[i], past_v[i])
            ks.append(k)
            vs.append(v)
        B, D = x.shape[0], self.c.d_model
        hidden = routes.apply(list(self.norms), x.reshape(-1, D)).reshape(B, -1, D)
        return hidden, torch.stack(ks), torch.stack(vs)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """(…, D) -> (…, vocab) with the embedding matrix as output layer."""
        return hidden @ self.embed.weight.t()
