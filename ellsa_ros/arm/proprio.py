"""The model's proprioception: one definition of the 18-d state, for the simulator and real arms.

    state (18,) float32 = eef_pos (m, 3) + eef_axis_angle (rad, 3) + gripper (m, 2, the two
                          finger positions) + eef_vel (m/s, 3) + previous action (7)

This is LIBERO's layout (robosuite's Panda: the grip site's position, the hand's orientation,
the finger joints). `LiberoEnv` builds its observation with `state_vector`; a real arm's
front end feeds a `ProprioceptionTracker` with what its driver publishes (an end-effector
pose, the finger joints, the command last sent), so a model trained in simulation reads
the same vector from the arm.
"""
from __future__ import annotations

import numpy as np

STATE_DIM = 18
ACTION_DIM = 7
GRIPPER_DIM = 2


def quat_to_axis_angle(quat_xyzw: np.ndarray) -> np.ndarray:
    """Axis-angle (rad) of an (x, y, z, w) quaternion; the convention of LIBERO policies' state."""
    w = float(np.clip(quat_xyzw[3], -1.0, 1.0))
    sin_half = np.sqrt(1.0 - w * w)
    if sin_half < 1e-9:
        return np.zeros(3)
    return np.asarray(quat_xyzw[:3], np.float64) * 2.0 * np.arccos(w) / sin_half


def state_vector(eef_pos: np.ndarray, eef_quat_xyzw: np.ndarray, gripper: np.ndarray,
                 eef_vel: np.ndarray, previous_action: np.ndarray) -> np.ndarray:
    """The (18,) float32 state from its parts (units as in the module docstring)."""
    parts = {"eef_pos": (eef_pos, 3), "eef_quat_xyzw": (eef_quat_xyzw, 4), "gripper": (gripper, GRIPPER_DIM),
             "eef_vel": (eef_vel, 3), "previous_action": (previous_action, ACTION_DIM)}
    for name, (value, n) in parts.items():
        if np.shape(value) != (n,):
            raise ValueError(f"{name} has shape {np.shape(value)}, expected ({n},)")
    return np.concatenate([eef_pos, quat_to_axis_angle(eef_quat_xyzw), gripper, eef_vel,
                           previous_action]).astype(np.float32)


class ProprioceptionTracker:
    """Builds the state from a real arm's separate messages. Called from the node's callbacks:
    `pose` per end-effector pose, `gripper` per joint state, `action` per command sent;
    `state()` is None until a pose and a gripper reading have both arrived. `base_xyz`: where
    the pose frame's origin (the arm's base) stands in the frame the policy was trained in
    (LIBERO's Panda stands at (-0.66, 0, 0.912) in its world, unrotated)."""

    def __init__(self, base_xyz: np.ndarray = (0.0, 0.0, 0.0)) -> None:
        self.base_xyz = np.asarray(base_xyz, np.float64)
        if self.base_xyz.shape != (3,) or not np.isfinite(self.base_xyz).all():
            raise ValueError(f"base_xyz needs 3 finite values, got {self.base_xyz.tolist()}")
        self.reset()

    def reset(self) -> None:
        self._pos: np.ndarray | None = None
        self._quat: np.ndarray | None = None
        self._pose_stamp = -np.inf
        self._vel = np.zeros(3)
        self._gripper: np.ndarray | None = None
        self._gripper_stamp = -np.inf
        self._action = np.zeros(ACTION_DIM, np.float32)

    def pose(self, pos: np.ndarray, quat_xyzw: np.ndarray, stamp: float) -> None:
        """An end-effector pose (m; unit quaternion x, y, z, w) measured at `stamp` (s). Velocity
        is the finite difference to the previous pose over their stamps."""
        pos = np.asarray(pos, np.float64)
        quat = np.asarray(quat_xyzw, np.float64)
        if pos.shape != (3,) or quat.shape != (4,):
            raise ValueError(f"pose needs a position (3,) and a quaternion (4,), got {pos.shape} and {quat.shape}")
        if not (np.isfinite(pos).all() and np.isfinite(quat).all()):
            raise ValueError("pose contains non-finite values")
        norm = float(np.linalg.norm(quat))
        if abs(norm - 1.0) > 1e-3:
            raise ValueError(f"pose orientation is not a unit quaternion (norm {norm:.4f})")
        if stamp < self._pose_stamp:
            raise ValueError(f"pose stamp {stamp:.6f} is older than the previous one ({self._pose_stamp:.6f})")
        if self._pos is not None and stamp > self._pose_stamp:
            self._vel = (pos - self._pos) / (stamp - self._pose_stamp)
        self._pos, self._quat, self._pose_stamp = pos, quat / norm, stamp

    def gripper(self, fingers: np.ndarray, stamp: float) -> None:
        """The two finger joint positions (m) measured at `stamp` (s)."""
        fingers = np.asarray(fingers, np.float64)
        if fingers.shape != (GRIPPER_DIM,) or not np.isfinite(fingers).all():
            raise ValueError(f"gripper needs {GRIPPER_DIM} finite finger positions, got {fingers.tolist()}")
        self._gripper, self._gripper_stamp = fingers, stamp

    def action(self, action: np.ndarray) -> None:
        """The normalized command last sent to the arm (the state's `previous action`)."""
        a = np.asarray(action, np.float32)
        if a.shape != (ACTION_DIM,):
            raise ValueError(f"action has shape {a.shape}, expected ({ACTION_DIM},)")
        self._action = a

    @property
    def stamp(self) -> float:
        """When the state was measured: its older part decides (staleness is judged on it)."""
        return min(self._pose_stamp, self._gripper_stamp)

    def state(self) -> np.ndarray | None:
        if self._pos is None or self._gripper is None:
            return None
        return state_vector(self._pos + self.base_xyz, self._quat, self._gripper, self._vel, self._action)
