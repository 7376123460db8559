"""The engine on the stepped clock: what happened, and when."""
from __future__ import annotations

import numpy as np
import pytest
from runtime_doubles import ScriptedKeywords, ScriptedPolicy, ToneTTS, chunk, mic_from_segments

from ellsa_ros.runtime import events as ev
from ellsa_ros.runtime.actions import ActionLimits
from ellsa_ros.runtime.clock import SteppedClock
from ellsa_ros.runtime.engine import DuplexEngine, EngineConfig
from ellsa_ros.runtime.loop import SteppedLoop
from ellsa_ros.runtime.policy import Decision, SteppedWorker

IMG = np.zeros((16, 16, 3), np.uint8)


class Rig:
    """An engine on a stepped clock with fresh sensors, a microphone and an event log."""

    def __init__(self, rule, segments=(), stop_at=(), latency_s=0.0, camera_until=np.inf, **cfg):
        self.clock = SteppedClock()
        self.policy = ScriptedPolicy(rule, latency_s=latency_s)
        kws = ScriptedKeywords(list(stop_at)) if stop_at else None
        self.engine = DuplexEngine(SteppedWorker(self.policy), ActionLimits.ee_delta(7), ToneTTS(),
                                   EngineConfig(**cfg), keywords=kws)
        self.log = ev.EventLog()
        self.engine.events.subscribe(self.log)
        self.speaker: list[tuple[float, float]] = []   # (t0, rms) of each frame the robot played
        self.camera_until = camera_until

        def sensors(t):
            if t < self.camera_until:
                self.engine.push_image("agentview", IMG, t)
                self.engine.push_image("wrist", IMG, t)
            self.engine.push_state(np.zeros(8), t)

        self.loop = SteppedLoop(self.engine, self.clock, mic=mic_from_segments(list(segments)), sensors=sensors,
                                on_speaker=lambda t0, f: self.speaker.append((t0, float(np.sqrt(np.mean(f ** 2))))))
        self.engine.start(0.0)

    def run(self, t_end):
        self.loop.run_until(t_end)
        return self

    def moving(self, t0=-np.inf, t1=np.inf):
        return [c for c in self.loop.commands if not c.hold and t0 <= c.t < t1]

    def voice_on(self, t0=-np.inf, t1=np.inf):
        return [t for t, rms in self.speaker if rms > 1e-3 and t0 <= t < t1]


def first_instruction(say="Okay, picking up the bowl now.", n=20):
    def rule(block):
        if block.index == 0:
            return Decision(actions=chunk(n), say=say)
        return Decision()
    return rule


def test_speaks_while_acting():
    rig = Rig(first_instruction()).run(3.0)
    start = rig.log.first(ev.ActionChunkStart)
    spoke = rig.log.first(ev.RobotSpeechStart)
    assert start is not None and spoke is not None
    assert start.t == pytest.approx(1.0) and spoke.t == pytest.approx(1.0)
    # Actions stream for the whole 1 s chunk (20 ticks at 20 Hz) while the voice plays.
    moving = rig.moving()
    assert len(moving) == 20 and moving[0].t == pytest.approx(1.0) and moving[-1].t == pytest.approx(1.95)
    overlap = [t for t in rig.voice_on() if 1.0 <= t < 2.0]
    assert len(overlap) >= 40   # 0.8 s of the 1 s of action time is also speech time
    done = rig.log.first(ev.ActionChunkDone)
    assert done is not None and done.t == pytest.approx(1.95)   # its last action went out
    assert all(c.hold for c in rig.loop.commands if c.t >= 2.0)


def test_speech_barge_in_ducks_then_cuts():
    long_say = "I am going to tell you a long story about bowls, plates and cabinets in this kitchen."
    rig = Rig(first_instruction(say=long_say), segments=[(2.0, 3.0)]).run(3.5)
    duck = rig.log.first(ev.RobotSpeechDuck)
    cut = rig.log.first(ev.RobotSpeechCut)
    assert duck is not None and 2.0 < duck.t <= 2.08            # onset + energy VAD onset (40 ms)
    assert cut is not None and cut.reason == "barge_in"
    assert cut.t == pytest.approx(duck.t + 0.3, abs=0.021)       # the backchannel length later
    assert rig.voice_on(cut.t) == []                             # silent from the next frame on
    assert rig.voice_on(1.1, 2.0)                                # and it was speaking before
    assert rig.log.first(ev.RobotSpeechEnd) is None
    # The model sees the interruption in its next block.
    assert rig.policy.blocks[2].interrupted and not rig.policy.blocks[1].interrupted


def test_backchannel_does_not_cut():
    long_say = "I am going to tell you a long story about bowls, plates and cabinets in this kitchen."
    rig = Rig(first_instruction(say=long_say), segments=[(2.0, 2.2)]).run(5.0)
    duck = rig.log.first(ev.RobotSpeechDuck)
    unduck = rig.log.first(ev.RobotSpeechUnduck)
    assert duck is not None and unduck is not None and unduck.t > duck.t
    assert rig.log.first(ev.RobotSpeechCut) is None
    end = rig.log.first(ev.RobotSpeechEnd)
    assert end is not None and end.text == long_say
    assert end.t == pytest.approx(1.0 + len(long_say) * 0.04, abs=0.05)   # played to the last frame
    assert rig.voice_on(unduck.t, unduck.t + 0.5)


