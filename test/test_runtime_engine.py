"""The engine on the stepped clock: what happened, and when.

Most tests use doubles for the ears (an energy VAD on noise bursts, a scripted keyword
spotter) to pin the rules down to the frame; the turn-taking and stop-word tests at the end
use the real ones (silero, pocketsphinx, Whisper, the listening front end) on synthesized
speech."""
from __future__ import annotations

from functools import cache

import numpy as np
import pytest
from runtime_doubles import SR, ScriptedKeywords, ScriptedPolicy, ToneTTS, chunk, mic_from_segments

from ellsa_ros.runtime import events as ev
from ellsa_ros.runtime.actions import ActionLimits
from ellsa_ros.runtime.clock import SteppedClock
from ellsa_ros.runtime.engine import DuplexEngine, EngineConfig
from ellsa_ros.runtime.listening import ListeningPolicy
from ellsa_ros.runtime.loop import SteppedLoop
from ellsa_ros.runtime.policy import Decision, SteppedWorker
from ellsa_ros.runtime.reflex import RESUME_QUIET_S

IMG = np.zeros((16, 16, 3), np.uint8)


class Rig:
    """An engine on a stepped clock with fresh sensors, a microphone and an event log."""

    def __init__(self, rule, segments=(), stop_at=(), latency_s=0.0, camera_until=np.inf, tts=None, mic=None,
                 vad=None, keywords=None, front_end=None, asr=None, **cfg):
        self.clock = SteppedClock()
        self.policy = ScriptedPolicy(rule, latency_s=latency_s)
        kws = ScriptedKeywords(list(stop_at)) if stop_at else keywords
        policy = self.policy if asr is None else ListeningPolicy(self.policy, asr)
        self.engine = DuplexEngine(SteppedWorker(policy), ActionLimits.ee_delta(7), tts or ToneTTS(),
                                   EngineConfig(**cfg), vad=vad, keywords=kws, front_end=front_end)
        self.log = ev.EventLog()
        self.engine.events.subscribe(self.log)
        self.speaker: list[tuple[float, float]] = []   # (t0, rms) of each frame the robot played
        self.frames: list[tuple[float, np.ndarray]] = []   # (t0, frame) the robot played
        self.camera_until = camera_until

        def sensors(t):
            if t < self.camera_until:
                self.engine.push_image("agentview", IMG, t)
                self.engine.push_image("wrist", IMG, t)
            self.engine.push_state(np.zeros(8), t)

        def speaker(t0, f):
            self.speaker.append((t0, float(np.sqrt(np.mean(f ** 2)))))
            self.frames.append((t0, f.copy()))

        self.loop = SteppedLoop(self.engine, self.clock, mic=mic or mic_from_segments(list(segments)),
                                sensors=sensors, on_speaker=speaker)
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


class WordTTS:
    """Each word as a tone of 40 ms per letter, words 60 ms apart: a voice whose word starts are known."""
    sample_rate = 16000

    def __init__(self) -> None:
        self.word_starts: list[int] = []      # sample of each word's start in the last rendering

    def render(self, text: str) -> np.ndarray:
        parts, self.word_starts, n = [], [], 0
        for w in text.split():
            tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(int(len(w) * 0.04 * SR)) / SR)
            gap = np.zeros(int(0.06 * SR))
            self.word_starts.append(n)
            parts += [tone, gap]
            n += len(tone) + len(gap)
        return np.concatenate(parts).astype(np.float32)

    def synthesize(self, text: str):
        yield self.render(text)


LONG_SAY = "I am going to tell you a long story about bowls plates and cabinets in this kitchen"


def test_reflex_duration_rule_a_sound_shorter_than_the_backchannel_only_ducks():
    # Energy VAD and a 0.06 s noise burst: the unit rule, not the proof about real backchannels
    # (test_a_spoken_backchannel_pauses_and_resumes is that).
    rig = Rig(first_instruction(say=LONG_SAY), segments=[(2.0, 2.1)]).run(5.0)
    duck = rig.log.first(ev.RobotSpeechDuck)
    unduck = rig.log.first(ev.RobotSpeechUnduck)
    assert duck is not None and unduck is not None and unduck.t > duck.t
    assert rig.log.of(ev.RobotSpeechPause, ev.RobotSpeechCut, ev.RobotSpeechResume) == []
    end = rig.log.first(ev.RobotSpeechEnd)
    assert end is not None and end.text == LONG_SAY
    assert rig.voice_on(unduck.t, unduck.t + 0.5)


