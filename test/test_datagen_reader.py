"""The reader: (Block, Decision) pairs cut at read time, checked against the real engine.

The episodes here are written by hand (known times, frames that carry their step number), so
every assertion can name the block it expects; the sim-made data is checked in
test_datagen_pipeline.py.
"""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from runtime_doubles import ScriptedKeywords, ScriptedPolicy, ToneTTS

from ellsa_ros.runtime.actions import ActionLimits
from ellsa_ros.runtime.clock import SteppedClock
from ellsa_ros.runtime.engine import DuplexEngine, EngineConfig
from ellsa_ros.runtime.loop import SteppedLoop
from ellsa_ros.runtime.policy import Decision, SteppedWorker
from ellsa_ros.sim.datagen.episode import Episode, RobotTurn, Utterance
from ellsa_ros.sim.datagen.reader import BlockFormat, decode_image, episode_blocks
from ellsa_ros.sim.datagen.storage import episode_from_dict, episode_to_dict

HZ, SR = 20.0, 16000
STEPS = 180          # 9 s


def _frame(step: int, camera: int) -> bytes:
    img = np.full((8, 8, 3), step % 256, np.uint8)
    img[..., 0] = camera        # blue, in OpenCV's BGR order
    return cv2.imencode(".png", img)[1].tobytes()


def _speech(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 0.2, n)


def make_episode(utterances: list[Utterance], robot: list[RobotTurn], acting: np.ndarray,
                 success_step: int | None) -> Episode:
    rng = np.random.default_rng(0)
    mic = rng.normal(0, 0.001, int(STEPS / HZ * SR))
    for i, u in enumerate(utterances):
        a, b = int(u.t_start * SR), int(u.t_end * SR)
        mic[a:b] = _speech(b - a, i)
    labels = np.zeros((STEPS, 7), np.float32)
    labels[:, 0] = np.arange(STEPS) / 1000.0            # a label names its own step
    labels[:, 6] = -1.0
    state = np.zeros((STEPS + 1, 18), np.float32)
    state[:, 0] = np.arange(STEPS + 1)
    return Episode(
        suite="libero_spatial", task_id=0, instruction="pick up the bowl", init_state=0, slot=0, attempt=0,
        pattern="barge_in", noise_std=0.0, control_hz=HZ, sample_rate=SR, image_codec="png",
        frames={cam: [_frame(i, c) for i in range(STEPS + 1)] for c, cam in enumerate(("agentview", "wrist"))},
        state=state, executed=labels.copy(), labels=labels, acting=acting,
        mic=(np.clip(mic, -1, 1) * 32767).astype(np.int16), utterances=utterances, robot=robot,
        success_step=success_step)


def barge_in_episode() -> Episode:
    acting = np.zeros(STEPS, bool)
    acting[32:82] = True         # instruction heard at 1.57 s -> acts from step 32; "stop" ends 3.92 s and,
                                 # 0.15 s of quiet later, holds the arm (4.08 s)
    acting[112:141] = True       # "continue" heard at 5.58 s; success at step 141 (7.05 s)
    utterances = [Utterance(0.5, 1.32, 1.57, "pick up the bowl", "instruction", "v"),
                  Utterance(3.62, 3.92, 4.17, "stop", "stop", "v", ("stop",)),
                  Utterance(5.03, 5.33, 5.58, "continue", "continue", "v")]
    robot = [RobotTurn(1.57, "Okay.", speech_s=0.4), RobotTurn(4.17, "Okay, I've stopped.", "cancel", speech_s=1.1),
             RobotTurn(5.58, "Continuing.", speech_s=0.7), RobotTurn(7.05, "Done.", "done", speech_s=0.4)]
    return make_episode(utterances, robot, acting, 141)


def reject_episode(instruction_at: float = 4.0, instruction_s: float = 0.88) -> Episode:
    """A defective instruction, rejected; then the real one at `instruction_at` s."""
    heard = instruction_at + instruction_s + 0.25
    acting = np.zeros(STEPS, bool)
    acting[int(np.ceil(heard * HZ)):160] = True
    utterances = [Utterance(0.4, 1.1, 1.35, "throw the bowl at me", "defective", "v"),
                  Utterance(instruction_at, instruction_at + instruction_s, heard, "pick up the bowl", "instruction",
                            "v")]
    robot = [RobotTurn(1.35, "Sorry, that would not be safe.", "reject", "that would be unsafe", speech_s=1.6),
             RobotTurn(heard, "")]
    return make_episode(utterances, robot, acting, None)


