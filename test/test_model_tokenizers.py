"""Text BPE and FAST action tokenizers: trained on the project's own data, reproducible, bounded error."""
from __future__ import annotations

import numpy as np
import pytest

from ellsa_ros.model import fast, text_tokenizer
from ellsa_ros.model.config import ACTION_VOCAB_SIZE, TEXT_VOCAB_SIZE, ModelConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")



def test_text_tokenizer_round_trips_libero_instructions_and_replies():
    tok = text_tokenizer.TextTokenizer()
    assert tok.vocab_size == TEXT_VOCAB_SIZE
    instructions = text_tokenizer.libero_instructions()
    assert len(instructions) > 100
    for line in instructions[:50] + ["Sorry, I cannot see that object.", "Stopping."]:
        assert tok.decode(tok.encode(line)) == line
    # in-domain text is compact; unseen words still encode (byte level), only longer
    assert len(tok.encode("pick up the black bowl and place it on the plate")) == 11
    assert tok.decode(tok.encode("Zürich 42 ✓")) == "Zürich 42 ✓"


def test_text_tokenizer_retrains_to_the_shipped_file():
    lines = text_tokenizer.corpus(text_tokenizer.libero_instructions())
    again = text_tokenizer.train(lines, TEXT_VOCAB_SIZE)
    shipped = text_tokenizer.TEXT_TOKENIZER_PATH.read_text(encoding="utf-8")
    assert again.to_str(pretty=True) == shipped


@pytest.fixture(scope="module")
def windows():
    data = np.load(fast.TRAJECTORIES_PATH)
    assert len(data["lengths"]) >= 10
    return fast.chunks_of(data["actions"], data["lengths"], 10, stride=5)


def test_fast_round_trip_error_on_real_trajectories_is_within_the_rounding_bound(windows):
    c = ModelConfig()
    tok = fast.FastTokenizer(c.chunk, c.dof, c.fast_scale)
    assert tok.vocab_size == ACTION_VOCAB_SIZE
    bound = tok.max_abs_error()
    assert bound == pytest.approx(0.1467, abs=1e-4)  # 0.5 / scale * max column sum of |DCT|, chunk 10, scale 10
    errors, lengths = [], []
    for w in windows:
        ids = tok.encode(w)
        decoded, repaired = tok.decode(ids)
        assert not repaired
        errors.append(np.abs(decoded - w).max())
        lengths.append(len(ids))
    assert max(errors) <= bound + 1e-6
    assert float(np.sqrt(np.mean(np.square(errors)))) < 0.06
    assert np.mean(lengths) < 12  # BPE compresses the 70 quantized coefficients to a few tokens


def test_fast_decode_repairs_short_sequences_and_rejects_foreign_ids(windows):
    c = ModelConfig()
    tok = fast.FastTokenizer(c.chunk, c.dof, c.fast_scale)
    ids = tok.encode(windows[3])
    decoded, repaired = tok.decode(ids[:1])
    assert repaired and decoded.shape == (10, 7)
    with pytest.raises(ValueError, match="outside the action vocabulary"):
        tok.decode([ACTION_VOCAB_SIZE + 1])
    with pytest.raises(ValueError, match=r"shape \(3, 7\)"):
        tok.encode(np.zeros((3, 7)))


def test_fast_tokenizer_retrains_to_the_shipped_file():
    c = ModelConfig()
    data = np.load(fast.TRAJECTORIES_PATH)
    again = fast.train(fast.chunks_of(data["actions"], data["lengths"], c.chunk), c.chunk, c.dof, c.fast_scale,
                       ACTION_VOCAB_SIZE)
    assert again.to_str(pretty=True) == fast.FAST_TOKENIZER_PATH.read_text(encoding="utf-8")
