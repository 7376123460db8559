"""The text tokenizer: a byte-level BPE trained with `tokenizers` on the project's own corpus.

The corpus is every LIBERO task instruction in the installed libero package's bddl files
(`(:language ...)`) plus the robot's reply phrases in assets/robot_replies.txt, each phrase
with `{task}` filled by every instruction. Byte-level: any text encodes, nothing is unknown.
Retrain reproducibly with `python -m ellsa_ros.model.tokenizer_training`.
"""
from __future__ import annotations

import re
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

ASSETS = Path(__file__).parent / "assets"
TEXT_TOKENIZER_PATH = ASSETS / "text_tokenizer.json"
REPLIES_PATH = ASSETS / "robot_replies.txt"
_LANGUAGE = re.compile(r"\(:language\s+([^)]*)\)")


def libero_instructions() -> list[str]:
    """Sorted unique task instructions of the installed libero package (lower case, as spoken)."""
    from libero.libero import get_libero_path

    root = Path(get_libero_path("bddl_files"))
    found = set()
    for path in sorted(root.rglob("*.bddl")):
        for m in _LANGUAGE.finditer(path.read_text(encoding="utf-8", errors="replace")):
            found.add(" ".join(m.group(1).split()).lower())
    if not found:
        raise RuntimeError(f"no (:language ...) instructions found under {root}")
    return sorted(found)


def corpus(instructions: list[str]) -> list[str]:
    """Training lines: the instructions, then every reply phrase (templates filled per instruction)."""
    phrases = [p.strip() for p in REPLIES_PATH.read_text(encoding="utf-8").splitlines()
               if p.strip() and not p.startswith("#")]
    lines = [i.capitalize() + "." for i in instructions] + list(instructions)
    for p in phrases:
        lines += [p.replace("{task}", i) for i in instructions] if "{task}" in p else [p]
    return lines


def train(lines: list[str], vocab_size: int) -> Tokenizer:
    """Deterministic byte-level BPE over `lines`."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=1, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(lines, trainer=trainer)
    return tok


class TextTokenizer:
    """Text <-> text-vocabulary ids (0-based; the model offsets them into its unified vocabulary)."""

    def __init__(self, path: str | Path = TEXT_TOKENIZER_PATH) -> None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"text tokenizer {path} is missing; "
                                    "run python -m ellsa_ros.model.tokenizer_training")
        self._tok = Tokenizer.from_file(str(path))
        self.vocab_size = self._tok.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text).ids

    def decode(self, ids: list[int]) -> str:
        return self._tok.decode(list(ids)).strip()