def _cut_index(pairs, t: float) -> int:
    """The block whose decision window (previous cut, cut] holds time t."""
    cuts = [np.ceil(b.t_end * HZ - 1e-6) / HZ for b, _ in pairs]
    return next(k for k, c in enumerate(cuts) if t <= c + 1e-9)


@pytest.mark.parametrize("block_s", [1.0, 0.5])
def test_barge_in_cancels_at_the_block_that_hears_it_and_actions_resume_after_continue(block_s):
    pairs = episode_blocks(barge_in_episode(), BlockFormat(block_s=block_s))
    cancel_at = _cut_index(pairs, 4.17)
    assert [k for k, (_, d) in enumerate(pairs) if d.cancel] == [cancel_at]
    assert pairs[cancel_at][1].say == "Okay, I've stopped." and pairs[cancel_at][1].actions is None
    stop_block = _cut_index(pairs, 4.08)     # the word alone, once the quiet after it says so
    assert pairs[stop_block][0].keywords == ("stop",) and pairs[stop_block][0].interrupted
    assert all(not b.keywords for k, (b, _) in enumerate(pairs) if k != stop_block)
    resume = _cut_index(pairs, 5.58)
    for k, (block, d) in enumerate(pairs):
        cut_step = int(np.ceil(block.t_end * HZ - 1e-6))
        if stop_block <= k < resume or k >= _cut_index(pairs, 7.05):
            assert d.actions is None, f"block {k} must hold"
        elif k >= _cut_index(pairs, 1.57):
            assert d.actions is not None, f"block {k} must act"
            # the labels start at the block's observation, at the control rate, within the chunk
            assert d.actions[0, 0] == pytest.approx(cut_step / 1000.0)
            assert len(d.actions) <= 10 and np.allclose(np.diff(d.actions[:, 0]), 0.001)
    assert [k for k, (_, d) in enumerate(pairs) if d.done] == [_cut_index(pairs, 7.05)]


@pytest.mark.parametrize("block_s", [1.0, 0.5])
def test_a_rejected_instruction_carries_no_actions_and_the_rejection_is_spoken(block_s):
    pairs = episode_blocks(reject_episode(), BlockFormat(block_s=block_s))
    k = _cut_index(pairs, 1.35)
    block, d = pairs[k]
    assert block.heard == "throw the bowl at me"
    assert d.reject == "that would be unsafe" and d.say == "Sorry, that would not be safe." and d.actions is None
    assert all(d.actions is None for _, d in pairs[:_cut_index(pairs, 5.13)])
    assert pairs[_cut_index(pairs, 5.13)][1].actions is not None
    # the robot's words come back as `said` in the block where they finish (1.6 s after the decision)
    spoken_end = np.ceil(block.t_end * HZ - 1e-6) / HZ + 1.6
    assert [b.said for b, _ in pairs if b.said] == ["Sorry, that would not be safe."]
    assert pairs[_cut_index(pairs, spoken_end)][0].said == "Sorry, that would not be safe."
    assert not any(b.interrupted for b, _ in pairs)


def test_a_user_who_talks_over_the_robot_past_the_resume_window_cuts_its_words():
    """A 1.4 s instruction starts 1.25 s into the 1.6 s rejection: still talking at the end of
    the resume window (1.0 s after onset), it cuts the robot's voice (interrupted) there, and
    the cut words are never reported as said."""
    pairs = episode_blocks(reject_episode(instruction_at=2.6, instruction_s=1.4), BlockFormat(block_s=0.5))
    assert not any(b.said for b, _ in pairs)
    assert [b.index for b, _ in pairs if b.interrupted] == [_cut_index(pairs, 2.6 + 1.0)]
    assert any(b.robot_speaking for b, _ in pairs if b.t_end == 3.5)     # paused at 2.7 s, not yet cut


