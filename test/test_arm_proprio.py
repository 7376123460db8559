"""The model's proprioception from a real arm's messages: the layout, velocity on the
stamps, and refusals of what cannot be a pose."""
from __future__ import annotations

import numpy as np
import pytest

from ellsa_ros.arm.proprio import STATE_DIM, ProprioceptionTracker, quat_to_axis_angle, state_vector

DOWN = np.array([1.0, 0.0, 0.0, 0.0])   # x, y, z, w: the hand pointing down (pi about x)


def test_state_is_none_until_pose_and_fingers_have_arrived():
    t = ProprioceptionTracker()
    assert t.state() is None
    t.pose([0.1, 0.0, 0.9], DOWN, 1.0)
    assert t.state() is None
    t.gripper([0.04, -0.04], 1.01)
    s = t.state()
    assert s.shape == (STATE_DIM,) and s.dtype == np.float32
    assert np.allclose(s[:3], [0.1, 0.0, 0.9]) and np.allclose(s[3:6], [np.pi, 0.0, 0.0])
    assert np.allclose(s[6:8], [0.04, -0.04]) and not s[8:].any()
    assert t.stamp == 1.0    # the older part


def test_velocity_is_the_difference_over_the_stamps_and_the_last_action_is_kept():
    t = ProprioceptionTracker()
    t.gripper([0.0, 0.0], 0.0)
    t.pose([0.0, 0.0, 1.0], DOWN, 0.0)
    t.pose([0.01, 0.0, 0.98], DOWN, 0.05)
    t.action(np.array([0.5, 0, 0, 0, 0, 0, 1.0]))
    s = t.state()
    assert np.allclose(s[8:11], [0.2, 0.0, -0.4])
    assert np.allclose(s[11:], [0.5, 0, 0, 0, 0, 0, 1.0])
    assert np.allclose(s, state_vector(np.array([0.01, 0.0, 0.98]), DOWN, np.zeros(2), np.array([0.2, 0.0, -0.4]),
                                       np.array([0.5, 0, 0, 0, 0, 0, 1.0], np.float32)))


@pytest.mark.parametrize("pos, quat, stamp, says", [
    ([0.0, 0.0, np.nan], DOWN, 2.0, "non-finite"),
    ([0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.5], 2.0, "not a unit quaternion"),
    ([0.0, 0.0], DOWN, 2.0, r"position \(3,\)"),
    ([0.0, 0.0, 1.0], DOWN, 0.5, "older than the previous one"),
])
def test_bad_poses_are_refused_and_change_nothing(pos, quat, stamp, says):
    t = ProprioceptionTracker()
    t.gripper([0.0, 0.0], 0.0)
    t.pose([0.0, 0.0, 1.0], DOWN, 1.0)
    before = t.state()
    with pytest.raises(ValueError, match=says):
        t.pose(pos, quat, stamp)
    assert np.array_equal(t.state(), before)


def test_axis_angle_of_the_identity_and_a_quarter_turn():
    assert np.allclose(quat_to_axis_angle(np.array([0.0, 0.0, 0.0, 1.0])), 0.0)
    h = np.sqrt(0.5)
    assert np.allclose(quat_to_axis_angle(np.array([0.0, 0.0, h, h])), [0.0, 0.0, np.pi / 2])
