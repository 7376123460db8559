"""Message conversion, dropped-input bookkeeping and the console's state, without processes."""
from __future__ import annotations

import numpy as np
import pytest
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Int16MultiArray, MultiArrayDimension

from ellsa_ros.nodes import messages as m
from ellsa_ros.nodes.camera_sources import ColourBars, pattern_index
from ellsa_ros.nodes.console_link import ConsoleState
from ellsa_ros.nodes.inputs import DropLog
from ellsa_ros.runtime.streams import InputError


def test_image_round_trip_and_bgr():
    frame = np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)
    msg = m.image_msg(frame, m.to_stamp(12.5), "cam")
    assert (msg.encoding, msg.step, len(msg.data)) == ("rgb8", 192, 48 * 192)
    assert np.array_equal(m.image_array(msg, "cam"), frame)
    msg.encoding = "bgr8"
    assert np.array_equal(m.image_array(msg, "cam"), frame[:, :, ::-1])
    assert m.from_stamp(msg.header.stamp) == 12.5


@pytest.mark.parametrize("msg, says", [
    (Image(height=2, width=2, encoding="mono8", step=2, data=bytes(4)), "encoding 'mono8'"),
    (Image(height=2, width=2, encoding="rgb8", step=6, data=bytes(5)), "does not match 5 bytes"),
])
def test_bad_images_name_the_problem(msg, says):
    with pytest.raises(InputError, match=says) as err:
        m.image_array(msg, "wrist")
    assert err.value.stream == "wrist"


def test_audio_layout_round_trip_and_refusals():
    pcm = (np.arange(640) - 320).astype(np.int16).reshape(320, 2)
    msg = m.audio_msg(pcm)
    assert [(d.label, d.size, d.stride) for d in msg.layout.dim] == [("samples", 320, 640), ("channels", 2, 2)]
    assert np.array_equal(m.audio_array(msg), pcm)
    assert np.allclose(m.mono_float(pcm), pcm.mean(axis=1) / 32768.0)
    wrong = Int16MultiArray(data=[0] * 320)
    wrong.layout.dim = [MultiArrayDimension(label="channels", size=1, stride=1),
                        MultiArrayDimension(label="samples", size=320, stride=320)]
    with pytest.raises(InputError, match="audio layout"):
        m.audio_array(wrong)
    short = m.audio_msg(np.zeros(320, np.int16))
    short.data = short.data[:100]
    with pytest.raises(InputError, match="holds 100 values"):
        m.audio_array(short)


def test_joint_states_are_ordered_by_name_and_missing_joints_refused():
    msg = JointState(name=["b", "a", "c"], position=[2.0, 1.0, 3.0])
    assert m.joint_positions(msg, ("a", "b")).tolist() == [1.0, 2.0]
    assert m.joint_positions(msg, ()).tolist() == [2.0, 1.0, 3.0]
    with pytest.raises(InputError, match=r"lacks joints \['d'\]"):
        m.joint_positions(msg, ("a", "d"))


def test_action_chunks_as_arrays_and_trajectories():
    actions = np.arange(14, dtype=np.float32).reshape(2, 7)
    assert np.array_equal(m.chunk_array(m.chunk_array_msg(actions)), actions)
    traj = m.trajectory_msg(actions[:, :3], ("a", "b", "c"), m.to_stamp(100.25), 20.0, "base")
    assert m.from_stamp(traj.header.stamp) == 100.25 and traj.joint_names == ["a", "b", "c"]
    assert [(p.time_from_start.sec, p.time_from_start.nanosec) for p in traj.points] == [(0, 0), (0, 50_000_000)]
    assert list(traj.points[1].positions) == [7.0, 8.0, 9.0]


def test_colour_bars_count_their_frames():
    bars = ColourBars(64, 48)
    frames = [bars.read() for _ in range(3)]
    assert [pattern_index(f) for f in frames] == [0, 1, 2] and frames[0].shape == (48, 64, 3)


def test_drop_log_says_the_first_then_counts():
    log = DropLog(period_s=3600.0)
    assert log.drop("audio", "frame of 960 samples") == "dropped an input on audio: frame of 960 samples"
    assert log.drop("audio", "again") is None and log.drop("audio", "again") is None
    assert log.drop("state", "lacks joints") is not None       # each stream logs its own first drop
    log.period_s = 0.0
    assert log.drop("audio", "late") == "dropped 4 inputs on audio so far; the latest: late"


def test_console_state_follows_the_events():
    s = ConsoleState()
    s.on_event({"kind": "user_transcript", "t": 1.0, "text": "pick up the bowl", "source": "asr"})
    s.on_robot_said("Okay.")
    s.on_event({"kind": "action_chunk_start", "t": 2.0, "chunk_id": 1, "n_actions": 20, "skipped": 0})
    assert s.arm == "acting"
    s.on_event({"kind": "stale_input", "t": 2.5, "stream": "wrist", "age_s": 0.6})
    s.on_event({"kind": "action_halt", "t": 2.5, "reason": "stale:wrist"})
    assert s.status == "arm: holding (stale:wrist)   stale: wrist"
    s.on_event({"kind": "input_recovered", "t": 3.0, "stream": "wrist"})
    assert list(s.conversation) == ["you (asr): pick up the bowl", "robot: Okay."]
    assert s.unseen("events", 3) == list(s.events)[3:] and len(s.events) == 5