def test_a_backchannel_pauses_then_resumes_from_the_start_of_the_word_with_nothing_lost():
    tts = WordTTS()
    full = tts.render(LONG_SAY)
    word = tts.word_starts[LONG_SAY.split().index("cabinets")]
    onset = 1.0 + word / SR                   # the voice starts at 1.0 s; the user speaks as "cabinets" starts
    rig = Rig(first_instruction(say=LONG_SAY), segments=[(onset, onset + 0.5)], tts=tts).run(9.0)
    duck, pause = rig.log.first(ev.RobotSpeechDuck), rig.log.first(ev.RobotSpeechPause)
    resume = rig.log.first(ev.RobotSpeechResume)
    assert duck is not None and onset < duck.t <= onset + 0.06               # energy VAD onset (40 ms)
    assert pause is not None and pause.t == pytest.approx(duck.t + 0.1 - 0.02, abs=1e-6)   # the backchannel length
    assert resume is not None and onset + 0.5 < resume.t <= onset + 0.5 + 0.5   # within 0.5 s of the speech's end
    assert rig.log.of(ev.RobotSpeechCut) == []
    assert rig.voice_on(pause.t, resume.t - 0.02) == []                      # silent while paused
    # What the speaker played: up to the pause, then from the resume on.
    before = np.concatenate([f for t0, f in rig.frames if 1.0 - 1e-9 <= t0 < pause.t - 0.02 - 1e-9])
    after = np.concatenate([f for t0, f in rig.frames if t0 >= resume.t - 0.02 - 1e-9])
    assert word + 0.08 * SR < len(before) < word + 0.32 * SR                 # paused inside "cabinets" ...
    assert resume.replayed_s == pytest.approx((len(before) - word) / SR)      # ... which is said again, whole,
    assert np.array_equal(after[:len(full) - word], full[word:])             # and everything after it
    assert not np.any(after[len(full) - word:])
    end = rig.log.first(ev.RobotSpeechEnd)
    assert end is not None and end.text == LONG_SAY
    assert not any(b.interrupted for b in rig.policy.blocks)                 # a backchannel is no interruption


def test_a_continued_utterance_turns_the_pause_into_a_cut():
    rig = Rig(first_instruction(say=LONG_SAY), segments=[(2.0, 3.5)], tts=WordTTS()).run(4.1)
    duck, pause, cut = (rig.log.first(e) for e in (ev.RobotSpeechDuck, ev.RobotSpeechPause, ev.RobotSpeechCut))
    assert duck is not None and pause is not None and cut is not None
    assert pause.t == pytest.approx(duck.t + 0.1 - 0.02, abs=1e-6)
    assert cut.reason == "barge_in" and cut.t == pytest.approx(duck.t + 1.0 - 0.02, abs=1e-6)   # the resume window
    assert rig.log.of(ev.RobotSpeechResume) == [] and rig.log.first(ev.RobotSpeechEnd) is None
    assert rig.voice_on(pause.t) == [] and rig.voice_on(1.1, 2.0)
    # The model sees the interruption in its next block (3.0-3.5), not in the one it paused in.
    blocks = {b.index: b for b in rig.policy.blocks}
    assert not blocks[2].interrupted and blocks[3].interrupted


def test_a_backchannel_resumes_once_the_user_is_quiet_not_at_the_vads_end_of_speech():
    rig = Rig(first_instruction(say=LONG_SAY), segments=[(2.0, 2.4)], tts=WordTTS()).run(4.0)
    resume, end = rig.log.first(ev.RobotSpeechResume), rig.log.first(ev.UserSpeechEnd)
    assert resume is not None and end is not None
    assert resume.t == pytest.approx(2.4 + RESUME_QUIET_S, abs=0.021)      # quiet 0.2 s after the last sound
    assert resume.t < end.t                                                # the VAD's hangover is not waited for
    assert rig.log.of(ev.RobotSpeechCut) == []


