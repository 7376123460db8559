"""The shipped tokenizers a config needs (the FAST one only for the FAST action head)."""
from __future__ import annotations

from .config import ModelConfig
from .fast import FastTokenizer
from .text_tokenizer import TextTokenizer


def tokenizers_for(c: ModelConfig) -> tuple[TextTokenizer, FastTokenizer | None]:
    fast = FastTokenizer(c.chunk, c.dof, c.fast_scale) if c.action_head == "fast" else None
    return TextTokenizer(), fast