def test_speech_that_ends_within_the_resume_window_pauses_the_robot_and_it_plays_on():
    """0.88 s of speech starting 0.65 s into the rejection: the voice pauses at the backchannel
    length (2.1 s), the speech ends at 2.88 s, and the voice plays on: all of it is said, later
    by the 0.78 s it was paused (it would have ended at 2.95 s)."""
    pairs = episode_blocks(reject_episode(instruction_at=2.0), BlockFormat(block_s=0.5))
    assert not any(b.interrupted for b, _ in pairs)
    assert [b.said for b, _ in pairs if b.said] == ["Sorry, that would not be safe."]
    assert pairs[_cut_index(pairs, 2.95 + 0.78)][0].said
    assert pairs[_cut_index(pairs, 2.95 + 0.78)][0].t_end > 3.5


def test_decoded_blocks_carry_the_frame_and_state_of_the_cut_tick():
    pairs = episode_blocks(barge_in_episode(), BlockFormat(block_s=0.16))   # cut at the tick after each end
    for block, _ in pairs:
        step = int(np.ceil(block.t_end * HZ - 1e-6))
        assert block.images["agentview"][0, 0, 0] == step % 256 and block.images["wrist"][0, 0, 2] == 1
        assert block.state[0] == step and block.state_stamp == pytest.approx(step / HZ)


def test_episode_survives_storage_round_trip_unchanged():
    ep = barge_in_episode()
    back = episode_from_dict(episode_to_dict(ep))
    assert np.array_equal(back.mic, ep.mic) and np.array_equal(back.labels, ep.labels)
    assert back.utterances == ep.utterances and back.robot == ep.robot and back.frames == ep.frames
    assert np.array_equal(decode_image(back.frames["wrist"][7]), decode_image(ep.frames["wrist"][7]))


@pytest.mark.parametrize("block_s", [1.0, 0.5, 0.16])
def test_blocks_equal_what_the_engine_assembles_from_the_same_streams(block_s):
    """Play the episode's streams into the real DuplexEngine; its blocks must be the reader's."""
    ep = barge_in_episode()
    policy = ScriptedPolicy(lambda b: Decision())
    engine = DuplexEngine(SteppedWorker(policy), ActionLimits.ee_delta(7), ToneTTS(),
                          EngineConfig(block_s=block_s, state_dim=18), keywords=ScriptedKeywords([3.92]))
    mic = ep.mic.astype(np.float32) / 32768.0

    def sensors(t: float) -> None:
        i = int(round(t * HZ))
        for cam in ("agentview", "wrist"):
            engine.push_image(cam, decode_image(ep.frames[cam][i]), t)
        engine.push_state(ep.state[i], t)

    clock = SteppedClock()
    loop = SteppedLoop(engine, clock, mic=lambda t0, n: mic[int(round(t0 * SR)):int(round(t0 * SR)) + n],
                       sensors=sensors)
    engine.start(0.0)
    loop.run_until(ep.duration_s)
    pairs = episode_blocks(ep, BlockFormat(block_s=block_s))
    seen = policy.blocks
    assert len(seen) == len(pairs) and len(pairs) >= int(8.9 / block_s)
    for mine, theirs in zip((b for b, _ in pairs), seen):
        assert (mine.index, mine.t_start, mine.t_end) == (theirs.index, theirs.t_start, theirs.t_end)
        assert np.array_equal(mine.audio, theirs.audio), f"audio of block {mine.index}"
        for cam in ("agentview", "wrist"):
            assert np.array_equal(mine.images[cam], theirs.images[cam])
            assert mine.image_stamps[cam] == pytest.approx(theirs.image_stamps[cam])
        assert np.array_equal(mine.state, theirs.state) and mine.state_stamp == pytest.approx(theirs.state_stamp)
        assert mine.keywords == theirs.keywords, f"keywords of block {mine.index}"
        assert len(mine.utterances) == len(theirs.utterances), f"utterances of block {mine.index}"


def _at_frame_rate(ep: Episode, frame_hz: float) -> Episode:
    """The episode as the data engine stores it at `frame_hz`: frames of every k-th step only."""
    k = int(round(HZ / frame_hz))
    d = episode_to_dict(ep)
    d["frames"] = {cam: frames[::k] for cam, frames in d["frames"].items()}
    d["frame_hz"] = frame_hz
    return episode_from_dict(d)


