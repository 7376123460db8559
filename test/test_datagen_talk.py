"""What the user says and how: scene answers, defective instructions, patterns, voices, noise."""
from __future__ import annotations

import numpy as np
import pytest

from ellsa_ros.sim.datagen.patterns import PATTERNS, PatternShares, paraphrase, plan_episode
from ellsa_ros.sim.datagen.scene_talk import (
    absent_names,
    defective_instruction,
    how_many,
    is_there,
    resting_on,
    spoken_name,
    what_is_on,
    where_is,
)
from ellsa_ros.sim.datagen.voices import SAMPLE_RATE, Voice, VoiceBox, background_noise, mix_microphone, parse_voice


def box(x, y, z, w=0.1, h=0.05):
    return (np.array([x - w / 2, y - w / 2, z]), np.array([x + w / 2, y + w / 2, z + h]))


# a plate with a bowl on it, a second bowl on the table, a ramekin, and a basket holding the ketchup
SCENE = {
    "plate_1": box(0.0, 0.0, 0.90, w=0.14, h=0.02),
    "akita_black_bowl_1": box(0.01, 0.0, 0.92, w=0.10),
    "akita_black_bowl_2": box(0.3, 0.3, 0.90),
    "glazed_rim_porcelain_ramekin_1": box(-0.2, 0.0, 0.90, w=0.08),
    "basket_1": box(0.3, -0.3, 0.90, w=0.2, h=0.1),
    "ketchup_1": box(0.3, -0.3, 0.91, w=0.05, h=0.12),
}


def test_relations_follow_the_geometry():
    assert resting_on(SCENE, "akita_black_bowl_1") == "plate_1"
    assert resting_on(SCENE, "ketchup_1") == "basket_1"
    assert resting_on(SCENE, "akita_black_bowl_2") is None and resting_on(SCENE, "plate_1") is None


def test_answers_name_what_the_scene_holds():
    assert what_is_on(SCENE, "plate_1").answer == "The black bowl is on the plate."
    assert what_is_on(SCENE, "basket_1").answer == "The ketchup is in the basket."
    assert where_is(SCENE, "glazed_rim_porcelain_ramekin_1").answer == "The ramekin is on the table, next to the plate."
    assert where_is(SCENE, "ketchup_1").answer == "The ketchup is in the basket."
    assert how_many(SCENE, "black bowl").answer == "There are two black bowls."
    assert is_there(SCENE, "banana").answer == "No, I don't see a banana."
    moved = dict(SCENE, akita_black_bowl_1=box(0.5, 0.5, 0.90))
    assert what_is_on(moved, "plate_1").answer == "Nothing is on the plate."


def test_defective_instructions_name_absent_objects_and_are_rejected_with_a_reason():
    rng = np.random.default_rng(0)
    present = {spoken_name(o) for o in SCENE}
    kinds = set()
    for _ in range(60):
        d = defective_instruction(SCENE, rng)
        kinds.add(d.kind)
        assert d.reason and d.reply
        if d.kind == "absent":
            missing = d.reason.removeprefix("there is no ").removesuffix(" here")
            assert missing in d.text and missing not in present and missing in absent_names(SCENE)
    assert kinds == {"absent", "impossible", "unsafe", "unintelligible"}


def test_pattern_shares_are_validated_and_drawn_in_proportion():
    shares = PatternShares.parse("barge_in=3,defective=1")
    assert shares.shares["barge_in"] == pytest.approx(0.75) and shares.shares["instruction"] == 0.0
    rng = np.random.default_rng(1)
    draws = [shares.draw(rng) for _ in range(400)]
    assert set(draws) == {"barge_in", "defective"} and 0.68 < draws.count("barge_in") / 400 < 0.82
    with pytest.raises(ValueError, match="unknown interaction pattern"):
        PatternShares.parse("shouting=1")
    with pytest.raises(ValueError, match="name=share"):
        PatternShares.parse("barge_in")
    with pytest.raises(ValueError, match="sum to 0"):
        PatternShares({"barge_in": 0.0})


def test_every_pattern_plans_what_it_promises():
    rng = np.random.default_rng(2)
    task = "pick up the black bowl and place it on the plate"
    for pattern in PATTERNS:
        plan = plan_episode(pattern, task, SCENE, rng)
        kinds = [d.kind for d in plan.during]
        if pattern == "barge_in":
            assert kinds == ["stop"] and plan.during[0].continue_text
        if pattern == "backchannel":
            assert kinds and set(kinds) == {"backchannel"}
        if pattern == "defective":
            assert plan.before[0].defect is not None
        if pattern == "scene_question":
            assert plan.before and all(b.question is not None for b in plan.before)
        if pattern in ("instruction", "acknowledge"):
            assert not plan.before and not plan.during
    said = paraphrase(task, np.random.default_rng(3))
    assert "black bowl" in said and "plate" in said


def test_voices_parse_and_espeak_speaks_at_the_asked_rate():
    assert parse_voice("espeak:en-us+f2@1.2") == Voice("espeak", "en-us+f2", 1.2)
    with pytest.raises(ValueError, match="backend"):
        parse_voice("festival")
    box_ = VoiceBox()
    slow = box_.synthesize(Voice("espeak", "en-us", 1.0), "pick up the black bowl")
    fast = box_.synthesize(Voice("espeak", "en-us", 1.5), "pick up the black bowl")
    assert 0.5 < len(slow) / SAMPLE_RATE < 3.0
    assert len(fast) == pytest.approx(len(slow) / 1.5, rel=0.02)


def test_noise_has_its_level_and_speech_lands_at_its_time():
    rng = np.random.default_rng(0)
    for kind in ("white", "pink", "brown", "hum"):
        x = background_noise(kind, SAMPLE_RATE, -40.0, rng)
        assert 20 * np.log10(np.sqrt(np.mean(x.astype(np.float64) ** 2))) == pytest.approx(-40.0, abs=0.1)
    tone = np.full(1600, 0.5, np.float32)
    mic = mix_microphone(1.0, [(0.5, tone, 1.0)], np.zeros(SAMPLE_RATE, np.float32))
    assert mic.dtype == np.int16 and np.flatnonzero(mic).tolist() == list(range(8000, 9600))
    with pytest.raises(ValueError, match="noise kind"):
        background_noise("rain", 10, -40.0, rng)
