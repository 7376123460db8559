"""Scripted pick-and-place: grasp one object and put it on or in another.

Covers LIBERO-Spatial ("pick up the black bowl ... place it on the plate") and LIBERO-Object
("pick up the ketchup and place it in the basket"). The goal comes from the task's BDDL
goal, the geometry from privileged simulator state (object boxes, poses and sizes in `info`).

Phases: hover above the grasp point, descend, close, lift; if the object did not come up
(or falls while carried) open, back off and grasp again; carry above the target, lower,
release, retreat, hold. Bowls are grasped by the rim (a pinch across the bowl's wall);
everything else across its body; among the candidate grasps the one whose hand footprint
stays clearest of the neighbours wins (see grasps.py). A bowl with walls close around it (in
a drawer) is approached with the fingers pre-closed to the grasp's opening while hovering:
the expert counts its own gripper commands to know the servo's level (exactly, once it has
commanded open for a full travel).
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

from ellsa_ros.sim.experts.grasps import FINGER_OPEN_M, best_grasp, body_grasps, rim_grasps
from ellsa_ros.sim.experts.reach import (
    GRIPPER_FULL_TRAVEL_STEPS,
    GRIPPER_LEVEL_STEP,
    down_with_yaw,
    gripper_level_for,
    pose_action,
)

OPEN, CLOSE = -1.0, 1.0


class Phase(enum.Enum):
    HOVER = "hover"
    DESCEND = "descend"
    CLOSE = "close"
    LIFT = "lift"
    CARRY = "carry"
    LOWER = "lower"
    RELEASE = "release"
    RETREAT = "retreat"
    BACK_OFF = "back_off"      # after a failed grasp: open and rise, then grasp again
    DONE = "done"


@dataclass(frozen=True)
class PickPlaceConfig:
    """Distances in m, durations in control steps (20 Hz)."""
    hover_m: float = 0.08          # height of the approach point above the grasp point
    rim_offset_m: float = 0.045    # bowls: grasp point from the bowl's centre, open fingers...
    pinch_offset_m: float = 0.048  # ...and pre-closed ones, which need it on the wall at grasp height
    rim_depth_m: float = 0.015     # bowls: how far below the rim top the fingertips go
    grasp_depth_m: float = 0.03    # other objects: fingertips this far below the top...
    floor_clearance_m: float = 0.01  # ...but no closer than this to the object's bottom
    clearance_m: float = 0.04      # carried object's bottom above the tallest thing in the way
    place_gap_m: float = 0.01      # carried object's bottom above the target's top at release
    lift_check_m: float = 0.02     # the object must have risen this much for a grasp to count
    finger_tolerance_m: float = 0.003  # fingers this near the grasp's opening: ready to descend...
    hover_tolerance_m: float = 0.005   # ...and the hand this near above the grasp point (horizontally)
    descend_step_m: float = 0.01   # how far below the hand the target leads it down (per step)
    lift_speed: float = 0.3        # action units (1.0 is 0.05 m a step) for the first slow_lift_m
    slow_lift_m: float = 0.03
    close_steps: int = 12
    release_steps: int = 10
    phase_limit_steps: int = 40    # a motion phase that has not converged by then moves on
    integral_gain: float = 0.3     # per step, on position errors under integral_zone_m
    integral_zone_m: float = 0.03
    max_retries: int = 3

    def __post_init__(self) -> None:
        for name in ("hover_m", "rim_offset_m", "pinch_offset_m", "rim_depth_m", "grasp_depth_m", "clearance_m",
                     "lift_check_m", "finger_tolerance_m", "hover_tolerance_m", "descend_step_m", "lift_speed",
                     "slow_lift_m"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("close_steps", "release_steps", "phase_limit_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {self.max_retries}")


class PickPlaceExpert:
    """`act(obs, info)` once per control step after `reset()`; reads the goal from info."""

    def __init__(self, config: PickPlaceConfig | None = None) -> None:
        self.config = config or PickPlaceConfig()
        self.reset()

    def reset(self) -> None:
        """Called at the start of every episode."""
        self.phase = Phase.HOVER
        self.retries = 0
        self._planned = False
        self._phase_steps = 0
        self._integral = np.zeros(3)
        self._level = 0.0              # the gripper servo's level as the commands sent so far move it...
        self._open_streak = 0
        self._level_known = False      # ...exact once a full travel of open commands has been sent

    # -- per step ------------------------------------------------------------------------

    def act(self, obs: dict, info: dict) -> np.ndarray:
        """One action (7,) in [-1, 1] for the current observation."""
        action = self._act(obs, info)
        gripper = float(np.sign(action[6]))
        self._level = float(np.clip(self._level + GRIPPER_LEVEL_STEP * gripper, -1.0, 1.0))
        self._open_streak = self._open_streak + 1 if gripper < 0 else 0
        self._level_known |= self._open_streak >= GRIPPER_FULL_TRAVEL_STEPS
        return action

    def _act(self, obs: dict, info: dict) -> np.ndarray:
        state = np.asarray(obs["state"], np.float64)
        eef, axis_angle, finger = state[0:3], state[3:6], float(state[6])
        if not self._planned:
            self._read_goal(info)
            self._plan_grasp(info)
        lo, hi = (np.asarray(v) for v in info["object_boxes"][self._object])
        centre = (lo + hi) / 2
        cfg = self.config
        self._phase_steps += 1

        if self.phase in (Phase.CARRY, Phase.LOWER) and np.linalg.norm(centre - eef - self._held_offset) > 0.04:
            self._fail()                                   # dropped (or knocked loose) on the way
        if self.phase is Phase.HOVER:
            target = self._grasp_point + [0, 0, cfg.hover_m]
            # Pre-closed fingers leave millimetres around the wall: a hand still off to one
            # side lands on the rim.
            above = not self._tight or np.linalg.norm((target - eef)[:2]) < cfg.hover_tolerance_m
            fingers_ready = abs(finger - self._finger_m) < cfg.finger_tolerance_m
            if (self._reached(eef, target, 0.01) and above and fingers_ready) or self._timed_out():
                self._enter(Phase.DESCEND)
            return self._toward(eef, axis_angle, target, self._pregrasp_gripper())
        if self.phase is Phase.DESCEND:
            if self._reached(eef, self._grasp_point, 0.006) or self._timed_out():
                self._enter(Phase.CLOSE)
            if not self._tight:
                return self._toward(eef, axis_angle, self._grasp_point, OPEN, max_speed=0.5)
            # In a tight place the target leads the hand down by a short step: the error stays
            # inside the integral zone, so the integral holds the hand over the grasp point all
            # the way (a fast straight descent drifts sideways by a centimetre onto the rim).
            # The step itself is the downward pull: no integral along z.
            target = np.array([*self._grasp_point[:2], max(self._grasp_point[2], eef[2] - cfg.descend_step_m)])
            self._integral[2] = 0.0
            return self._toward(eef, axis_angle, target, self._pregrasp_gripper())
        if self.phase is Phase.CLOSE:
            if self._phase_steps >= cfg.close_steps:
                self._enter(Phase.LIFT)
            return self._toward(eef, axis_angle, self._grasp_point, CLOSE)
        if self.phase is Phase.LIFT:
            target = np.array([*self._grasp_point[:2], self._carry_z(eef, lo, info)])
            if self._reached(eef, target, 0.02) or self._timed_out():
                if lo[2] - self._object_lo_z < cfg.lift_check_m:
                    self._fail()
                else:
                    self._held_offset = centre - eef
                    self._enter(Phase.CARRY)
            # A bowl hangs from one side of its rim: a fast start tips it out of the fingers
            # (pre-closed ones hold the wall by its edge).
            slow = self._tight and eef[2] < self._grasp_point[2] + cfg.slow_lift_m
            speed = cfg.lift_speed if slow else 1.0
            return self._toward(eef, axis_angle, target, CLOSE, max_speed=speed)
        if self.phase is Phase.CARRY:
            target = np.array([*self._place_xy(eef, centre, info), self._carry_z(eef, lo, info)])
            if self._reached(eef, target, 0.01) or self._timed_out():
                self._enter(Phase.LOWER)
            return self._toward(eef, axis_angle, target, CLOSE)
        if self.phase is Phase.LOWER:
            target_top = np.asarray(info["object_boxes"][self._target][1])[2]
            z = eef[2] - (lo[2] - (target_top + cfg.place_gap_m))
            target = np.array([*self._place_xy(eef, centre, info), z])
            if lo[2] <= target_top + cfg.place_gap_m + 0.01 or self._timed_out():
                self._enter(Phase.RELEASE)
            return self._toward(eef, axis_angle, target, CLOSE)
        if self.phase is Phase.RELEASE:
            if self._phase_steps >= cfg.release_steps:
                self._hold = eef + [0, 0, cfg.hover_m]
                self._enter(Phase.RETREAT)
            return np.array([0, 0, 0, 0, 0, 0, OPEN], np.float32)
        if self.phase is Phase.BACK_OFF:
            if self._reached(eef, self._hold, 0.02) or self._timed_out():
                self._plan_grasp(info)                     # the next-best grasp, from where things are now
                self._enter(Phase.HOVER)
            return self._toward(eef, axis_angle, self._hold, OPEN)
        if self.phase is Phase.RETREAT:
            if self._reached(eef, self._hold, 0.02) or self._timed_out():
                self._enter(Phase.DONE)
            return self._toward(eef, axis_angle, self._hold, OPEN)
        return self._toward(eef, axis_angle, self._hold, OPEN)

    # -- planning ------------------------------------------------------------------------

    def _read_goal(self, info: dict) -> None:
        goal = info["goal"]
        if len(goal) != 1 or goal[0][0] not in ("on", "in") or len(goal[0]) != 3:
            raise ValueError(f"no pick-and-place expert for goal {goal}: expected one ('on'|'in', object, target)")
        _, self._object, target = goal[0]
        objects = info["objects"]
        if self._object not in objects:
            raise ValueError(f"goal object {self._object!r} is not in the scene: {sorted(objects)}")
        # A goal may name a region of an object ("basket_1_contain_region"): place on its owner.
        owners = [name for name in objects if target == name or target.startswith(name + "_")]
        if not owners:
            raise ValueError(f"goal target {target!r} belongs to no object in the scene: {sorted(objects)}")
        self._target = max(owners, key=len)
        self._is_bowl = "bowl" in self._object
        self._planned = True

    def _plan_grasp(self, info: dict) -> None:
        cfg = self.config
        if self._is_bowl:
            grasps = rim_grasps(self._object, info, cfg.rim_offset_m, cfg.rim_depth_m, cfg.pinch_offset_m)
        else:
            grasps = body_grasps(self._object, info, cfg.grasp_depth_m, cfg.floor_clearance_m)
        grasp = best_grasp(grasps, tried=self.retries)
        self._grasp_point, self._yaw, self._finger_m = grasp.point, grasp.yaw, grasp.finger_m
        self._tight = grasp.finger_m < FINGER_OPEN_M      # fingers pre-closed: walls close around
        self._object_lo_z = float(np.asarray(info["object_boxes"][self._object][0])[2])

    def _carry_z(self, eef: np.ndarray, lo: np.ndarray, info: dict) -> float:
        """Gripper height (m) at which the held object's bottom clears everything on its way
        from where it was grasped to above the target. Fixtures the arm works above (a
        cabinet) count by their parts: the walls of the drawer the object comes out of."""
        boxes, parts = info["object_boxes"], info.get("object_parts", {})
        start = self._grasp_point[:2]
        t_lo, t_hi = (np.asarray(v) for v in boxes[self._target])
        path = start + np.linspace(0.0, 1.0, 12)[:, None] * ((t_lo[:2] + t_hi[:2]) / 2 - start)   # (12, 2)
        tallest = float(t_hi[2])
        for name, (low, high) in boxes.items():
            low, high = np.asarray(low), np.asarray(high)
            if name == self._object:
                continue
            pieces = [(low, high)]
            if np.any(high[:2] - low[:2] > 0.25):
                if name not in parts:
                    continue
                centre, rot, half = parts[name]
                reach = np.einsum("gij,gj->gi", np.abs(rot), half)
                pieces = list(zip(centre - reach, centre + reach))
            for piece_lo, piece_hi in pieces:
                near = np.all((path >= piece_lo[:2] - 0.06) & (path <= piece_hi[:2] + 0.06), axis=1)
                if near.any():
                    tallest = max(tallest, float(piece_hi[2]))
        # Gripper to object bottom as grasped; a bowl held by pre-closed fingers (by the wall's
        # edge) may hang tilted, lower than that: then as it hangs now.
        below_gripper = self._grasp_point[2] - self._object_lo_z
        if self._tight:
            below_gripper = max(below_gripper, eef[2] - lo[2])
        return max(tallest + self.config.clearance_m + below_gripper, self._grasp_point[2] + self.config.hover_m)

    def _place_xy(self, eef: np.ndarray, centre: np.ndarray, info: dict) -> np.ndarray:
        lo, hi = (np.asarray(v) for v in info["object_boxes"][self._target])
        # Keep the held object's current offset from the gripper: it may have slipped.
        return (lo[:2] + hi[:2]) / 2 + (eef[:2] - centre[:2])

    def _pregrasp_gripper(self) -> float:
        """Open; for a grasp with the fingers part-closed, step the servo's level to that
        opening once the level is known, then hold it (0 moves nothing)."""
        target = gripper_level_for(self._finger_m)
        if target <= -1.0 or not self._level_known:
            return OPEN
        if self._level < target:
            return CLOSE
        return OPEN if self._level > target else 0.0

    # -- plumbing ------------------------------------------------------------------------

    def _toward(self, eef, axis_angle, target, gripper: float, max_speed: float = 1.0) -> np.ndarray:
        error = np.asarray(target, np.float64) - eef
        if np.linalg.norm(error) < self.config.integral_zone_m:
            self._integral += self.config.integral_gain * error
        return pose_action(eef, axis_angle, np.asarray(target, np.float64), down_with_yaw(self._yaw),
                           gripper, max_speed, offset_m=self._integral)

    def _reached(self, eef: np.ndarray, target: np.ndarray, tol_m: float) -> bool:
        return bool(np.linalg.norm(np.asarray(target) - eef) < tol_m)

    def _timed_out(self) -> bool:
        return self._phase_steps >= self.config.phase_limit_steps

    def _enter(self, phase: Phase) -> None:
        self.phase = phase
        self._phase_steps = 0
        self._integral = np.zeros(3)

    def _fail(self) -> None:
        self.retries += 1
        self._hold = self._grasp_point + [0, 0, self.config.hover_m]
        self._enter(Phase.BACK_OFF if self.retries <= self.config.max_retries else Phase.DONE)