def test_talking_on_after_a_resume_pauses_again_and_past_the_window_cuts():
    # "mm-hmm ... no, the other one": a 0.22 s gap, inside one stretch of the VAD's speech
    rig = Rig(first_instruction(say=LONG_SAY), segments=[(2.0, 2.35), (2.57, 3.4)], tts=WordTTS()).run(4.0)
    turn = [(type(e).__name__, e.t) for e in rig.log.of(ev.RobotSpeechPause, ev.RobotSpeechResume, ev.RobotSpeechCut)]
    assert [name for name, _ in turn] == ["RobotSpeechPause", "RobotSpeechResume", "RobotSpeechPause",
                                          "RobotSpeechCut"]
    assert turn[1][1] == pytest.approx(2.35 + RESUME_QUIET_S, abs=0.021) and 2.57 < turn[2][1] <= 2.65
    assert turn[3][1] == pytest.approx(rig.log.first(ev.RobotSpeechDuck).t + 1.0 - 0.02, abs=1e-6)   # the window
    assert rig.voice_on(turn[2][1] + 0.02) == []


def test_stop_word_alone_halts_actions_at_the_tick_after_it_is_recognized():
    rule = first_instruction(say="Moving.", n=60)   # a 3 s chunk
    rig = Rig(rule, segments=[(1.6, 1.95)], stop_at=[2.01]).run(4.0)   # "stop!" said at 1.6-1.95, spotted at 2.01
    heard = rig.log.first(ev.KeywordHeard)
    halt = rig.log.first(ev.ActionHalt)
    # Recognized once the user has been quiet the stop gap (0.15 s) after the word's last voiced
    # frame (the one ending at 1.96): on the frame ending at 2.12.
    assert heard is not None and heard.word == "stop" and heard.t == pytest.approx(2.12)
    assert halt is not None and halt.reason == "stop_word:stop"
    assert halt.t == pytest.approx(2.15)          # the next control tick after recognition
    assert rig.moving(1.0, 2.15) and rig.moving(2.15) == []
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
    # Inference takes 3 s (3 block lengths); each chunk plans 5 s ahead of its observation, and
    # the part of it that latency made stale is dropped.
    rig = Rig(lambda b: Decision(actions=chunk(100)), latency_s=3.0, late_chunks="skip").run(10.0)
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


def test_a_slow_policy_s_chunks_run_whole_from_their_arrival():
    rig = Rig(lambda b: Decision(actions=chunk(100)), latency_s=3.0).run(10.0)   # late_chunks: shift
    starts = rig.log.of(ev.ActionChunkStart)
    assert [s.t for s in starts] == pytest.approx([4.0, 7.0, 10.0])
    assert [s.shifted for s in starts] == [60, 60, 60] and [s.skipped for s in starts] == [0, 0, 0]
    # each chunk (5 s) outlasts the 3 s to the next: the arm never stands still once it started
    assert all(not c.hold for c in rig.loop.commands if c.t >= 4.0)


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


@pytest.mark.parametrize("transcript, speech_end, recognized, halted", [
    ("Okay.", 1.95, 2.12, 2.15),                  # a word said alone, heard as a backchannel
    ("Mm-hmm, mm-hmm.", 1.95, 2.12, 2.15),        # ... heard twice
    ("put it on the plate", 2.3, 2.46, 2.5)])     # 0.7 s of speech: long enough for a sentence
def test_a_stop_word_heard_as_other_words_releases_the_hold_and_the_plan_goes_on(transcript, speech_end, recognized,
                                                                                  halted):
    # The spotter reports "stop" in an utterance whose transcript is a backchannel or a sentence:
    # the arm holds once the word is recognized, then goes on with every action of its plan.
    def rule(block):
        if block.index == 0:
            return Decision(actions=chunk(60), say="Moving.")
        return Decision(heard=transcript) if block.utterances else Decision()
    rig = Rig(rule, segments=[(1.6, speech_end)], stop_at=[1.9]).run(6.0)
    halt, release = rig.log.first(ev.ActionHalt), rig.log.first(ev.ActionRelease)
    assert halt is not None and halt.t == pytest.approx(halted) and halt.reason == "stop_word:stop"
    # The utterance reaches the policy with block 2 (2.0-3.0); its answer, at 3.0, releases.
    assert release is not None and release.t == pytest.approx(3.0) and release.heard == transcript
    assert release.held_s == pytest.approx(3.0 - recognized)
    assert rig.log.of(ev.ActionChunkCancelled) == []
    assert rig.moving(halted, 3.0) == []                                   # held
    moving = rig.moving()
    assert len(moving) == 60                                               # none dropped, late by the hold
    assert moving[-1].t == pytest.approx(1.0 + 59 * 0.05 + (3.0 - halted))