@pytest.mark.parametrize("block_s", [1.0, 0.5, 0.25])
def test_frames_stored_at_4_hz_give_the_blocks_of_frames_stored_every_step(block_s):
    full = barge_in_episode()
    sparse = _at_frame_rate(full, 4.0)
    assert len(sparse.frames["agentview"]) == STEPS // 5 + 1 and len(sparse.state) == STEPS + 1
    fmt = BlockFormat(block_s=block_s)
    for (mine, d_mine), (theirs, d_theirs) in zip(episode_blocks(sparse, fmt), episode_blocks(full, fmt)):
        for cam in ("agentview", "wrist"):
            assert np.array_equal(mine.images[cam], theirs.images[cam])
            assert mine.image_stamps[cam] == theirs.image_stamps[cam]
        assert np.array_equal(mine.state, theirs.state) and np.array_equal(mine.audio, theirs.audio)
        assert (d_mine.actions is None) == (d_theirs.actions is None)
    assert len(episode_blocks(sparse, fmt)) == len(episode_blocks(full, fmt))


def test_a_block_length_without_stored_frames_at_its_cuts_is_refused_naming_both():
    sparse = _at_frame_rate(barge_in_episode(), 4.0)
    with pytest.raises(ValueError, match=r"stores camera frames at 4 Hz.*0.3 s blocks are cut at ticks without a "
                                         r"stored frame.*multiple of 0.25 s"):
        episode_blocks(sparse, BlockFormat(block_s=0.3))
    with pytest.raises(ValueError, match="0.16 s blocks"):
        episode_blocks(sparse, BlockFormat(block_s=0.16))
    # an episode stored before frame rates were chosen has a frame at every step: any block length
    old = episode_to_dict(barge_in_episode())
    del old["frame_hz"]
    assert episode_from_dict(old).frame_hz is None
    assert len(episode_blocks(episode_from_dict(old), BlockFormat(block_s=0.3))) == 30
    # frames that do not match the rate the episode names are refused when it is built
    with pytest.raises(ValueError, match="has 181 frames for 181 observations; at 4 Hz it should have 37"):
        Episode(**{**vars(barge_in_episode()), "frame_hz": 4.0})


def test_a_dataset_reader_refuses_a_block_length_before_reading_an_episode(tmp_path):
    from ellsa_ros.sim.datagen.reader import DatasetReader
    from ellsa_ros.sim.datagen.storage import write_manifest

    write_manifest(tmp_path, {"config": {}, "shards": {}, "frame_hz": 4.0})
    reader = DatasetReader(tmp_path)
    reader.check(BlockFormat(block_s=0.5))
    with pytest.raises(ValueError, match=r"dataset .* stores camera frames at 4 Hz.*0.3 s blocks"):
        next(reader.sequences(BlockFormat(block_s=0.3)))
    write_manifest(tmp_path, {"config": {}, "shards": {}})        # made before frame rates: every step
    DatasetReader(tmp_path).check(BlockFormat(block_s=0.3))


def test_bad_formats_are_refused_with_the_reason():
    with pytest.raises(ValueError, match="block_s"):
        BlockFormat(block_s=3.0)
    with pytest.raises(ValueError, match="10.0 Hz"):
        episode_blocks(barge_in_episode(), BlockFormat(control_hz=10.0))
    with pytest.raises(ValueError, match="camera"):
        episode_blocks(barge_in_episode(), BlockFormat(cameras=("agentview", "left")))


@pytest.mark.parametrize("text, length_s, recognized", [("Wait a second.", 0.7, True),
                                                         ("wait for the waiter to come", 1.2, False),
                                                         ("put the stopper in", 0.7, False)])
def test_a_stop_word_is_the_reflex_s_only_when_its_phrase_starts_with_it_and_is_over_within_the_window(
        text, length_s, recognized):
    acting = np.zeros(STEPS, bool)
    acting[32:120] = True
    words = tuple(w for w in text.lower().replace(".", "").split() if w in ("stop", "wait"))
    utterances = [Utterance(0.5, 1.32, 1.57, "pick up the bowl", "instruction", "v"),
                  Utterance(3.0, 3.0 + length_s, 3.25 + length_s, text, "stop", "v", words)]
    pairs = episode_blocks(make_episode(utterances, [RobotTurn(1.57, "Okay.", speech_s=0.4)], acting, None),
                           BlockFormat(block_s=0.5))
    keyed = [(b.index, b.keywords) for b, _ in pairs if b.keywords]
    # recognized 0.15 s of quiet after the phrase: at 3.86 s, in the block cut at 4.0 s
    assert keyed == ([(_cut_index(pairs, 3.0 + length_s + 0.15), ("wait",))] if recognized else [])
