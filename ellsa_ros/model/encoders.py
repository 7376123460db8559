"""Input encoders: camera images, proprioception, and streaming speech (log-mel -> causal conv).

Images: a patch encoder turns each (S, S, 3) camera image into image_grid² tokens, plus
a learned camera and patch-position embedding. State: a two-layer MLP to one token. Speech:
log-mel frames (10 ms hop, computed in numpy by `LogMel`, the same for every backend) through a
causal conv stack (kernel 3 over time, then two non-overlapping downsamplings to one embedding
per `mel_frames_per_token` frames). The first conv's two frames of left context are carried
across blocks by `AudioStream`, so encoding block by block equals encoding the whole recording.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig

MEL_CONTEXT = 2  # left frames the first causal conv needs


class VisionEncoder(nn.Module):
    """Patch encoder: 4x4-pixel patches, then 2x2 patch merges down to the token grid.

    Written as reshapes and Linear layers (a strided conv with kernel = stride, computed as a
    matmul): torch's CPU conv kernels took ~30 ms per such layer here, the matmul well under 1.
    """

    def __init__(self, c: ModelConfig) -> None:
        super().__init__()
        ch = c.vision_channels
        patch = c.image_size // c.image_grid
        self.merges = []
        size = patch // 4
        while size > 1:
            factor = 2 if size % 2 == 0 else size
            self.merges.append(factor)
            size //= factor
        self.grid = c.image_grid
        self.embed = nn.Linear(3 * 16, ch)
        self.merge = nn.ModuleList(nn.Linear(ch * f * f, ch) for f in self.merges)
        self.proj = nn.Linear(ch, c.d_model)
        self.camera = nn.Parameter(torch.zeros(len(c.cameras), 1, c.d_model))
        self.patch_pos = nn.Parameter(torch.randn(c.image_tokens, c.d_model) * 0.02)

    @staticmethod
    def _patches(x: torch.Tensor, f: int) -> torch.Tensor:
        """(N, H, W, C) -> (N, H/f, W/f, f*f*C): non-overlapping f x f patches."""
        N, H, W, C = x.shape
        x = x.reshape(N, H // f, f, W // f, f, C).permute(0, 1, 3, 2, 4, 5)
        return x.reshape(N, H // f, W // f, f * f * C)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images (N, n_cam, S, S, 3) uint8 or float in [0, 255] -> (N, n_cam, grid², D)."""
        N, n_cam, S, _, _ = images.shape
        x = images.to(torch.float32).reshape(N * n_cam, S, S, 3) / 127.5 - 1.0
        x = F.gelu(self.embed(self._patches(x, 4)))             # (N*n_cam, S/4, S/4, ch)
        for f, merge in zip(self.merges, self.merge):
            x = F.gelu(merge(self._patches(x, f)))
        x = self.proj(x.reshape(N * n_cam, self.grid * self.grid, -1))  # (N*n_cam, grid², D)
        return x.reshape(N, n_cam, -1, x.shape[-1]) + self.camera + self.patch_pos


class StateEncoder(nn.Module):
    def __init__(self, c: ModelConfig) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(c.state_dim, c.d_model), nn.GELU(), nn.Linear(c.d_model, c.d_model))

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        """state (N, state_dim) -> (N, D)."""
        return self.mlp(state)


class AudioEncoder(nn.Module):
    def __init__(self, c: ModelConfig) -> None:
        super().__init__()
        ch = c.d_model // 2
        first = 4 if c.mel_frames_per_token % 4 == 0 else 1
        self.conv_in = nn.Conv1d(c.n_mels, ch, MEL_CONTEXT + 1)
        self.down1 = nn.Conv1d(ch, ch, first, stride=first)
        self.down2 = nn.Conv1d(ch, c.d_model, c.mel_frames_per_token // first, stride=c.mel_frames_per_token // first)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """mel (N, MEL_CONTEXT + F, n_mels), F a multiple of mel_frames_per_token -> (N, F / that, D)."""
        x = F.gelu(self.conv_in(mel.transpose(1, 2)))  # (N, ch, F): causal, the context frames are the padding
        x = F.gelu(self.down1(x))
        return self.down2(x).transpose(1, 2)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int) -> np.ndarray:
    """(n_mels, n_fft/2 + 1) triangular filters on the HTK mel scale."""
    def hz_to_mel(f):
        return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)

    def mel_to_hz(m):
        return 700.0 * (10.0 ** (np.asarray(m) / 2595.0) - 1.0)

    edges = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(sample_rate / 2), n_mels + 2))
    freqs = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    return np.maximum(0.0, np.minimum((freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid))).astype(np.float32)


class LogMel:
    """Log-mel frames: 25 ms Hann window, 10 ms hop; frame n ends at sample (n + 1) * hop (causal)."""

    def __init__(self, sample_rate: int, n_mels: int) -> None:
        self.hop = sample_rate // 100
        self.win = sample_rate * 25 // 1000
        self.n_fft = 1 << (self.win - 1).bit_length()
        self.window = np.hanning(self.win).astype(np.float32)
        self.filters = mel_filterbank(sample_rate, self.n_fft, n_mels)

    def frames(self, samples: np.ndarray) -> np.ndarray:
        """samples: (win - hop + n*hop,) history + new audio -> (n, n_mels) log-mel."""
        n = (len(samples) - (self.win - self.hop)) // self.hop
        if n <= 0:
            return np.zeros((0, self.filters.shape[0]), np.float32)
        idx = np.arange(self.win)[None, :] + self.hop * np.arange(n)[:, None]
        spec = np.abs(np.fft.rfft(samples[idx] * self.window, n=self.n_fft)) ** 2
        return np.log(spec.astype(np.float32) @ self.filters.T + 1e-6).astype(np.float32)


@dataclass
class AudioStream:
    """Cuts a block's audio into encoder input, carrying what the next block needs."""
    config: ModelConfig
    logmel: LogMel = field(init=False)
    samples: np.ndarray = field(init=False)   # samples not yet framed (incl. window history)
    mel: np.ndarray = field(init=False)       # left context + frames not yet encoded

    def __post_init__(self) -> None:
        self.logmel = LogMel(self.config.sample_rate, self.config.n_mels)
        self.reset()

    def reset(self) -> None:
        """Called at the start of an episode: silence before it (log of the floor)."""
        self.samples = np.zeros(self.logmel.win - self.logmel.hop, np.float32)
        self.mel = np.full((MEL_CONTEXT, self.config.n_mels), np.log(1e-6), np.float32)

    def push(self, audio: np.ndarray) -> np.ndarray:
        """Called once per block with its audio (16 kHz float32); returns the encoder input
        (MEL_CONTEXT + F, n_mels) with F a multiple of mel_frames_per_token (possibly 0)."""
        hop, per = self.logmel.hop, self.config.mel_frames_per_token
        buf = np.concatenate([self.samples, np.asarray(audio, np.float32)])
        frames = self.logmel.frames(buf)
        self.samples = buf[len(frames) * hop:]
        mel = np.concatenate([self.mel, frames])
        usable = (len(mel) - MEL_CONTEXT) // per * per
        out = mel[:MEL_CONTEXT + usable]
        self.mel = mel[usable:]
        return out
