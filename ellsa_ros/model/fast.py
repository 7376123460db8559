"""FAST action tokenizer (Pertsch et al. 2025), as ELLSA uses: DCT per action dimension, quantize, BPE.

A chunk (chunk, dof) of actions in [-1, 1] goes through an orthonormal DCT-II along time per
dimension; the coefficients are scaled by `scale` and rounded; the integers are flattened
frequency-major (all dimensions' lowest frequency first, where the energy of smooth motion
is) and written as one symbol each; a BPE trained with `tokenizers` on real trajectories
merges frequent runs (mostly the zeros of the high frequencies). Decoding inverts each step.
Rounding bounds the error: |a - decode(encode(a))| <= `max_abs_error()` per element.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, models, trainers

ASSETS = Path(__file__).parent / "assets"
FAST_TOKENIZER_PATH = ASSETS / "fast_tokenizer.json"
TRAJECTORIES_PATH = ASSETS / "libero_trajectories.npz"
SYMBOL_BASE = 0x100  # integers are written as the unicode characters from here on (no spaces, no controls)


def dct_matrix(n: int) -> np.ndarray:
    """Orthonormal DCT-II (n, n): coeffs = D @ x, x = D.T @ coeffs."""
    k = np.arange(n)[:, None]
    t = np.arange(n)[None, :]
    d = np.cos(np.pi * (t + 0.5) * k / n) * math.sqrt(2.0 / n)
    d[0] /= math.sqrt(2.0)
    return d


class FastQuantizer:
    """DCT + rounding, and the symbol strings the BPE works on."""

    def __init__(self, chunk: int, dof: int, scale: float) -> None:
        self.chunk, self.dof, self.scale = chunk, dof, scale
        self.dct = dct_matrix(chunk)
        # the largest coefficient of a chunk in [-1, 1] is sqrt(chunk) (all ones, lowest frequency)
        self.max_int = int(math.ceil(math.sqrt(chunk) * scale))

    def alphabet(self) -> list[str]:
        return [chr(SYMBOL_BASE + i) for i in range(2 * self.max_int + 1)]

    def to_symbols(self, actions: np.ndarray) -> str:
        a = np.asarray(actions, dtype=np.float64)
        if a.shape != (self.chunk, self.dof):
            raise ValueError(f"action chunk has shape {a.shape}, expected ({self.chunk}, {self.dof})")
        if not np.isfinite(a).all():
            raise ValueError("action chunk contains non-finite values")
        q = np.rint(self.dct @ np.clip(a, -1.0, 1.0) * self.scale).astype(np.int64)  # (chunk, dof) by frequency
        q = np.clip(q, -self.max_int, self.max_int)
        return "".join(chr(SYMBOL_BASE + self.max_int + int(v)) for v in q.reshape(-1))

    def from_symbols(self, symbols: str) -> tuple[np.ndarray, bool]:
        """Returns the (chunk, dof) float32 actions and whether the symbols had to be repaired
        (wrong count: missing high frequencies are zero, extra ones dropped)."""
        n = self.chunk * self.dof
        ints = np.asarray([ord(s) - SYMBOL_BASE - self.max_int for s in symbols], dtype=np.float64)
        repaired = len(ints) != n
        ints = np.concatenate([ints, np.zeros(max(0, n - len(ints)))])[:n]
        a = self.dct.T @ (ints.reshape(self.chunk, self.dof) / self.scale)
        return np.clip(a, -1.0, 1.0).astype(np.float32), repaired

    def max_abs_error(self) -> float:
        """Worst-case per-element round-trip error from rounding (0.5 per coefficient)."""
        return float(0.5 / self.scale * np.abs(self.dct).sum(axis=0).max())


def chunks_of(actions: np.ndarray, lengths: np.ndarray, chunk: int, stride: int = 1) -> np.ndarray:
    """All (chunk, dof) windows inside each episode, (N, chunk, dof)."""
    out, start = [], 0
    for n in lengths:
        ep = actions[start:start + n]
        out += [ep[i:i + chunk] for i in range(0, n - chunk + 1, stride)]
        start += n
    return np.asarray(out, dtype=np.float32)


def train(windows: np.ndarray, chunk: int, dof: int, scale: float, vocab_size: int) -> Tokenizer:
    """Deterministic BPE over the symbol strings of `windows` (N, chunk, dof)."""
    quant = FastQuantizer(chunk, dof, scale)
    tok = Tokenizer(models.BPE())
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, show_progress=False,
                                  initial_alphabet=quant.alphabet(), limit_alphabet=len(quant.alphabet()))
    tok.train_from_iterator((quant.to_symbols(w) for w in windows), trainer=trainer)
    return tok


class FastTokenizer:
    """Action chunk <-> action-vocabulary ids (0-based)."""

    def __init__(self, chunk: int, dof: int, scale: float, path: str | Path = FAST_TOKENIZER_PATH) -> None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"FAST tokenizer {path} is missing; "
                                    "run python -m ellsa_ros.model.tokenizer_training")
        self.quant = FastQuantizer(chunk, dof, scale)
        self._tok = Tokenizer.from_file(str(path))
        self.vocab_size = self._tok.get_vocab_size()
        missing = [s for s in self.quant.alphabet() if self._tok.token_to_id(s) is None]
        if missing:
            raise ValueError(f"FAST tokenizer {path} lacks {len(missing)} of the {len(self.quant.alphabet())} symbols "
                             f"for chunk={chunk}, scale={scale}: it was trained for other settings")
        self._pieces = [self._tok.id_to_token(i) for i in range(self.vocab_size)]

    def encode(self, actions: np.ndarray) -> list[int]:
        return self._tok.encode(self.quant.to_symbols(actions)).ids

    def decode(self, ids: list[int]) -> tuple[np.ndarray, bool]:
        """(chunk, dof) float32 actions, and whether the id sequence needed repair."""
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise ValueError(f"FAST ids {bad[:5]} are outside the action vocabulary of {self.vocab_size}")
        return self.quant.from_symbols("".join(self._pieces[i] for i in ids))

    def max_abs_error(self) -> float:
        return self.quant.max_abs_error()
