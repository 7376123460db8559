"""What the runtime hears in a dataset: the microphone tracks through the real listener
(silero VAD, the engine's reflex segmentation, Whisper), stored beside the shards, and read
back as the blocks' heard text."""
from __future__ import annotations

import json

import pytest

from ellsa_ros import speech
from ellsa_ros.sim.datagen import generate as gen
from ellsa_ros.sim.datagen import storage
from ellsa_ros.sim.datagen.hearing import heard_path, transcribe_dataset
from ellsa_ros.sim.datagen.patterns import PatternShares
from ellsa_ros.sim.datagen.reader import BlockFormat, DatasetReader
from ellsa_ros.sim.datagen.rollout import RolloutConfig
from ellsa_ros.sim.datagen.voices import Voice


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("heard_data")
    rollout = RolloutConfig(voices=(Voice("hibari"),), robot_voice=Voice("espeak", "en-us+m3", 1.3),
                            noise_levels=(0.0,), tail_s=0.5)
    gen.generate(gen.DatagenConfig(out=out, suites=("libero_spatial",), tasks="0", episodes_per_task=1,
                                   shard_size=1, image_size=64, rollout=rollout,
                                   shares=PatternShares({"instruction": 1.0}), seed=0), progress=False)
    return out


@pytest.fixture(scope="module")
def listener():
    return speech.make_vad("silero"), speech.make_transcriber()


def test_transcripts_land_in_the_block_the_runtime_would_hear_them(dataset, listener):
    fmt = BlockFormat(block_s=0.5)
    with pytest.raises(FileNotFoundError, match="ellsa datagen --transcribe"):
        next(DatasetReader(dataset).sequences(BlockFormat(block_s=0.5, heard="asr")))
    counts = transcribe_dataset(dataset, *listener)
    assert counts["made"] == counts["shards"] == 1 and counts["utterances"] >= 1
    truth = next(DatasetReader(dataset).sequences(fmt))
    heard = next(DatasetReader(dataset).sequences(BlockFormat(block_s=0.5, heard="asr")))
    spoken = [(b.index, b.heard) for b, _ in truth if b.heard]
    asr = [(b.index, b.heard) for b, _ in heard if b.heard]
    assert len(spoken) == 1 and len(asr) == 1
    # the same instruction (as Whisper writes it), handed over in the same block or the next
    assert 0 <= asr[0][0] - spoken[0][0] <= 1
    words = set(asr[0][1].lower().replace(",", " ").replace(".", " ").split())
    assert {"bowl", "plate"} <= words, asr
    # everything else about the blocks is the same data
    assert [d.actions is None for _, d in truth] == [d.actions is None for _, d in heard]


def test_the_pass_resumes_and_redoes_what_another_listener_made(dataset, listener):
    transcribe_dataset(dataset, *listener)
    again = transcribe_dataset(dataset, *listener)
    assert again["made"] == 0 and again["kept"] == 1
    rel = next(r for r, h in storage.read_manifest(dataset)["shards"].items() if h["kept"])
    path = heard_path(dataset / rel)
    body = json.loads(path.read_text())
    body["listener"]["asr_config"] = "another model"
    path.write_text(json.dumps(body))
    assert transcribe_dataset(dataset, *listener)["made"] == 1
    assert json.loads(path.read_text())["listener"] != body["listener"]


def test_a_bad_heard_source_is_named():
    with pytest.raises(ValueError, match="heard='whisper'"):
        BlockFormat(heard="whisper")
