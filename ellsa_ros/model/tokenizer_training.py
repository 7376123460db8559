"""Retrains the shipped tokenizers reproducibly (same inputs, same JSON):

    python -m ellsa_ros.model.tokenizer_training            # both, from the shipped trajectories
    python -m ellsa_ros.model.tokenizer_training --simulate  # regenerate the trajectories first (minutes)

Text: byte-level BPE on the LIBERO instructions + robot replies (text_tokenizer.py).
Actions: FAST BPE on every 10-step window of the scripted LIBERO trajectories (fast.py).
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

from . import fast, sim_trajectories, text_tokenizer
from .config import ACTION_VOCAB_SIZE, TEXT_VOCAB_SIZE, ModelConfig


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="retrain the text and FAST tokenizers shipped in assets/")
    p.add_argument("--simulate", action="store_true", help="regenerate the LIBERO trajectories first")
    args = p.parse_args(argv)
    c = ModelConfig()
    tok = text_tokenizer.train(text_tokenizer.corpus(text_tokenizer.libero_instructions()), TEXT_VOCAB_SIZE)
    if tok.get_vocab_size() != TEXT_VOCAB_SIZE:
        raise RuntimeError(f"text BPE reached {tok.get_vocab_size()} tokens, config says {TEXT_VOCAB_SIZE}")
    tok.save(str(text_tokenizer.TEXT_TOKENIZER_PATH))
    print(f"text tokenizer: {TEXT_VOCAB_SIZE} tokens -> {text_tokenizer.TEXT_TOKENIZER_PATH}", file=sys.stderr)
    if args.simulate:
        sim_trajectories.main(["--out", str(fast.TRAJECTORIES_PATH)])
    data = np.load(fast.TRAJECTORIES_PATH)
    windows = fast.chunks_of(data["actions"], data["lengths"], c.chunk)
    ftok = fast.train(windows, c.chunk, c.dof, c.fast_scale, ACTION_VOCAB_SIZE)
    if ftok.get_vocab_size() != ACTION_VOCAB_SIZE:
        raise RuntimeError(f"FAST BPE reached {ftok.get_vocab_size()} tokens, config says {ACTION_VOCAB_SIZE}")
    ftok.save(str(fast.FAST_TOKENIZER_PATH))
    print(f"FAST tokenizer: {ACTION_VOCAB_SIZE} tokens from {len(windows)} windows -> {fast.FAST_TOKENIZER_PATH}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
