"""Scripted experts: success on sampled init states, grasp retry, grasp geometry, the resumable runner."""
from __future__ import annotations

import json

import numpy as np
import pytest

from ellsa_ros.sim.env import LiberoEnv, LiberoEnvConfig
from ellsa_ros.sim.experts import PickPlaceExpert, expert_for
from ellsa_ros.sim.experts.evaluate import evaluate, run_episode
from ellsa_ros.sim.experts.grasps import (
    FINGER_OPEN_M,
    MAX_SPAN_M,
    PINCH_FINGER_M,
    best_grasp,
    body_grasps,
    clearance,
    rim_grasps,
)
from ellsa_ros.sim.experts.pick_place import Phase
from ellsa_ros.sim.experts.reach import axis_angle_to_matrix, down_with_yaw, matrix_to_axis_angle, pose_action


def _scene(size, quat, neighbours=()):
    """An info dict with one box object "item_1" on the floor at the origin, and neighbours."""
    boxes = {"item_1": (np.array([-size[0] / 2, -size[1] / 2, 0.0]), np.array([size[0] / 2, size[1] / 2, size[2]]))}
    for name, lo, hi in neighbours:
        boxes[name] = (np.array(lo), np.array(hi))
    return {"object_boxes": boxes, "object_quats": {"item_1": np.array(quat)},
            "object_sizes": {"item_1": np.array(size)}}


def test_grasp_closes_across_the_narrow_side():
    info = _scene((0.08, 0.04, 0.02), (1.0, 0.0, 0.0, 0.0))
    grasp = best_grasp(body_grasps("item_1", info, depth_m=0.03, floor_clearance_m=0.01), tried=0)
    assert abs(grasp.yaw) < 1e-9                      # fingers close along y, the 4 cm side
    assert grasp.point[2] == pytest.approx(0.01)      # no lower than the floor clearance
    # Turned 90 deg about z: yaw 0 would close across the 8 cm side, wider than the fingers
    # open; the chosen yaw fits the span and turns the wrist least among those that fit.
    turned = _scene((0.08, 0.04, 0.02), (np.sqrt(0.5), 0.0, 0.0, np.sqrt(0.5)))
    grasp = best_grasp(body_grasps("item_1", turned, 0.03, 0.01), tried=0)
    span = abs(np.sin(grasp.yaw)) * 0.04 + abs(np.cos(grasp.yaw)) * 0.08
    assert span <= MAX_SPAN_M and abs(grasp.yaw) == pytest.approx(np.deg2rad(60))


def test_grasp_turns_away_from_a_tall_neighbour():
    # A can 8 cm along +y: the hand, long along the closing axis, would hit it at yaw 0.
    info = _scene((0.05, 0.04, 0.1), (1.0, 0.0, 0.0, 0.0),
                  [("can_1", (-0.03, 0.08, 0.0), (0.03, 0.14, 0.12))])
    at_zero = clearance(np.array([0.0, 0.0, 0.07]), 0.0, "item_1", info["object_boxes"])
    assert at_zero < 0
    grasp = best_grasp(body_grasps("item_1", info, 0.03, 0.01), tried=0)
    assert grasp.clearance_m > 0 and abs(grasp.yaw) > 0.5
    # A retry takes the next candidate, not the same one again.
    assert best_grasp(body_grasps("item_1", info, 0.03, 0.01), tried=1).yaw != grasp.yaw
    assert all(abs(np.cos(g.yaw)) * 0.04 + abs(np.sin(g.yaw)) * 0.05 <= MAX_SPAN_M
               for g in body_grasps("item_1", info, 0.03, 0.01))


def _bowl_in_drawer(yaw: float):
    """A bowl (10.7 cm across) in a drawer whose interior is 20.5 x 15.2 cm, turned by yaw: the
    drawer's walls as oriented boxes (object_parts), its world-aligned box holding the bowl."""
    c, s = np.cos(yaw), np.sin(yaw)
    rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    local = [((0.0, 0.079, 0.0285), (0.1055, 0.003, 0.0285)), ((0.0, -0.079, 0.0285), (0.1055, 0.003, 0.0285)),
             ((0.1055, 0.0, 0.0285), (0.003, 0.079, 0.0285)), ((-0.1055, 0.0, 0.0285), (0.003, 0.079, 0.0285)),
             ((0.0, 0.0, -0.004), (0.1025, 0.076, 0.004))]                        # four walls, the floor
    centres = np.array([rot @ np.array(centre) for centre, _ in local])
    halves = np.array([half for _, half in local])
    reach = np.abs(rot) @ np.array([0.1085, 0.082, 0.0])
    boxes = {"bowl_1": (np.array([-0.0535, -0.0535, 0.0]), np.array([0.0535, 0.0535, 0.051])),
             "drawer_1": (np.array([-reach[0], -reach[1], -0.008]), np.array([reach[0], reach[1], 0.057]))}
    return {"object_boxes": boxes, "object_parts": {"drawer_1": (centres, np.repeat(rot[None], 5, axis=0), halves)}}


