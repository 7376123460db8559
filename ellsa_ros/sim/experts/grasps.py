"""Where and how to grasp an object among its neighbours (privileged geometry).

A grasp is a fingertip point, a yaw of the downward-pointing gripper and how far the fingers
stand open on the way down. Candidates are scored by how far the Panda hand's footprint
stays from neighbouring objects that are tall enough to touch it: the hand is much wider
along the fingers' closing axis than across it, so in clutter the yaw decides whether the
hand reaches the object at all. What the object stands on or in (a drawer) counts by its
parts: a drawer's walls are in the way of the fingers, its floor is not.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Panda hand footprint around the fingertip point, in the gripper frame (closing axis first),
# measured from the robosuite model's collision geoms at rest (half-extents, m).
HAND_HALF_M = (0.105, 0.035)      # hand body, bottom 0.025 m above the fingertip point
HAND_BOTTOM_M = 0.025
FINGER_OPEN_M = 0.039             # each finger's joint position (from the centre line) fully open
FINGER_OUTSIDE_M = 0.029          # a finger's collision geometry beyond its joint position
FINGER_HALF_ACROSS_M = 0.012
FINGERS_BOTTOM_M = -0.013         # the fingers reach 0.013 m below the point
# Bowls in tight places (a drawer): fingers pre-closed so that they only straddle the wall.
PINCH_FINGER_M = 0.016
MAX_SPAN_M = 0.075                # widest span the open fingers take with a margin
CLEAR_M = 0.015                   # clearance beyond which a grasp counts as clear


@dataclass(frozen=True)
class Grasp:
    point: np.ndarray   # fingertip point (m, world)
    yaw: float          # rad about world z; 0: fingers close along world y
    clearance_m: float  # smallest gap from the hand to a neighbour (negative: overlap)
    finger_m: float = FINGER_OPEN_M   # each finger's joint position on the way down


@dataclass(frozen=True)
class _Footprint:
    """A box seen from above: a rectangle (centre, unit axes as rows, half-extents) and its top."""
    centre: np.ndarray   # (2,)
    axes: np.ndarray     # (2, 2)
    half: np.ndarray     # (2,)
    top: float

    @classmethod
    def of_aabb(cls, lo: np.ndarray, hi: np.ndarray) -> _Footprint:
        return cls((lo[:2] + hi[:2]) / 2, np.eye(2), (hi[:2] - lo[:2]) / 2, float(hi[2]))

    @classmethod
    def of_part(cls, centre: np.ndarray, rot: np.ndarray, half: np.ndarray) -> _Footprint:
        """An oriented box (columns of rot are its axes): the axis nearest vertical is dropped
        and its horizontal reach is added to the other two (exact for an upright box)."""
        up = int(np.argmax(np.abs(rot[2, :])))
        level = [k for k in range(3) if k != up]
        flat = rot[:2, level].T                                             # (2, 2) rows
        length = np.maximum(np.linalg.norm(flat, axis=1), 1e-9)
        reach = half[up] * np.linalg.norm(rot[:2, up])
        return cls(np.asarray(centre[:2], np.float64), flat / length[:, None],
                   half[level] * length + reach, float(centre[2] + np.abs(rot[2, :]) @ half))

    def holds(self, xy: np.ndarray) -> bool:
        return bool(np.all(np.abs(self.axes @ (xy - self.centre)) <= self.half))


def _quat_wxyz_to_matrix(q: np.ndarray) -> np.ndarray:
    w, x, y, z = np.asarray(q, np.float64) / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def _wrap_half_turn(yaw: float) -> float:
    """The gripper is symmetric under a half turn: keep yaw in [-pi/2, pi/2)."""
    return float((yaw + np.pi / 2) % np.pi - np.pi / 2)


def _separation(centre: np.ndarray, yaw: float, half: tuple[float, float], box: _Footprint) -> float:
    """Gap (m) between a rectangle turned by yaw and a footprint, by separating axes; negative
    when they overlap (by that much along the least-overlapping axis)."""
    closing = np.array([-np.sin(yaw), np.cos(yaw)])       # fingers close along this direction
    across = np.array([np.cos(yaw), np.sin(yaw)])
    offset = box.centre - centre
    gaps = []
    for axis in (closing, across, *box.axes):
        rect_radius = abs(closing @ axis) * half[0] + abs(across @ axis) * half[1]
        box_radius = np.abs(box.axes @ axis) @ box.half
        gaps.append(abs(offset @ axis) - rect_radius - box_radius)
    return float(max(gaps))


def _obstacles(held: str, boxes: dict, parts: dict | None) -> list[_Footprint]:
    """Footprints of everything but the held object. An object whose footprint holds the held
    one's centre (what it stands on or in: a drawer's cabinet) would overlap every grasp: it
    counts by its parts that do not hold that centre, or not at all without parts."""
    held_lo, held_hi = (np.asarray(v) for v in boxes[held])
    held_xy = (held_lo[:2] + held_hi[:2]) / 2
    obstacles = []
    for name, (lo, hi) in boxes.items():
        if name == held:
            continue
        whole = _Footprint.of_aabb(np.asarray(lo), np.asarray(hi))
        if not whole.holds(held_xy):
            obstacles.append(whole)
        elif parts is not None and name in parts:
            pieces = (_Footprint.of_part(*part) for part in zip(*parts[name]))
            obstacles.extend(piece for piece in pieces if not piece.holds(held_xy))
    return obstacles


def clearance(point: np.ndarray, yaw: float, held: str, boxes: dict, parts: dict | None = None,
              finger_m: float = FINGER_OPEN_M) -> float:
    """Smallest gap (m) between the hand and fingers (each finger at joint position finger_m)
    at this grasp and any other object, or part of what the held one stands in, that reaches
    their height. parts: info["object_parts"]; without it containers are left out."""
    fingers = (finger_m + FINGER_OUTSIDE_M, FINGER_HALF_ACROSS_M)
    gap = np.inf
    for box in _obstacles(held, boxes, parts):
        for half, bottom in ((HAND_HALF_M, HAND_BOTTOM_M), (fingers, FINGERS_BOTTOM_M)):
            if box.top > point[2] + bottom:
                gap = min(gap, _separation(point[:2], yaw, half, box))
    return float(gap)


def _span(size_closing: float, size_across: float, angle: float) -> float:
    return abs(np.cos(angle)) * size_closing + abs(np.sin(angle)) * size_across


def body_grasps(name: str, info: dict, depth_m: float, floor_clearance_m: float) -> list[Grasp]:
    """Grasps across an object's body at its centre, for yaws whose finger span fits."""
    lo, hi = (np.asarray(v, np.float64) for v in info["object_boxes"][name])
    point = (lo + hi) / 2
    point[2] = max(hi[2] - depth_m, lo[2] + floor_clearance_m)
    rot = _quat_wxyz_to_matrix(info["object_quats"][name])
    size = np.asarray(info["object_sizes"][name], np.float64)
    a, b = np.argsort(np.abs(rot[2, :]))[:2]              # the two body axes closest to level
    narrow, wide = (a, b) if size[a] <= size[b] else (b, a)
    base = _wrap_half_turn(np.arctan2(rot[1, narrow], rot[0, narrow]) - np.pi / 2)
    boxes, parts = info["object_boxes"], info.get("object_parts")
    grasps = []
    for offset in np.deg2rad(np.arange(-90, 90, 15)):
        if _span(size[narrow], size[wide], offset) <= MAX_SPAN_M:
            yaw = _wrap_half_turn(base + offset)
            grasps.append(Grasp(point, yaw, clearance(point, yaw, name, boxes, parts)))
    if not grasps:   # nothing fits the fingers: the narrowest way is the best there is
        grasps.append(Grasp(point, base, clearance(point, base, name, boxes, parts)))
    return grasps


