"""The engine's parts alone: action queue, scheduler, workers, speech output, energy VAD."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from runtime_doubles import ScriptedPolicy, ToneTTS, speech_like

from ellsa_ros.runtime.actions import ActionChunk, ActionLimits, ActionQueue, QueueConfig
from ellsa_ros.runtime.blocks import Block, check_block_s
from ellsa_ros.runtime.clock import RateScheduler, SteppedClock
from ellsa_ros.runtime.hearing import EnergyVAD
from ellsa_ros.runtime.policy import Decision, SteppedWorker, ThreadedWorker
from ellsa_ros.runtime.speech_out import SpeechOutput, split_sentences


def ramp(n, start=0.0, step=0.01, dof=7):
    a = np.zeros((n, dof), np.float32)
    a[:, 0] = start + step * np.arange(n)
    return a


def queue(mode="blend", committed=1, ramp_n=4, late="skip"):
    limits = ActionLimits.ee_delta(7, max_step=10.0)
    return ActionQueue(limits, QueueConfig(20.0, mode, committed, ramp_n, late))


def test_queue_drops_actions_that_latency_made_stale():
    q = queue(late="skip")
    r = q.add(ActionChunk(ramp(10), t_start=1.0, hz=20.0), now=1.2)   # 4 ticks late
    assert r.accepted and r.skipped == 4 and r.shifted == 0
    assert q.tick(1.2).action[0] == pytest.approx(0.04)


def test_a_late_chunk_runs_whole_from_its_arrival_and_chunks_tile():
    assert QueueConfig().late == "shift"
    q = queue(late="shift")
    r = q.add(ActionChunk(ramp(10), t_start=1.0, hz=20.0, chunk_id=1), now=1.1)   # 2 ticks late
    assert r.accepted and r.skipped == 0 and r.shifted == 2
    # the next block's chunk starts at 1.5 and arrives as late, when the first has just run out
    got = [q.tick(1.1 + 0.05 * i) for i in range(10)]
    q.add(ActionChunk(ramp(10, 0.5), t_start=1.5, hz=20.0, chunk_id=2), now=1.6)
    got += [q.tick(1.6 + 0.05 * i) for i in range(11)]
    assert not any(c.hold for c in got[:20]) and got[20].hold      # 20 actions, no gap, then the plan ends
    assert [c.action[0] for c in got[:20]] == pytest.approx([0.01 * k for k in range(10)] +
                                                            [0.5 + 0.01 * k for k in range(10)])
    assert [c.chunk_id for c in got[:20]] == [1] * 10 + [2] * 10


def test_queue_keeps_the_committed_prefix_and_blends_the_overlap():
    q = queue(mode="blend", committed=2, ramp_n=4, late="skip")
    q.add(ActionChunk(ramp(20, 0.0), 1.0, 20.0, chunk_id=1), now=1.0)
    q.tick(1.0)
    r = q.add(ActionChunk(ramp(20, 1.0, 0.0), 1.0, 20.0, chunk_id=2), now=1.05)  # new plan: constant 1.0
    assert r.skipped == 1 and r.kept_committed == 2
    got = [q.tick(1.05 + 0.05 * i).action[0] for i in range(8)]
    # ticks 21, 22 committed (old plan), then the overlap ramps in with weights 1/4, 2/4, 3/4, 1
    old = [0.01 * k for k in range(1, 9)]
    want = old[:2] + [old[2 + i] * (1 - w) + 1.0 * w for i, w in enumerate([0.25, 0.5, 0.75, 1.0])] + [1.0, 1.0]
    assert got == pytest.approx(want, abs=1e-6)


def test_queue_replace_mode_switches_after_the_committed_prefix():
    q = queue(mode="replace", committed=1)
    q.add(ActionChunk(ramp(20, 0.0), 1.0, 20.0, 1), now=1.0)
    q.add(ActionChunk(ramp(20, 1.0, 0.0), 1.0, 20.0, 2), now=1.0)
    got = [q.tick(1.0 + 0.05 * i) for i in range(4)]
    assert [c.action[0] for c in got] == pytest.approx([0.0, 1.0, 1.0, 1.0])   # this tick's action is committed
    assert [c.chunk_id for c in got] == [1, 2, 2, 2]


def test_queue_underrun_holds_last_safe_command():
    q = queue()
    a = ramp(2, 0.2)
    a[:, -1] = 1.0   # gripper closed
    q.add(ActionChunk(a, 0.0, 20.0), now=0.0)
    q.tick(0.0)
    q.tick(0.05)
    held = q.tick(0.10)
    assert held.hold and held.action[0] == 0.0 and held.action[-1] == 1.0   # deltas stop, gripper stays shut


def test_queue_refuses_non_finite_and_wrong_shapes():
    q = queue()
    bad = ramp(5)
    bad[2, 3] = np.inf
    assert not q.add(ActionChunk(bad, 0.0, 20.0), 0.0).accepted
    assert "NaN or inf" in q.add(ActionChunk(bad, 0.0, 20.0), 0.0).reason
    assert "expected (n, 7)" in q.add(ActionChunk(np.zeros((5, 6)), 0.0, 20.0), 0.0).reason
    assert len(q) == 0 and q.tick(0.0).hold


def test_limits_are_validated():
    with pytest.raises(ValueError, match="shapes differ"):
        ActionLimits(np.zeros(3), np.ones(3), np.ones(2), np.zeros(3, bool))
    with pytest.raises(ValueError, match="low > high"):
        ActionLimits(np.ones(2), np.zeros(2), np.ones(2), np.zeros(2, bool))
    with pytest.raises(ValueError, match="block_s"):
        check_block_s(0.1)


def test_scheduler_has_no_drift_and_counts_overruns():
    clock = SteppedClock(0.0)
    s = RateScheduler(clock, 20.0)
    s.start(0.0)
    ticks = [s.wait() for _ in range(5)]
    assert [t.deadline for t in ticks] == pytest.approx([0.0, 0.05, 0.1, 0.15, 0.2])
    clock.advance(0.18)                 # the tick at 0.2 ran until 0.38
    t = s.wait()
    assert t.missed == 2 and s.overruns == 1          # 0.25 and 0.30 skipped, not fired in a burst
    assert t.deadline == pytest.approx(0.35) and t.late_s == pytest.approx(0.03)
    for _ in range(1000):
        t = s.wait()
    assert t.deadline == pytest.approx(0.35 + 1000 * 0.05)   # still on the grid


def test_stepped_worker_releases_after_declared_latency():
    pol = ScriptedPolicy(lambda b: Decision(say=f"block {b.index}"), latency_s=0.3)
    w = SteppedWorker(pol)
    w.submit(_block(0), now=1.0)
    assert w.poll(1.29) == []
    (ans,) = w.poll(1.3)
    assert ans.decision.say == "block 0" and ans.ready_at == pytest.approx(1.3)


def test_threaded_worker_never_blocks_the_caller():
    release = threading.Event()

    def rule(block):
        release.wait(10.0)
        return Decision(say="late")
    w = ThreadedWorker(ScriptedPolicy(rule))
    w.submit(_block(0), now=0.0)
    polls = 0
    t_end = time.monotonic() + 0.2
    while time.monotonic() < t_end:      # the control loop keeps polling while inference is stuck
        assert w.poll(0.0) == []
        polls += 1
    assert polls > 100 and w.busy
    release.set()
    for _ in range(200):
        answers = w.poll(0.0)
        if answers:
            break
        time.sleep(0.01)
    assert answers[0].decision.say == "late"
    w.close()


def test_worker_reports_policy_errors_as_answers():
    def rule(block):
        raise RuntimeError("model exploded")
    w = SteppedWorker(ScriptedPolicy(rule))
    w.submit(_block(0), 0.0)
    (ans,) = w.poll(0.0)
    assert ans.decision is None and "model exploded" in ans.error


def test_speech_output_cuts_within_one_frame():
    out = SpeechOutput(ToneTTS(), 16000, 320, synchronous=True)
    out.say("Hello there. This is a test of cutting.")
    frames = [out.next_frame()[0] for _ in range(3)]
    assert all(np.abs(f).max() > 0.1 for f in frames)
    out.duck()
    assert np.abs(out.next_frame()[0]).max() == pytest.approx(0.3 * 0.25, rel=0.05)
    assert out.cut() is True
    assert not out.next_frame()[0].any() and not out.speaking


def test_speech_output_reports_finished_text():
    out = SpeechOutput(ToneTTS(0.001), 16000, 320, synchronous=True)
    out.say("Done.")
    finished = [out.next_frame()[1] for _ in range(3)]
    assert finished[:2] == [None, "Done."] or finished == [None, None, "Done."]
    assert out.take_spoken_text() == "Done."


def test_sentences_split_at_punctuation():
    assert split_sentences("Okay. I will put the bowl on the plate, then wait!") == [
        "Okay. I will put the bowl on the plate,", "then wait!"]


def test_energy_vad_hysteresis():
    vad = EnergyVAD()
    quiet = np.full(320, 1e-4, np.float32)
    loud = speech_like(320)
    states = [vad.is_speech(quiet) for _ in range(10)]
    states += [vad.is_speech(loud) for _ in range(5)]
    states += [vad.is_speech(quiet) for _ in range(20)]
    assert states[:10] == [False] * 10
    assert states[10] is False and states[11] is True      # 40 ms onset
    off = states.index(False, 12)
    assert off == 15 + 12                                   # 250 ms hangover (12.5 frames)


def _block(i):
    return Block(i, 0.0, 1.0, np.zeros(16000, np.float32), 16000, {}, {}, None, None)


def test_upcoming_shows_the_plan_as_the_arm_will_get_it():
    q = ActionQueue(ActionLimits.ee_delta(7, max_step=0.3), QueueConfig(20.0, "replace", 1, 1))
    a = np.zeros((4, 7), np.float32)
    a[:, 0] = [0.2, 0.9, 2.0, 0.9]
    q.add(ActionChunk(a, 1.0, 20.0), now=1.0)
    t, plan = q.upcoming(1.0)
    assert t == pytest.approx(1.0)
    assert plan[:, 0] == pytest.approx([0.2, 0.5, 0.8, 0.9])          # rate-limited and clamped
    assert [q.tick(1.0 + 0.05 * i).action[0] for i in range(4)] == pytest.approx(plan[:, 0])