def test_a_user_who_talks_on_after_a_spotted_word_is_judged_by_the_sentence():
    # "no | no, the other bowl please": the spotted word was short and alone in its stretch of
    # speech, but more speech came before the transcript judged it: the sentence releases the hold.
    def rule(block):
        if block.index == 0:
            return Decision(actions=chunk(60), say="Moving.")
        return Decision(heard="no no, the other bowl please") if block.utterances else Decision()
    rig = Rig(rule, segments=[(2.6, 2.95), (3.3, 3.65)], stop_at=[3.01], block_s=2.0).run(8.0)
    assert rig.log.first(ev.ActionHalt) is not None
    assert rig.log.of(ev.ActionChunkCancelled) == []
    release = rig.log.first(ev.ActionRelease)       # judged with block 1 (2-4 s), both utterances in it
    assert release is not None and release.t == pytest.approx(4.0)
    assert len(rig.moving()) == 60


@pytest.mark.parametrize("transcript", ["Stop.", "Hold.", "wait a second", "and press, press,"])
def test_a_stop_word_whose_transcript_may_be_one_halts(transcript):
    # "and press, press,": a sentence heard in 0.35 s of speech, too short to hold one: the
    # listener filling a short word it did not catch
    def rule(block):
        if block.index == 0:
            return Decision(actions=chunk(60), say="Moving.")
        return Decision(heard=transcript) if block.utterances else Decision()
    rig = Rig(rule, segments=[(1.6, 1.95)], stop_at=[2.01]).run(4.0)
    assert [c.reason for c in rig.log.of(ev.ActionChunkCancelled)] == ["stop_word:stop"]
    assert rig.log.of(ev.ActionRelease) == [] and rig.moving(2.15) == []


@pytest.mark.parametrize("transcript, halted", [("Halt!", "halt"), ("Stop. Stop!", "stop"), ("wait, stop", "wait"),
                                                 ("Halt the music.", None), ("stopper", None)])
def test_a_stop_word_the_spotter_missed_halts_on_its_transcript(transcript, halted):
    # No keyword spotter heard it: the transcript of a stop word said alone halts the arm once it is
    # in (block 2, 2.0-2.5: answered at 2.5), and the decision made with it moves nothing.
    def rule(block):
        if block.index == 0:
            return Decision(actions=chunk(60), say="Moving.")
        return Decision(heard=transcript, actions=chunk(10)) if block.utterances else Decision()
    rig = Rig(rule, segments=[(1.6, 1.9)], block_s=0.5).run(5.0)
    cancelled = rig.log.of(ev.ActionChunkCancelled)
    if halted is None:
        assert cancelled == [] and rig.log.of(ev.ActionHalt) == []
        return
    halt = rig.log.first(ev.ActionHalt)
    assert halt is not None and halt.reason == f"stop_word:{halted}" and halt.t == pytest.approx(2.5)
    assert [c.reason for c in cancelled] == [f"stop_word:{halted}"]
    assert rig.moving(2.5) == [] and rig.log.of(ev.ActionChunkStart)[1:] == []
    assert any(b.interrupted for b in rig.policy.blocks if b.t_start >= 2.5)


@pytest.mark.parametrize("stop_at, handed_by", [([2.01], 2.5), ([], 3.5)])
def test_a_stop_word_is_handed_to_the_listener_as_its_speech_ends(stop_at, handed_by):
    """With the listening front end, an utterance waits for a 1 s pause (the parts of one
    instruction are joined); a recognized stop word goes at once: its transcript judges the hold."""
    from ellsa_ros.speech import make_front_end
    arrived = []

    def rule(block):
        if block.utterances:
            arrived.append(block.t_end)
        return Decision()
    Rig(rule, segments=[(1.6, 1.95)], stop_at=stop_at, front_end=make_front_end(), block_s=0.5).run(4.0)
    assert len(arrived) == 1 and arrived[0] == pytest.approx(handed_by)