def rim_grasps(name: str, info: dict, radius_m: float, depth_m: float, pinch_radius_m: float) -> list[Grasp]:
    """Pinches across a bowl's wall at points around its rim (radius_m from its centre); the
    fingers close radially. When every way down with open fingers touches something (walls
    close around the bowl: a drawer), the fingers come down pre-closed to just straddle the
    wall (PINCH_FINGER_M) at pinch_radius_m, where the wall is at the fingertips' height."""
    boxes, parts = info["object_boxes"], info.get("object_parts")
    lo, hi = (np.asarray(v, np.float64) for v in boxes[name])
    centre = (lo + hi) / 2

    def around_rim(radius: float, finger_m: float) -> list[Grasp]:
        grasps = []
        for around in np.deg2rad(np.arange(0, 360, 15)):
            point = centre + radius * np.array([np.cos(around), np.sin(around), 0.0])
            point[2] = hi[2] - depth_m
            yaw = _wrap_half_turn(around - np.pi / 2)
            grasps.append(Grasp(point, yaw, clearance(point, yaw, name, boxes, parts, finger_m), finger_m))
        return grasps

    open_fingers = around_rim(radius_m, FINGER_OPEN_M)
    if max(g.clearance_m for g in open_fingers) > 0:
        return open_fingers
    return open_fingers + around_rim(pinch_radius_m, PINCH_FINGER_M)


def best_grasp(grasps: list[Grasp], tried: int) -> Grasp:
    """The grasp with the most clearance, preferring small turns of the wrist, then open
    fingers, when all are clear; `tried` earlier attempts skip that many of the best (a
    failed grasp is not repeated)."""
    ranked = sorted(grasps, key=lambda g: (-min(g.clearance_m, CLEAR_M), abs(g.yaw), -g.finger_m))
    return ranked[tried % len(ranked)]
