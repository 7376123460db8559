"""Where and how to grasp an object among its neighbours (privileged geometry).

A grasp is a fingertip point and a yaw of the downward-pointing gripper. Candidates are
scored by how far the Panda hand's footprint stays from neighbouring objects that are tall
enough to touch it: the hand is much wider along the fingers' closing axis than across it,
so in clutter the yaw decides whether the hand reaches the object at all.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Panda hand footprint around the fingertip point, in the gripper frame (closing axis first),
# measured from the robosuite model's collision geoms at rest (half-extents, m).
HAND_HALF_M = (0.105, 0.035)      # hand body, bottom 0.025 m above the fingertip point
HAND_BOTTOM_M = 0.025
FINGERS_HALF_M = (0.065, 0.012)   # the two fingers, reaching 0.013 m below the point
FINGERS_BOTTOM_M = -0.013
MAX_SPAN_M = 0.075                # widest span the open fingers take with a margin
CLEAR_M = 0.015                   # clearance beyond which a grasp counts as clear


@dataclass(frozen=True)
class Grasp:
    point: np.ndarray   # fingertip point (m, world)
    yaw: float          # rad about world z; 0: fingers close along world y
    clearance_m: float  # smallest gap from the hand to a neighbour (negative: overlap)


def _quat_wxyz_to_matrix(q: np.ndarray) -> np.ndarray:
    w, x, y, z = np.asarray(q, np.float64) / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def _wrap_half_turn(yaw: float) -> float:
    """The gripper is symmetric under a half turn: keep yaw in [-pi/2, pi/2)."""
    return float((yaw + np.pi / 2) % np.pi - np.pi / 2)


def _separation(centre: np.ndarray, yaw: float, half: tuple[float, float], lo: np.ndarray, hi: np.ndarray) -> float:
    """Gap (m) between a rectangle turned by yaw and an axis-aligned box, by separating axes;
    negative when they overlap (by that much along the least-overlapping axis)."""
    closing = np.array([-np.sin(yaw), np.cos(yaw)])       # fingers close along this direction
    across = np.array([np.cos(yaw), np.sin(yaw)])
    corners = np.array([[lo[0], lo[1]], [lo[0], hi[1]], [hi[0], lo[1]], [hi[0], hi[1]]]) - centre
    rect_radius_x = abs(closing[0]) * half[0] + abs(across[0]) * half[1]
    rect_radius_y = abs(closing[1]) * half[0] + abs(across[1]) * half[1]
    box_centre = (lo[:2] + hi[:2]) / 2 - centre
    gaps = [abs(box_centre[0]) - (hi[0] - lo[0]) / 2 - rect_radius_x,
            abs(box_centre[1]) - (hi[1] - lo[1]) / 2 - rect_radius_y]
    for axis, radius in ((closing, half[0]), (across, half[1])):
        proj = corners @ axis
        gaps.append(max(proj.min() - radius, -radius - proj.max()))
    return float(max(gaps))


def clearance(point: np.ndarray, yaw: float, held: str, boxes: dict) -> float:
    """Smallest gap (m) between the hand and fingers at this grasp and any other object that
    reaches their height. Objects whose footprint holds the held one's centre (what it stands
    on or in: a drawer's cabinet) are left out: every grasp would overlap their boxes."""
    held_lo, held_hi = (np.asarray(v) for v in boxes[held])
    held_xy = (held_lo[:2] + held_hi[:2]) / 2
    gap = np.inf
    for name, (lo, hi) in boxes.items():
        lo, hi = np.asarray(lo), np.asarray(hi)
        if name == held or np.all((lo[:2] <= held_xy) & (held_xy <= hi[:2])):
            continue
        for half, bottom in ((HAND_HALF_M, HAND_BOTTOM_M), (FINGERS_HALF_M, FINGERS_BOTTOM_M)):
            if hi[2] > point[2] + bottom:
                gap = min(gap, _separation(point[:2], yaw, half, lo, hi))
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
    grasps = []
    for offset in np.deg2rad(np.arange(-90, 90, 15)):
        if _span(size[narrow], size[wide], offset) <= MAX_SPAN_M:
            yaw = _wrap_half_turn(base + offset)
            grasps.append(Grasp(point, yaw, clearance(point, yaw, name, info["object_boxes"])))
    if not grasps:   # nothing fits the fingers: the narrowest way is the best there is
        grasps.append(Grasp(point, base, clearance(point, base, name, info["object_boxes"])))
    return grasps


def rim_grasps(name: str, info: dict, radius_m: float, depth_m: float) -> list[Grasp]:
    """Pinches across a bowl's wall at points around its rim; the fingers close radially."""
    lo, hi = (np.asarray(v, np.float64) for v in info["object_boxes"][name])
    centre = (lo + hi) / 2
    grasps = []
    for around in np.deg2rad(np.arange(0, 360, 45)):
        point = centre + radius_m * np.array([np.cos(around), np.sin(around), 0.0])
        point[2] = hi[2] - depth_m
        yaw = _wrap_half_turn(around - np.pi / 2)
        grasps.append(Grasp(point, yaw, clearance(point, yaw, name, info["object_boxes"])))
    return grasps


def best_grasp(grasps: list[Grasp], tried: int) -> Grasp:
    """The grasp with the most clearance, preferring small turns of the wrist when all are
    clear; `tried` earlier attempts skip that many of the best (a failed grasp is not repeated)."""
    ranked = sorted(grasps, key=lambda g: (-min(g.clearance_m, CLEAR_M), abs(g.yaw)))
    return ranked[tried % len(ranked)]