def test_a_burst_of_noise_the_spotter_matches_holds_nothing():
    # 60 ms of sound before the user speaks (a knock, noise opening the VAD): the spotter's "stop"
    # in it is no word, and the instruction that follows is not judged as its transcript.
    from ellsa_ros.speech import make_front_end

    def rule(block):
        if block.index == 0:
            return Decision(actions=chunk(60), say="Moving.")
        return Decision(heard="no no, the other bowl please") if block.utterances else Decision()
    rig = Rig(rule, segments=[(1.6, 1.66), (2.4, 3.2)], stop_at=[1.68], front_end=make_front_end()).run(6.0)
    assert rig.log.of(ev.ActionHalt) == [] and rig.log.of(ev.ActionChunkCancelled) == []
    assert len(rig.moving()) == 60


def test_a_stop_word_with_no_transcript_halts_once_judged():
    rig = Rig(first_instruction(say="Moving.", n=60), segments=[(1.6, 1.95)], stop_at=[2.01]).run(4.0)
    cancelled = rig.log.of(ev.ActionChunkCancelled)
    assert [(c.t, c.reason) for c in cancelled] == [(pytest.approx(3.0), "stop_word:stop")]
    assert rig.log.of(ev.ActionRelease) == [] and rig.moving(2.15) == []


@pytest.mark.parametrize("cfg, field", [(dict(backchannel_s=0.5, resume_window_s=0.4), "resume_window_s"),
                                        (dict(backchannel_s=0.0), "backchannel_s"),
                                        (dict(stop_gap_s=0.0), "stop_gap_s"),
                                        (dict(stop_hold_s=0.0), "stop_hold_s")])
def test_turn_taking_settings_that_cannot_work_together_are_refused_naming_them(cfg, field):
    with pytest.raises(ValueError, match=field):
        EngineConfig(**cfg)


def test_stop_words_the_spotter_cannot_hear_are_refused_at_start():
    with pytest.raises(ValueError, match="stop_words is empty"):
        Rig(lambda b: Decision(), stop_at=[1.0], stop_words=())
    spotter = ScriptedKeywords([1.0])
    spotter.words = ("stop",)
    with pytest.raises(ValueError, match=r"stop_words \['halt'\] are not spotted"):
        Rig(lambda b: Decision(), keywords=spotter, stop_words=("stop", "halt"))


# --- the real ears on synthesized speech -------------------------------------------------------

@pytest.fixture
def ears():
    # Fresh for every test: the VAD's room level and the spotter's search carry state across runs.
    from ellsa_ros import speech
    return {"vad": speech.make_vad("silero"), "keywords": SpottedLog(speech.make_keyword_spotter()),
            "front_end": speech.make_front_end(), "asr": speech.make_transcriber()}


class SpottedLog:
    """The real keyword spotter, keeping every word it reported (before the reflex judged it)."""

    def __init__(self, spotter) -> None:
        self.spotter, self.words, self.reported = spotter, spotter.words, []

    def reset(self) -> None:
        self.spotter.reset()

    def process(self, frame):
        heard = self.spotter.process(frame)
        self.reported += heard
        return heard


@cache
def spoken(voice: str, text: str) -> np.ndarray:
    """hibari and espeak-ng render the same text the same way every time (piper does not)."""
    from ellsa_ros.speech import make_tts
    from ellsa_ros.speech.pcm import resample
    name, _, speed = voice.partition("@")
    tts = make_tts(name, **({"speed": float(speed)} if speed else {}))
    audio = resample(np.concatenate(list(tts.synthesize(text))), tts.sample_rate, SR)
    return (0.5 * audio / np.max(np.abs(audio))).astype(np.float32)


def saying(clip: np.ndarray, at_s: float, seed: int = 0):
    """A microphone in a quiet room (-60 dBFS) that hears `clip` from `at_s` on."""
    rng = np.random.default_rng(seed)
    start = int(round(at_s * SR))

    def mic(t0: float, n: int) -> np.ndarray:
        i = int(round(t0 * SR))
        out = (1e-3 * rng.standard_normal(n)).astype(np.float32)
        a, b = max(i, start), min(i + n, start + len(clip))
        if a < b:
            out[a - i:b - i] += clip[a - start:b - start]
        return out
    return mic


def edges(clip: np.ndarray) -> tuple[float, float]:
    loud = np.flatnonzero(np.abs(clip) > 0.05 * np.abs(clip).max())
    return loud[0] / SR, (loud[-1] + 1) / SR


