"""Turning a desired gripper pose into one LIBERO action (OSC_POSE deltas).

robosuite's OSC_POSE controller reads an action of 1.0 as a 0.05 m position step and a
0.5 rad rotation step of its goal, both in the world frame. A proportional law on the pose
error, with a speed cap, is enough for scripted motions at 20 Hz: at gain 1 the controller's
goal is put on the target itself whenever the cap allows.
"""
from __future__ import annotations

import numpy as np

POSITION_STEP_M = 0.05     # goal displacement of action 1.0 (robosuite OSC_POSE output_max)
ROTATION_STEP_RAD = 0.5
# Gripper pointing straight down with its fingers closing along world y: the Panda's rest pose.
DOWN = np.diag([1.0, -1.0, -1.0])
# The Panda gripper's servo target is a level in [-1 open, 1 closed] that robosuite moves by
# 0.01 per simulator step toward the command's sign: 0.25 per control step (25 simulator
# steps at 20 Hz). Fully open to closed takes 8 steps; a command of 0 holds the level.
GRIPPER_LEVEL_STEP = 0.25
GRIPPER_FULL_TRAVEL_STEPS = 8


def axis_angle_to_matrix(axis_angle: np.ndarray) -> np.ndarray:
    angle = float(np.linalg.norm(axis_angle))
    if angle < 1e-9:
        return np.eye(3)
    k = np.asarray(axis_angle, np.float64) / angle
    skew = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(angle) * skew + (1 - np.cos(angle)) * skew @ skew


def matrix_to_axis_angle(rot: np.ndarray) -> np.ndarray:
    cos = np.clip((np.trace(rot) - 1.0) / 2.0, -1.0, 1.0)
    angle = np.arccos(cos)
    if angle < 1e-9:
        return np.zeros(3)
    if np.pi - angle < 1e-6:
        # Half-turn: the axis is the column of R + I with the largest norm.
        m = rot + np.eye(3)
        axis = m[:, int(np.argmax(np.linalg.norm(m, axis=0)))]
        return axis / np.linalg.norm(axis) * angle
    axis = np.array([rot[2, 1] - rot[1, 2], rot[0, 2] - rot[2, 0], rot[1, 0] - rot[0, 1]]) / (2 * np.sin(angle))
    return axis * angle


def down_with_yaw(yaw: float) -> np.ndarray:
    """Gripper pointing down, turned by `yaw` (rad) about world z from the rest pose."""
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ DOWN


def pose_action(eef_pos: np.ndarray, eef_axis_angle: np.ndarray, target_pos: np.ndarray,
                target_rot: np.ndarray, gripper: float, max_speed: float = 1.0,
                offset_m: np.ndarray | None = None) -> np.ndarray:
    """One action (7,) moving the gripper toward the target pose (m, world frame).

    max_speed caps the position part's norm (in action units: 1.0 is 0.05 m per step).
    offset_m is added to the position error: an integral term that removes the controller's
    steady-state error (it stops short by up to a centimetre with the wrist turned)."""
    error_m = np.asarray(target_pos) - np.asarray(eef_pos)
    if offset_m is not None:
        error_m = error_m + offset_m
    move = error_m / POSITION_STEP_M
    norm = float(np.linalg.norm(move))
    if norm > max_speed:
        move *= max_speed / norm
    error = matrix_to_axis_angle(target_rot @ axis_angle_to_matrix(eef_axis_angle).T)
    turn = np.clip(error / ROTATION_STEP_RAD, -1.0, 1.0)
    return np.concatenate([np.clip(move, -1.0, 1.0), turn, [gripper]]).astype(np.float32)


def gripper_level_for(finger_m: float) -> float:
    """The servo level (a multiple of GRIPPER_LEVEL_STEP) at which each finger's joint rests
    nearest finger_m (m from the centre line); measured, unloaded: 0.0213 - 0.02 * level,
    stopped at 0.039 fully open."""
    level = (0.0213 - finger_m) / 0.02
    return float(np.clip(np.round(level / GRIPPER_LEVEL_STEP) * GRIPPER_LEVEL_STEP, -1.0, 1.0))
