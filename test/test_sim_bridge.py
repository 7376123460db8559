"""The sim bridge end to end: real LIBERO, real engine, real TTS and VAD, on the stepped clock.

The policy is a small test policy (sim_policies.ReachPolicy): the bridge is under test.
Episodes are short (<= 100 steps at 64 px) and each runs once per module.
"""
from __future__ import annotations

import numpy as np
import pytest
from sim_policies import ReachPolicy
from sim_voices import EspeakTTS, make_tts, make_vad, shared_env

from ellsa_ros.runtime import events as ev
from ellsa_ros.runtime.actions import ActionLimits, Command
from ellsa_ros.runtime.engine import DuplexEngine, EngineConfig
from ellsa_ros.runtime.policy import SteppedWorker
from ellsa_ros.sim.bridge import BridgeConfig, SimBridge, command_to_action
from ellsa_ros.sim.microphone import ScriptedMicrophone, synthesize
from ellsa_ros.sim.scenario import Expectations, Scenario, UserEvent

LATENCY_S = 0.1
FRAME_S = 0.032


class Rig:
    """The bridge over the shared simulator, with a fresh engine (and ReachPolicy) per episode."""

    def __init__(self, replies, target=None, record_frames=False, camera_hz=None, keywords=None, **engine):
        self.env = shared_env()
        self.policy = ReachPolicy(target=target, replies=replies, latency_s=LATENCY_S)
        self.tts, self.vad, self.keywords = make_tts(), make_vad(), keywords
        self.engines: list[DuplexEngine] = []
        self.engine_config = dict(frame_ms=1000 * FRAME_S, image_size=(64, 64), state_dim=18, **engine)
        self.bridge = SimBridge(self.env, self.make_engine, self.tts,
                                BridgeConfig(record_frames=record_frames, camera_hz=camera_hz))

    def make_engine(self) -> DuplexEngine:
        engine = DuplexEngine(SteppedWorker(self.policy), ActionLimits.ee_delta(7), self.tts,
                              EngineConfig(**self.engine_config), vad=self.vad, keywords=self.keywords)
        self.log = ev.EventLog()
        engine.events.subscribe(self.log)
        self.engines.append(engine)
        return engine


@pytest.fixture(scope="module")
def stop_episode():
    env = shared_env()
    _, info = env.reset(options={"init_state": 0})
    target = info["objects"]["akita_black_bowl_1"] + np.array([0.0, 0.0, 0.12])
    from ellsa_ros.speech import make_keyword_spotter
    rig = Rig(("act", "cancel"), target=target, record_frames=True, keywords=make_keyword_spotter())
    # Timed for voices of any speed: the instruction ends well before 2 s, "stop" before 4 s.
    scenario = Scenario("spoken_then_stop", (UserEvent(0.2, "say", "pick up the bowl"),
                                             UserEvent(3.0, "stop", "stop")),
                        Expectations(success=False, halted=True, halt_within_s=1.5, speech_overlaps_action=True),
                        duration_s=5.0)
    result = rig.bridge.run(scenario, init_state=0, seed=0)
    return rig, result, target


def test_microphone_places_speech_at_its_time():
    tts = EspeakTTS()
    mic = ScriptedMicrophone(16000, noise_rms=0.003, speech_peak=0.5)
    speech = synthesize(tts, "stop")
    u = mic.place(0.5, speech, "stop", "stop")
    assert u.t_end == pytest.approx(0.5 + len(speech) / 16000)
    audio = np.concatenate([mic(k * 0.02, 320) for k in range(int(round(u.t_end / 0.02)) + 10)])
    before, during = audio[:8000], audio[8000:int(u.t_end * 16000)]
    assert np.sqrt(np.mean(before ** 2)) == pytest.approx(0.003, rel=0.2)     # room noise only
    assert np.max(np.abs(during)) == pytest.approx(0.5, abs=0.02)             # the words, at their level
    assert np.array_equal(mic.recording(), audio)