def test_stop_word_halts_actions_at_next_tick():
    rule = first_instruction(say="Moving.", n=60)   # a 3 s chunk
    rig = Rig(rule, segments=[(1.6, 1.95)], stop_at=[2.01]).run(4.0)   # "stop!" said at 1.6-1.95
    heard = rig.log.first(ev.KeywordHeard)
    halt = rig.log.first(ev.ActionHalt)
    assert heard is not None and heard.word == "stop" and heard.t == pytest.approx(2.02)
    assert halt is not None and halt.reason == "stop_word:stop"
    assert halt.t == pytest.approx(2.05)          # the next control tick after the word
    assert rig.moving(1.0, 2.05) and rig.moving(2.05) == []
    cancelled = rig.log.of(ev.ActionChunkCancelled)
    assert [c.reason for c in cancelled] == ["stop_word:stop"]
    assert rig.policy.blocks[2].keywords == ("stop",) and rig.policy.blocks[2].interrupted


def test_stop_word_late_in_a_long_utterance_is_left_to_the_model():
    # "put the bowl on the plate" with a spotted "wait" 2 s after the onset: no reflex halt,
    # the arm keeps moving; the model hears the whole utterance in its next block.
    rule = first_instruction(say="Moving.", n=60)
    rig = Rig(rule, segments=[(1.2, 3.5)], stop_at=[3.3]).run(4.0)
    assert rig.log.of(ev.ActionHalt) == [] and rig.log.of(ev.KeywordHeard) == []
    assert len(rig.moving(1.0, 4.0)) == 60


def test_decision_made_before_stop_word_is_void():
    # The policy takes 0.5 s: the answer for block 1 (ending at 2.0) arrives at 2.5, after the stop at 2.2.
    def rule(block):
        return Decision(actions=chunk(20), say="Still going.") if block.index == 1 else Decision()
    rig = Rig(rule, segments=[(1.9, 2.15)], stop_at=[2.2], latency_s=0.5).run(4.0)
    assert rig.moving() == []
    assert rig.log.of(ev.RobotSpeechStart) == []


def test_rejection_runs_no_action_and_is_spoken():
    def rule(block):
        if block.index == 0:
            return Decision(actions=chunk(20), reject="there is no elephant on the table")
        return Decision(actions=chunk(20))   # a naive policy that keeps acting on the rejected instruction
    rig = Rig(rule)
    rig.engine.push_text("pick up the elephant", 0.5)
    rig.run(4.0)
    rej = rig.log.first(ev.Rejection)
    assert rej is not None and rej.t == pytest.approx(1.0) and rej.instruction == "pick up the elephant"
    said = rig.log.first(ev.RobotSpeechStart)
    assert said is not None and "no elephant" in said.text and said.t == pytest.approx(1.0)
    assert rig.voice_on(1.0, 2.0)
    assert rig.moving() == []
    assert rig.log.of(ev.ActionChunkStart) == []


def test_new_instruction_after_rejection_acts_again():
    def rule(block):
        if "elephant" in block.heard:
            return Decision(reject="no elephant here")
        return Decision(actions=chunk(10)) if block.heard else Decision()
    rig = Rig(rule)
    rig.engine.push_text("pick up the elephant", 0.5)
    rig.run(1.5)
    rig.engine.push_text("pick up the bowl", 1.5)
    rig.run(3.0)
    assert rig.moving(0.0, 2.0) == []
    assert len(rig.moving(2.0, 3.0)) == 10


def test_slow_policy_keeps_the_loop_streaming_then_holding():
    # Inference takes 3 s (3 block lengths); each chunk plans 5 s ahead of its observation.
    rig = Rig(lambda b: Decision(actions=chunk(100)), latency_s=3.0).run(10.0)
    ticks = rig.loop.commands
    assert len(ticks) == 201                       # one command every tick: no stall
    starts = rig.log.of(ev.ActionChunkStart)
    assert [s.t for s in starts] == pytest.approx([4.0, 7.0, 10.0])
    # Latency made 3 s of each chunk stale; blocks that queued behind a busy policy were merged
    # into the freshest one, so each later chunk starts from the newest observation.
    assert [s.skipped for s in starts] == [60, 60, 60]
    assert all(c.hold for c in ticks if c.t < 4.0)
    assert all(not c.hold for c in ticks if 4.0 <= c.t < 6.0)
    assert all(c.hold for c in ticks if 6.0 <= c.t < 7.0)      # chunk ran out: hold, no stall
    assert all(not c.hold for c in ticks if 7.0 <= c.t < 8.0)
    merged = rig.log.of(ev.Overrun)
    assert merged and all(o.loop == "policy" for o in merged)
    assert sum(b.dropped_blocks for b in rig.policy.blocks) == len(merged)


