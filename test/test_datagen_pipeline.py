"""The data engine on the real simulator: rollouts, shards, resume, determinism, blocks, answers.

One tiny dataset (libero_spatial task 0, two demonstrations at 64 px, one per shard) is made
once for the module: first interrupted after its first shard, then resumed on a local Ray of two
workers (the first shard is not redone).
"""
from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from ellsa_ros.model.config import ModelConfig
from ellsa_ros.model.inputs import camera_images, microphone, proprioception
from ellsa_ros.sim.datagen import generate as gen
from ellsa_ros.sim.datagen.inspect import contact_sheet, dataset_counts
from ellsa_ros.sim.datagen.patterns import PatternShares
from ellsa_ros.sim.datagen.reader import BlockFormat, DatasetReader, episode_blocks
from ellsa_ros.sim.datagen.rollout import RolloutConfig
from ellsa_ros.sim.datagen.scene_talk import what_is_on, where_is
from ellsa_ros.sim.datagen.storage import read_manifest, shard_path
from ellsa_ros.sim.datagen.voices import Voice

SUITE = "libero_spatial"


def tiny_config(out: Path, **kw) -> gen.DatagenConfig:
    rollout = RolloutConfig(voices=(Voice("espeak", "en-us", 1.6),), robot_voice=Voice("espeak", "en-us+m3", 1.3),
                            noise_levels=(0.0,), tail_s=1.0)
    base = dict(out=out, suites=(SUITE,), tasks="0", episodes_per_task=2, shard_size=1, image_size=64,
                rollout=rollout, shares=PatternShares({"defective": 1.0, "barge_in": 1.0}), seed=0)
    return gen.DatagenConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("duplex")
    config = tiny_config(out)
    gen.generate(config, progress=False, stop_after=1)          # interrupted after one shard
    first, second = shard_path(out, SUITE, 0, 0), shard_path(out, SUITE, 0, 1)
    assert first.is_file() and not second.exists()
    second.parent.mkdir(parents=True, exist_ok=True)
    second.with_name(second.name + ".tmp").write_bytes(b"half a shard")   # killed mid-write
    before = first.stat()
    manifest = gen.generate(tiny_config(out, workers=2), progress=False)  # resumed, on Ray workers
    return {"out": out, "config": config, "first_stat": before, "manifest": manifest}


def test_a_resumed_run_keeps_finished_shards_and_completes_the_rest(dataset):
    out = dataset["out"]
    first, second = shard_path(out, SUITE, 0, 0), shard_path(out, SUITE, 0, 1)
    after = first.stat()
    assert (after.st_ino, after.st_mtime_ns) == (dataset["first_stat"].st_ino, dataset["first_stat"].st_mtime_ns)
    assert second.is_file() and not second.with_name(second.name + ".tmp").exists()
    manifest = read_manifest(out)
    assert sorted(h["slots"][0] for h in manifest["shards"].values()) == [0, 1] and manifest["failed"] == {}
    task = manifest["tasks"][f"{SUITE}/0"]
    assert task["kept"] + task["discarded"] == task["attempts"] and task["kept"] == 2
    assert manifest["config"]["shares"]["barge_in"] == 0.5 and manifest["config"]["rollout"]["noise_levels"] == [0.0]
    assert "mujoco" in manifest["versions"] and "espeak-ng" in manifest["versions"]
    assert manifest["frame_hz"] == 4.0 and manifest["config"]["rollout"]["frame_hz"] == 4.0
    # a third run finds nothing to do: neither shard is written again
    second_before = second.stat()
    gen.generate(dataset["config"], progress=False)
    assert (first.stat().st_ino, first.stat().st_mtime_ns) == (after.st_ino, after.st_mtime_ns)
    assert (second.stat().st_ino, second.stat().st_mtime_ns) == (second_before.st_ino, second_before.st_mtime_ns)


def test_other_settings_cannot_resume_a_dataset(dataset):
    with pytest.raises(ValueError, match="seed"):
        gen.generate(tiny_config(dataset["out"], seed=1), progress=False)


def test_a_shard_is_the_same_bytes_whichever_process_makes_it(dataset, tmp_path):
    """Shard 1 was made by a worker process after shard 0; remade here, in this process, it is
    byte-identical: same seed, same data, whatever ran before in the simulator."""
    src = dataset["out"]
    shutil.copytree(src, tmp_path / "copy")
    again = shard_path(tmp_path / "copy", SUITE, 0, 1)
    again.unlink()
    gen.generate(tiny_config(tmp_path / "copy"), progress=False)
    assert again.read_bytes() == shard_path(src, SUITE, 0, 1).read_bytes()