def test_hold_before_any_action_keeps_the_gripper_open():
    assert command_to_action(Command(0.0, None, hold=True)).tolist() == [0, 0, 0, 0, 0, 0, -1]
    held = np.array([0, 0, 0, 0, 0, 0, 1.0], np.float32)   # the engine's hold: zero deltas, gripper kept
    assert command_to_action(Command(1.0, held, hold=True)).tolist() == [0, 0, 0, 0, 0, 0, 1.0]
    with pytest.raises(ValueError, match="shape"):
        command_to_action(Command(1.0, np.zeros(6, np.float32), hold=False))


def test_state_arrives_every_tick_cameras_at_the_camera_rate_and_blocks_carry_them(stop_episode):
    rig, result, _ = stop_episode
    assert result.error is None
    assert result.steps == 100 and result.sim_time_s == pytest.approx(5.0)
    assert [t for t, _ in result.states] == pytest.approx([k * 0.05 for k in range(100)])
    # 1 s blocks and a 0.5 s camera max age: both cameras at 2 Hz (on every cut), the agentview
    # alone on the other ticks of the 10 fps video; nothing rendered on the rest
    assert [t for t, _ in result.frames] == pytest.approx([k * 0.05 for k in range(0, 100, 2)])
    for t, images in result.frames:
        assert set(images) == ({"agentview", "wrist"} if round(t / 0.05) % 10 == 0 else {"agentview"})
    blocks = rig.policy.blocks
    assert [b.t_end for b in blocks] == pytest.approx([1.0, 2.0, 3.0, 4.0])
    for b in blocks:   # the latest observation of each block is the one pushed on its last tick
        assert b.image_stamps == {"agentview": pytest.approx(b.t_end), "wrist": pytest.approx(b.t_end)}
        assert b.state_stamp == pytest.approx(b.t_end) and b.state.shape == (18,)
        assert b.images["agentview"].shape == (64, 64, 3)
    # No input went stale after the first audio frame arrived.
    assert [e for e in rig.log.of(ev.StaleInput) if e.t > 0.05] == []


def test_spoken_instruction_is_heard_then_acted_on_at_the_block_end(stop_episode):
    rig, result, target = stop_episode
    said = result.script[0]
    assert (said["kind"], said["t_start"]) == ("say", 0.2) and said["t_end"] > 0.7
    start = rig.log.first(ev.UserSpeechStart)
    end = rig.log.first(ev.UserSpeechEnd)
    assert 0.2 < start.t <= 0.2 + 0.2                       # espeak's lead-in and the VAD's onset
    assert said["t_end"] <= end.t <= said["t_end"] + 0.35   # hangover after the last word
    heard = next(b for b in rig.policy.blocks if b.utterances)
    assert heard.t_start <= end.t <= heard.t_end
    chunk = rig.log.first(ev.ActionChunkStart)
    assert chunk.t == pytest.approx(heard.t_end + LATENCY_S)   # the policy's latency, in sim time
    first_motion = min(t for t, moving in result.motion if moving)
    assert first_motion == pytest.approx(chunk.t)
    states = [b.state[:3] for b in rig.policy.blocks]
    assert np.linalg.norm(states[-1] - target) < np.linalg.norm(states[0] - target) - 0.05


def test_spoken_stop_halts_the_arm(stop_episode):
    # The real keyword spotter halts it, within the README's 250 ms of the word's end and one
    # control tick, long before the policy (which cancels on the transcript) could.
    rig, result, _ = stop_episode
    halt = rig.log.first(ev.ActionHalt)
    said = result.script[1]
    assert said["kind"] == "stop" and said["t_start"] == 3.0
    clip = synthesize(rig.tts, "stop")                  # the same voice: where the word itself ends
    loud = np.nonzero(np.abs(clip) > 0.02 * np.max(np.abs(clip)))[0]
    word_end = 3.0 + (loud[-1] + 1) / 16000
    assert halt is not None and halt.reason.startswith("stop_word:")
    assert word_end < halt.t <= word_end + 0.25 + 0.05
    assert result.metrics["halted"] is True
    assert result.metrics["halt_latency_s"] == pytest.approx(halt.t - 3.0)
    assert not any(moving for t, moving in result.motion if t >= halt.t)
    assert result.checks["halt_within_s"]["ok"] and result.passed


