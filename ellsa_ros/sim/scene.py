"""Where the objects of a LIBERO scene are, read from the simulator (privileged state).

Positions are the objects' body origins; boxes are world-aligned bounds of each object's
collision geometry (the object's bodies and their children), which is what a scripted
grasp needs: how high the top is and how wide the object is.
"""
from __future__ import annotations

import numpy as np


class SceneGeometry:
    """Built once per simulator (after a model rebuild, build a new one)."""

    def __init__(self, libero_env) -> None:
        model = libero_env.sim.model._model
        self._body_ids: dict[str, int] = {name: int(body) for name, body in libero_env.obj_body_id.items()}
        parent = model.body_parentid
        self._geoms: dict[str, np.ndarray] = {}
        for name, root in self._body_ids.items():
            bodies = {root}
            # Bodies are stored parents first, so one pass collects every descendant.
            for body in range(root + 1, model.nbody):
                if parent[body] in bodies:
                    bodies.add(body)
            collides = (model.geom_contype != 0) | (model.geom_conaffinity != 0)
            in_object = np.isin(model.geom_bodyid, sorted(bodies))
            self._geoms[name] = np.flatnonzero(in_object & collides)
        self._aabb = np.array(model.geom_aabb).reshape(-1, 6)   # (ngeom, center xyz + half-size xyz), geom frame
        self._sizes = {name: self._body_frame_size(libero_env.sim.data._data, name) for name in self._body_ids}

    def _body_frame_size(self, data, name: str) -> np.ndarray:
        """Extent (m) of the object's collision geometry along its own body axes; rigid, so fixed."""
        geoms = self._geoms[name]
        if geoms.size == 0:
            return np.zeros(3)
        body_rot = data.xmat[self._body_ids[name]].reshape(3, 3)
        rot = np.einsum("ji,gjk->gik", body_rot, data.geom_xmat[geoms].reshape(-1, 3, 3))   # geom in body frame
        centre = (data.geom_xpos[geoms] - data.xpos[self._body_ids[name]]) @ body_rot \
            + np.einsum("gij,gj->gi", rot, self._aabb[geoms, :3])
        half = np.einsum("gij,gj->gi", np.abs(rot), self._aabb[geoms, 3:])
        return (centre + half).max(axis=0) - (centre - half).min(axis=0)

    @property
    def sizes(self) -> dict[str, np.ndarray]:
        """{name: extent xyz (m) along the object's body axes}."""
        return {name: size.copy() for name, size in self._sizes.items()}

    @property
    def names(self) -> list[str]:
        return list(self._body_ids)

    def snapshot(self, sim) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray],
                                     dict[str, tuple[np.ndarray, np.ndarray]]]:
        """Called after every simulator step: {name: xyz (m)}, {name: quaternion wxyz},
        {name: (lo xyz, hi xyz) (m)}."""
        data = sim.data._data
        positions = {name: np.array(data.xpos[body]) for name, body in self._body_ids.items()}
        quats = {name: np.array(data.xquat[body]) for name, body in self._body_ids.items()}
        boxes: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for name, (centre, rot, half) in self.parts(sim).items():
            if centre.shape[0] == 0:
                boxes[name] = (positions[name].copy(), positions[name].copy())
                continue
            world_half = np.einsum("gij,gj->gi", np.abs(rot), half)   # (g, 3)
            boxes[name] = ((centre - world_half).min(axis=0), (centre + world_half).max(axis=0))
        return positions, quats, boxes

    def parts(self, sim) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Each object's collision geoms as oriented boxes: {name: (centres (g, 3) m, rotations
        (g, 3, 3) whose columns are the box axes in the world, half-extents (g, 3) m)}. A
        fixture's world-aligned box hides its shape (an open drawer's walls and its floor are
        one box); these do not."""
        data = sim.data._data
        parts = {}
        for name, geoms in self._geoms.items():
            rot = data.geom_xmat[geoms].reshape(-1, 3, 3)                         # (g, 3, 3)
            centre = data.geom_xpos[geoms] + np.einsum("gij,gj->gi", rot, self._aabb[geoms, :3])
            parts[name] = (centre, rot, self._aabb[geoms, 3:].copy())
        return parts