@pytest.mark.parametrize("voice, text", [("hibari", "uh-huh"), ("espeak", "okay"), ("hibari@0.85", "mm-hmm")])
def test_a_spoken_backchannel_pauses_then_resumes_with_nothing_lost(ears, voice, text):
    clip = spoken(voice, text)
    on, off = edges(clip)
    rig = Rig(first_instruction(say=LONG_SAY), mic=saying(clip, 2.0), tts=WordTTS(), **ears).run(8.0)
    pause, resume = rig.log.first(ev.RobotSpeechPause), rig.log.first(ev.RobotSpeechResume)
    assert pause is not None and 2.0 + on < pause.t <= 2.0 + on + 0.3
    # Within 0.5 s of its end; or, where the spotter took it for a stop word and held the arm,
    # once its transcript released the hold.
    release = rig.log.first(ev.ActionRelease)
    assert resume is not None and 2.0 + off < resume.t <= (2.0 + off + 0.5 if release is None else release.t)
    assert rig.log.of(ev.RobotSpeechCut, ev.ActionChunkCancelled) == []
    end = rig.log.first(ev.RobotSpeechEnd)
    assert end is not None and end.text == LONG_SAY
    # No interruption reaches the model (a released stop-word hold still shows its stop word).
    assert not any(b.interrupted for b in rig.policy.blocks if not b.keywords)


def test_place_it_on_the_plate_never_cancels_a_plan(ears):
    # The spotter hears "wait" in "plate" (and "stop" in "stopper"); the arm goes on every time.
    said = [("hibari@1.15", "place it on the plate"), ("hibari", "place it on the plate"),
            ("espeak", "place it on the plate"), ("hibari", "put the stopper in the bottle")]
    for k, (voice, text) in enumerate(said):
        ears["keywords"].reported = []
        rig = Rig(first_instruction(say="Moving.", n=100), mic=saying(spoken(voice, text), 1.5, seed=k), **ears)
        rig.run(8.0)
        assert rig.log.of(ev.ActionChunkCancelled) == [], (voice, text)
        assert len(rig.moving()) == 100, (voice, text)
        assert ears["keywords"].reported, (voice, text, "the spotter heard no stop word: nothing was tested")


@pytest.mark.parametrize("voice, text", [("hibari", "Stop!"), ("hibari@0.85", "Stop."), ("espeak", "Stop.")])
def test_stop_alone_halts_within_one_tick_of_recognition(ears, voice, text):
    clip = spoken(voice, text)
    _, off = edges(clip)
    rig = Rig(first_instruction(say="Moving.", n=60), mic=saying(clip, 1.6), **ears).run(5.0)
    heard, halt = rig.log.first(ev.KeywordHeard), rig.log.first(ev.ActionHalt)
    # Any stop word the spotter reports for it halts (hibari's "Stop!" is first reported as "pause").
    assert heard is not None and heard.word in EngineConfig.stop_words
    assert 1.6 + off - 0.2 <= heard.t <= 1.6 + off + 0.25
    assert halt is not None and halt.reason == f"stop_word:{heard.word}"
    assert heard.t - 1e-9 <= halt.t < heard.t + 0.05      # the first tick at or after recognition
    assert rig.moving(halt.t) == []
    cancelled = rig.log.of(ev.ActionChunkCancelled)   # once the transcript ("Stop.") is in
    assert [c.reason for c in cancelled] == [halt.reason] and rig.log.of(ev.ActionRelease) == []


def test_silence_clipping_and_dc_offset_never_halt(ears):
    t = np.arange(SR) / SR
    clipped_speech = np.clip(8.0 * spoken("hibari", "put the bowl on the plate"), -1.0, 1.0)
    audio = np.concatenate([np.zeros(SR, np.float32),                                  # digital silence
                            np.full(SR, 0.4, np.float32),                              # DC offset
                            np.sign(np.sin(2 * np.pi * 100 * t)).astype(np.float32),   # clipped hum
                            np.ones(SR // 2, np.float32), -np.ones(SR // 2, np.float32),   # stuck at the rails
                            0.4 + clipped_speech.astype(np.float32) * 0.6])           # clipped speech on DC
    rig = Rig(first_instruction(say="Moving.", n=160), mic=lambda t0, n: audio[int(round(t0 * SR)):][:n]
              if int(round(t0 * SR)) + n <= len(audio) else np.zeros(n, np.float32), **ears).run(9.0)
    assert rig.log.of(ev.ActionHalt, ev.KeywordHeard, ev.InvalidInput) == []
    assert len(rig.moving()) == 160