def test_robot_voice_is_recorded_while_the_arm_moves(stop_episode):
    rig, result, _ = stop_episode
    spoke = rig.log.first(ev.RobotSpeechStart)
    voice = [t0 for t0, f in zip(np.arange(len(result.voice_audio) // 512) * FRAME_S,
                                 result.voice_audio.reshape(-1, 512)) if np.sqrt(np.mean(f ** 2)) > 1e-3]
    # It plays from the first audio frame that completes after the reply: the frame ending in (t, t + 32 ms].
    assert voice and spoke.t < voice[0] + FRAME_S <= spoke.t + FRAME_S + 1e-9
    assert result.metrics["speech_action_overlap_s"] > 0.5
    assert len(result.heard_audio) == len(result.voice_audio)   # one speaker frame per microphone frame


def test_episode_is_written_as_video_and_rosbag(stop_episode, tmp_path):
    import imageio.v2 as imageio
    from mcap_ros2.reader import read_ros2_messages

    from ellsa_ros.sim.bag import write_bag
    from ellsa_ros.sim.video import write_video
    _, result, _ = stop_episode
    video = write_video(tmp_path / "episode.mp4", result)
    frames = [f for f in imageio.get_reader(str(video))]   # list() asks len(), which is unknown for mp4
    assert len(frames) == result.steps // 2 and frames[0].shape[:2] == (512, 384)   # 10 fps, the agentview
    bag = write_bag(tmp_path / "bag", result)
    counts: dict[str, int] = {}
    kinds = []
    for m in read_ros2_messages(str(next(bag.glob("*.mcap")))):
        counts[m.channel.topic] = counts.get(m.channel.topic, 0) + 1
        if m.channel.topic == "/events":
            kinds.append(m.ros_msg.data)
    # the bag holds every rendered frame: the agentview at 10 fps, the wrist at the 2 Hz camera rate
    assert counts["/joint_states"] == result.steps
    assert counts["/agentview/image"] == result.steps // 2 and counts["/wrist/image"] == result.steps // 10
    assert counts["/events"] == len(result.events) and any("action_halt" in k for k in kinds)
    assert counts["/audio/heard"] == int(np.ceil(len(result.heard_audio) / 1600))


def test_typed_instruction_and_spoken_question_are_answered_while_acting():
    rig = Rig(("act", "say:I am holding the black bowl."))
    scenario = Scenario("typed_then_question", (UserEvent(0.2, "say", "pick up the black bowl", typed=True),
                                                UserEvent(1.2, "ask", "what are you holding?")),
                        Expectations(answer_contains=("bowl",), speech_overlaps_action=True), duration_s=4.0)
    result = rig.bridge.run(scenario, init_state=1, seed=1)
    assert result.error is None and result.steps == 80
    typed = rig.log.first(ev.UserTranscript)
    assert typed.source == "typed" and typed.t == pytest.approx(0.2)   # the first tick at or after 0.2 s
    assert rig.policy.blocks[0].heard == "pick up the black bowl"
    assert rig.log.first(ev.ActionChunkStart).t == pytest.approx(1.0 + LATENCY_S)
    ask = result.script[1]
    heard = next(b for b in rig.policy.blocks if b.utterances)
    assert heard.t_end >= ask["t_end"]
    answer = [e for e in rig.log.of(ev.RobotSpeechStart) if e.t >= ask["t_start"]]
    assert [e.t for e in answer] == pytest.approx([heard.t_end + LATENCY_S])
    assert "bowl" in result.metrics["answer"] and result.checks["answer_contains"]["ok"]
    assert result.checks["speech_overlaps_action"]["ok"] and result.passed
    # The question barged in on "Okay, I am reaching ...": the robot's voice was cut, then it answered.
    assert [(line["who"], line["source"]) for line in result.transcript] == \
        [("user", "typed"), ("robot", "policy"), ("robot", "cut:barge_in"), ("robot", "policy")]



def _typed_reach(rig: Rig, seed: int = 2):
    scenario = Scenario("typed_reach", (UserEvent(0.2, "say", "pick up the black bowl", typed=True),),
                        Expectations(), duration_s=3.0)
    return rig.bridge.run(scenario, init_state=3, seed=seed)


def test_block_cut_frames_equal_those_of_a_camera_rendered_every_tick():
    """The same episode twice: cameras rendered on every tick, and at the default rate (2 Hz at
    0.5 s blocks). The policy gets the same images, pixel for pixel, with the same stamps."""
    every_tick = Rig(("act",), camera_hz=20.0, block_s=0.5)
    every_result = _typed_reach(every_tick)
    reference = list(every_tick.policy.blocks)
    on_demand = Rig(("act",), block_s=0.5)
    result = _typed_reach(on_demand)
    assert every_result.error is None and result.error is None
    assert len(reference) == len(on_demand.policy.blocks) == 5    # cut at 0.5 .. 2.5 s of 3 s
    assert any(b.acting for b in reference)                     # the arm moved: the frames differ over time
    for mine, theirs in zip(on_demand.policy.blocks, reference):
        assert mine.image_stamps == theirs.image_stamps == {"agentview": pytest.approx(mine.t_end),
                                                              "wrist": pytest.approx(mine.t_end)}
        for camera in ("agentview", "wrist"):
            assert np.array_equal(mine.images[camera], theirs.images[camera]), f"{camera} at {mine.t_end} s"
        assert np.array_equal(mine.state, theirs.state)
    assert not np.array_equal(reference[0].images["wrist"], reference[-1].images["wrist"])


def test_a_camera_rendered_once_a_block_does_not_trip_the_stale_hold():
    """1 s blocks, a camera at 1 Hz, and an engine that accepts camera frames up to 1 s old: the
    frames are 0.95 s old before each cut, the arm is never held for a stale camera."""
    rig = Rig(("act",), camera_hz=1.0, max_age_s={"camera": 1.0, "state": 0.25, "audio": 0.5})
    result = _typed_reach(rig)
    assert result.error is None
    stale = [e for e in rig.log.of(ev.StaleInput) if e.t > 0.05]
    assert stale == [] and not any(e.reason.startswith("stale") for e in rig.log.of(ev.ActionHalt))
    assert any(moving for _, moving in result.motion)
    for b in rig.policy.blocks:
        assert b.image_stamps["agentview"] == pytest.approx(b.t_end) and b.stale == ()


def test_a_camera_rate_that_cannot_serve_the_blocks_is_refused_naming_both_numbers():
    half = EngineConfig(block_s=0.5)
    assert BridgeConfig().camera_interval(half) == 10                        # 2 Hz
    assert BridgeConfig().camera_interval(EngineConfig(block_s=0.16)) == 1   # cuts on irregular ticks
    assert BridgeConfig(camera_hz=4.0).camera_interval(half) == 5
    with pytest.raises(ValueError, match=r"camera_hz=5 Hz cannot serve 0.5 s blocks.*2, 4, 10, 20 Hz"):
        BridgeConfig(camera_hz=5.0).camera_interval(half)
    with pytest.raises(ValueError, match="camera_hz=3 Hz does not land on the 20 Hz control ticks"):
        BridgeConfig(camera_hz=3.0).camera_interval(half)
    with pytest.raises(ValueError, match="faster than the 20 Hz control rate"):
        BridgeConfig(camera_hz=30.0).camera_interval(half)
    # frames 0.95 s old where the engine holds on frames older than 0.5 s
    with pytest.raises(ValueError, match=r"camera_hz=1 Hz leaves camera frames up to 0.95 s old.*0.5 s"):
        BridgeConfig(camera_hz=1.0).camera_interval(EngineConfig(block_s=1.0))
    with pytest.raises(ValueError, match="video_fps=7 Hz does not land"):
        BridgeConfig(video_fps=7.0).video_interval(20.0)
    with pytest.raises(ValueError, match="camera_hz=-1"):
        BridgeConfig(camera_hz=-1.0)
    # an episode with such a rate does not start: the error is recorded, no step is taken
    result = _typed_reach(Rig(("act",), camera_hz=5.0, block_s=0.5))
    assert result.steps == 0 and "camera_hz=5 Hz cannot serve 0.5 s blocks" in result.error