def test_stale_camera_holds_and_recovers():
    rig = Rig(first_instruction(n=60), camera_until=1.5).run(3.0)
    stale = [e for e in rig.log.of(ev.StaleInput) if e.t > 0.5]
    assert stale and {e.stream for e in stale} == {"agentview", "wrist"}
    assert stale[0].t == pytest.approx(1.5 - 0.05 + 0.5 + 0.05, abs=0.051)
    assert rig.moving(stale[0].t) == []
    cancel = rig.log.of(ev.ActionChunkCancelled)
    assert cancel and cancel[0].reason.startswith("stale:")
    rig.camera_until = np.inf
    rig.run(3.2)
    assert {e.stream for e in rig.log.of(ev.InputRecovered) if e.t > 3.0} == {"agentview", "wrist"}


def test_nan_and_out_of_range_actions_never_leave_the_queue():
    def rule(block):
        if block.index == 0:
            bad = chunk(20)
            bad[5, 2] = np.nan
            return Decision(actions=bad)
        if block.index == 1:
            return Decision(actions=np.full((20, 7), 5.0, np.float32))
        return Decision()
    rig = Rig(rule).run(3.5)
    invalid = rig.log.of(ev.InvalidInput)
    assert any(e.stream == "actions" and "NaN" in e.reason for e in invalid)
    sent = [c.action for c in rig.loop.commands if c.action is not None]
    assert sent and all(np.all(np.isfinite(a)) for a in sent)
    assert all(np.all(np.abs(a) <= 1.0) for a in sent)
    moving = rig.moving()
    assert len(moving) == 20 and moving[0].t == pytest.approx(2.0)
    # Rate limit: position deltas climb by at most 0.5 per tick from the hold (0) to the clamp (1).
    assert moving[0].action[0] == pytest.approx(0.5) and moving[1].action[0] == pytest.approx(1.0)


def test_bad_inputs_are_dropped_with_a_reason():
    rig = Rig(lambda b: Decision())
    e = rig.engine
    out = e.push_audio(np.zeros(100, np.float32), 0.0)
    assert out.shape == (320,) and not out.any()
    e.push_audio(np.zeros(320, np.float32), 0.0, sample_rate=44100)
    e.push_audio(np.full(320, np.nan, np.float32), 0.0)
    e.push_audio(np.zeros(320, np.float32), 1.0)
    e.push_audio(np.zeros(320, np.float32), 0.5)                         # stamp goes backwards
    assert not e.push_image("agentview", np.zeros((16, 16), np.uint8), 0.0)
    assert not e.push_image("agentview", np.zeros((16, 16, 3), np.float32), 0.0)
    assert not e.push_image("thermal", IMG, 0.0)
    assert not e.push_state(np.array([0.0, np.inf]), 0.0)
    reasons = [(x.stream, x.reason) for x in rig.log.of(ev.InvalidInput)]
    streams = [s for s, _ in reasons]
    assert streams.count("audio") == 4 and streams.count("agentview") == 2
    assert ("thermal" in streams) and ("state" in streams)
    assert any("20–32 ms" in r for _, r in reasons) and any("44100" in r for _, r in reasons)
    assert any("earlier than the previous" in r for _, r in reasons)
    assert [x.count for x in rig.log.of(ev.InvalidInput) if x.stream == "audio"] == [1, 2, 3, 4]


def test_typed_text_reaches_the_next_block_and_reset_forgets():
    rig = Rig(lambda b: Decision(say="Hello.") if b.heard else Decision())
    rig.engine.push_text("hello robot", 0.3)
    rig.run(1.2)
    assert rig.policy.blocks[0].heard == "hello robot"
    rig.engine.reset(1.2)
    assert rig.policy.resets == 1 and rig.policy.blocks == []


def test_plan_shows_look_ahead_after_this_tick():
    rig = Rig(first_instruction(n=20)).run(1.5)
    ahead = rig.engine.plan(1.5)
    assert ahead.shape == (9, 7)                       # ticks 1.55 .. 1.95 remain
    assert ahead[:, 0] == pytest.approx(0.1)
    rig.engine.stop(1.5)
    assert rig.engine.plan(1.5).shape == (0, 7)


def test_a_policy_failing_in_a_row_is_announced_once_and_the_arm_holds():
    def rule(block):
        if block.index in (0, 1, 2, 3, 6):
            raise ValueError(f"block {block.index}: state has 9 values, the model expects 18")
        return Decision(actions=chunk(5)) if block.index == 4 else Decision()
    rig = Rig(rule, block_s=0.5, failing_after=3).run(4.0)
    errors = rig.log.of(ev.PolicyError)
    assert [e.consecutive for e in errors] == [1, 2, 3, 4, 1]
    failing = rig.log.of(ev.PolicyFailing)
    assert len(failing) == 1 and failing[0].failures == 3 and "expects 18" in failing[0].error
    assert failing[0].t == errors[2].t
    # Nothing moved before the first decision (block 4, answered at 2.5 s).
    assert rig.moving(0.0, 2.5) == []
    assert rig.moving(2.5, 3.0)