def test_bowl_in_a_drawer_is_grasped_with_pre_closed_fingers_clear_of_the_walls():
    info = _bowl_in_drawer(np.deg2rad(30))
    grasps = rim_grasps("bowl_1", info, radius_m=0.045, depth_m=0.015, pinch_radius_m=0.048)
    assert max(g.clearance_m for g in grasps if g.finger_m == FINGER_OPEN_M) < 0   # open fingers hit a wall
    grasp = best_grasp(grasps, tried=0)
    assert grasp.finger_m == PINCH_FINGER_M and grasp.clearance_m > 0
    # The drawer's floor is under the fingers, not in their way; its walls are: the drawer
    # counts by its parts, and without them (the world-aligned box alone) it is left out.
    boxes_only = {"object_boxes": info["object_boxes"]}
    assert all(g.finger_m == FINGER_OPEN_M for g in rim_grasps("bowl_1", boxes_only, 0.045, 0.015, 0.048))
    # The pinch closes along the drawer's long side (30 deg) or toward a corner, never across
    # the short side, where the walls are 2 cm from the bowl.
    closing = abs(_wrap_deg(np.rad2deg(grasp.yaw) + 90 - 30))
    assert closing < 45


def _wrap_deg(angle: float) -> float:
    return (angle + 90) % 180 - 90


def test_pose_action_points_at_the_target_and_caps_speed():
    rot = down_with_yaw(0.3)
    assert np.allclose(axis_angle_to_matrix(matrix_to_axis_angle(rot)), rot)
    here = np.array([0.0, 0.0, 1.0])
    aa = matrix_to_axis_angle(rot)
    assert np.allclose(pose_action(here, aa, here, rot, -1.0)[:6], 0.0, atol=1e-6)
    action = pose_action(here, aa, here + [0.5, 0.0, 0.0], rot, 1.0, max_speed=0.6)
    assert action[0] == pytest.approx(0.6) and action[6] == 1.0
    turn = pose_action(here, matrix_to_axis_angle(down_with_yaw(0.0)), here, rot, -1.0)
    assert turn[5] > 0                                 # yaw toward +0.3 rad about world z




def _physics_env(suite: str, task_id: int) -> LiberoEnv:
    return LiberoEnv(LiberoEnvConfig(suite=suite, task_id=task_id, cameras=False))


@pytest.mark.parametrize("suite, task_id", [("libero_spatial", 5), ("libero_object", 1)])
def test_expert_succeeds_on_sampled_init_states_and_run_resumes(tmp_path, suite, task_id):
    out = tmp_path / "results.json"
    seen = []
    results = evaluate(suite, [task_id], 2, out, lambda t: _physics_env(suite, t), expert_for(suite), seen.append)
    assert [(e.task_id, e.init_state, e.success) for e in results] == [(task_id, 0, True), (task_id, 1, True)]
    assert all(e.steps < (220 if suite == "libero_spatial" else 280) for e in results)
    data = json.loads(out.read_text())
    assert data["summary"][str(task_id)] == {"episodes": 2, "successes": 2, "success_rate": 1.0}
    # Run again: everything is already there, so nothing runs and no simulator is built.
    again = evaluate(suite, [task_id], 2, out, lambda t: pytest.fail("rebuilt"), expert_for(suite), seen.append)
    assert len(seen) == 2 and len(again) == 2


class _RecordingActions:
    """Env wrapper that keeps every action the expert sends."""

    def __init__(self, env):
        self.env, self.actions = env, []

    def reset(self, **kwargs):
        return self.env.reset(**kwargs)

    def step(self, action):
        self.actions.append(np.array(action, copy=True))
        return self.env.step(action)


def test_expert_takes_the_bowl_out_of_the_drawer():
    # libero_spatial task 4: the bowl stands in the open top drawer of the cabinet, whose walls
    # rise above its rim; the fingers come down pre-closed (gripper commands of 0 hold them).
    env = _physics_env("libero_spatial", 4)
    try:
        for init_state in (0, 1):
            recording = _RecordingActions(env)
            episode = run_episode(recording, expert_for("libero_spatial"), 4, init_state)
            assert episode.success and episode.steps < 220
            assert any(a[6] == 0.0 for a in recording.actions)
    finally:
        env.close()


class _OpenGripperOnFirstClose:
    """Env wrapper that keeps the gripper open during the expert's first grasp: a failed grasp."""

    def __init__(self, env, expert):
        self.env, self.expert, self.spoiled = env, expert, 0

    def reset(self, **kwargs):
        return self.env.reset(**kwargs)

    def step(self, action):
        if self.expert.phase is Phase.CLOSE and self.expert.retries == 0:
            action = np.array(action, copy=True)
            action[6] = -1.0
            self.spoiled += 1
        return self.env.step(action)


def test_expert_retries_a_failed_grasp_and_still_succeeds():
    env = _physics_env("libero_object", 3)
    try:
        expert = PickPlaceExpert()
        spoiling = _OpenGripperOnFirstClose(env, expert)
        episode = run_episode(spoiling, expert, 3, 2)
        assert spoiling.spoiled > 0
        assert episode.retries == 1
        assert episode.success and episode.steps < 280
    finally:
        env.close()


class _BrokenExpert:
    def reset(self):
        pass

    def act(self, obs, info):
        raise RuntimeError("joint 3 lost")


def test_crashed_episode_is_a_recorded_failure_and_the_run_goes_on(tmp_path):
    out = tmp_path / "r.json"
    results = evaluate("libero_object", [0], 2, out, lambda t: _physics_env("libero_object", t), _BrokenExpert())
    assert [(e.init_state, e.success, e.error) for e in results] == [(0, False, "RuntimeError: joint 3 lost"),
                                                                    (1, False, "RuntimeError: joint 3 lost")]
    with pytest.raises(ValueError, match="suite 'libero_object', not 'libero_spatial'"):
        evaluate("libero_spatial", [0], 1, out, _physics_env, _BrokenExpert())


def test_no_expert_for_other_suites():
    with pytest.raises(ValueError, match="experts exist for: libero_spatial, libero_object"):
        expert_for("libero_10")