@pytest.mark.parametrize("block_s", [1.0, 0.5])
def test_recorded_episodes_read_as_model_ready_blocks(dataset, block_s):
    model = ModelConfig(image_size=64)
    fmt = BlockFormat.for_model(model, block_s)
    episodes = list(DatasetReader(dataset["out"]).episodes())
    assert sorted(e.pattern for e in episodes) == ["barge_in", "defective"]
    for ep in episodes:
        assert ep.success_step is not None and ep.state.shape == (ep.steps + 1, 18)
        # frames at 4 Hz, everything else at the 20 Hz control rate
        assert ep.frame_hz == 4.0 and len(ep.frames["wrist"]) == ep.steps // 5 + 1 and len(ep.labels) == ep.steps
        pairs = episode_blocks(ep, fmt)
        for block, d in pairs:
            images, present = camera_images(model, block)
            assert present == [True, True] and images.shape == (2, 64, 64, 3)
            assert proprioception(model, block).shape == (18,)
            assert len(microphone(model, block)) == int(round(block_s * 16000))
            if d.reject is not None or d.cancel or d.done:
                assert d.actions is None
            elif d.actions is not None:
                assert d.actions.shape[1] == 7 and 1 <= len(d.actions) <= model.chunk
        controls = [d.control for _, d in pairs if d.control]
        if ep.pattern == "defective":
            assert controls == ["reject", "done"]
            reject = next(k for k, (_, d) in enumerate(pairs) if d.reject)
            assert all(d.actions is None for _, d in pairs[:reject + 1])
            assert pairs[reject][0].heard == next(u.text for u in ep.utterances if u.kind == "defective")
        else:
            assert controls == ["cancel", "done"]
            stop = next(u for u in ep.utterances if u.kind == "stop")
            cancel = next(k for k, (_, d) in enumerate(pairs) if d.cancel)
            # the cancel is decided in the block that hears the stop, not before, not after
            assert pairs[cancel][0].heard == stop.text
            assert pairs[cancel][0].t_end - block_s < stop.heard_t <= pairs[cancel][0].t_end + 0.05
            assert pairs[cancel + 1][1].actions is None


def test_a_block_length_the_stored_frames_cannot_serve_is_refused(dataset):
    with pytest.raises(ValueError, match=r"stores camera frames at 4 Hz.*0.3 s blocks"):
        list(DatasetReader(dataset["out"]).sequences(BlockFormat(block_s=0.3)))
    with pytest.raises(ValueError, match=r"stores camera frames at 4 Hz.*0.3 s blocks"):
        dataset_counts(dataset["out"], block_s=0.3)


def test_answers_match_the_simulator_state(dataset):
    """Put the bowl on the plate in the simulator: the simulator's own goal check and the
    answers derived from its state must agree."""
    env = gen._env_for(dataset["config"], SUITE, 0)
    obs, info = env.reset(seed=0, options={"init_state": 0})
    boxes = info["object_boxes"]
    assert what_is_on(boxes, "plate_1").answer == "Nothing is on the plate."
    assert where_is(boxes, "akita_black_bowl_1").answer.startswith("The black bowl is on the table")
    sim = env._sim_env.sim
    plate_lo, plate_hi = boxes["plate_1"]
    bowl_lo, _ = boxes["akita_black_bowl_1"]
    pose = np.array(sim.data.get_joint_qpos("akita_black_bowl_1_joint0"))
    pose[:2] = (np.asarray(plate_lo[:2]) + np.asarray(plate_hi[:2])) / 2
    pose[2] += plate_hi[2] - bowl_lo[2] + 0.005
    sim.data.set_joint_qpos("akita_black_bowl_1_joint0", pose)
    sim.forward()
    for _ in range(10):
        obs, _, _, _, info = env.step(np.array([0, 0, 0, 0, 0, 0, -1.0]))
    assert info["success"]
    assert what_is_on(info["object_boxes"], "plate_1").answer == "The black bowl is on the plate."
    assert where_is(info["object_boxes"], "akita_black_bowl_1").answer == "The black bowl is on the plate."


def test_inspect_counts_the_dataset_and_draws_a_contact_sheet(dataset, tmp_path):
    counts = dataset_counts(dataset["out"], block_s=1.0)
    assert counts["episodes"] == 2 and counts["patterns"] == {"barge_in": 1, "defective": 1}
    assert counts["utterances"]["instruction"] == 2 and counts["utterances"]["stop"] == 1
    assert counts["robot_turns"]["reject"] == 1 and counts["robot_turns"]["cancel"] == 1
    assert counts["bytes_per_block"] > 0 and counts["blocks"] > 10
    assert counts["frame_hz"] == 4.0 and counts["frames"] == sum(s // 5 + 1 for s in [
        ep.steps for ep in DatasetReader(dataset["out"]).episodes()])
    n = contact_sheet(dataset["out"], tmp_path / "sheet.png", n=4)
    sheet = cv2.imread(str(tmp_path / "sheet.png"))
    assert n == 4 and sheet is not None and sheet.shape[1] == 4 * 160
