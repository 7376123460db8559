"""Forward kinematics of an arm's URDF: the end-effector pose from `joint_states`.

MuJoCo does the work: it is already installed and pinned (LIBERO simulates with it), it is
maintained, and it reads URDF itself, so no second robot-model library is needed. Only the
kinematic tree is kept: visuals and collisions are dropped before loading (the meshes of a
driver's URDF are usually `package://` paths that do not resolve here), links keep their own
bodies (MuJoCo would otherwise fuse fixed links such as a TCP frame into their parents), and
massless links get a token mass (MuJoCo refuses moving bodies without one; kinematics does
not use it).
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np


class UrdfError(ValueError):
    """The URDF does not load, or lacks what was asked of it; `what` is "urdf" or "ee_link"."""

    def __init__(self, what: str, reason: str) -> None:
        super().__init__(reason)
        self.what = what


class ArmKinematics:
    """The pose of `ee_link` in the URDF's root link frame, for the joint positions of the
    chain that carries it (`joints`, in order from the root)."""

    def __init__(self, urdf: str | Path, ee_link: str) -> None:
        import mujoco
        self._mujoco = mujoco
        try:
            root = ET.parse(urdf).getroot()
        except (OSError, ET.ParseError) as e:
            raise UrdfError("urdf", f"{urdf}: {e}") from None
        links = [link.get("name") for link in root.iter("link")]
        if ee_link not in links:
            raise UrdfError("ee_link", f"{urdf} has no link {ee_link!r}; links: {links}")
        children = {j.find("child").get("link") for j in root.iter("joint") if j.find("child") is not None}
        roots = [name for name in links if name not in children]
        if len(roots) != 1:
            raise UrdfError("urdf", f"{urdf}: expected one root link, found {roots}")
        self.root_link = roots[0]
        try:
            self.model = mujoco.MjModel.from_xml_string(_kinematic_urdf(root))
        except ValueError as e:
            raise UrdfError("urdf", f"{urdf} does not load: {e}") from None
        self.data = mujoco.MjData(self.model)
        self._ee = self.model.body(ee_link).id
        self._root = self.model.body(self.root_link).id
        chain = []
        body = self._ee
        while body > 0:
            for j in range(self.model.body_jntadr[body], self.model.body_jntadr[body] + self.model.body_jntnum[body]):
                chain.append(j)
            body = self.model.body_parentid[body]
        self._joints = sorted(chain)
        self.joints: tuple[str, ...] = tuple(self.model.joint(j).name for j in self._joints)
        self._qpos = [int(self.model.jnt_qposadr[j]) for j in self._joints]

    def pose(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Joint positions (rad or m, in the order of `joints`) -> (position (3,) m, quaternion
        x, y, z, w (4,)) of the end effector in the root link's frame."""
        q = np.asarray(positions, np.float64)
        if q.shape != (len(self.joints),):
            raise ValueError(f"{len(q)} joint positions for the {len(self.joints)} joints {list(self.joints)}")
        self.data.qpos[self._qpos] = q
        self._mujoco.mj_kinematics(self.model, self.data)
        r_root = self.data.xmat[self._root].reshape(3, 3)
        pos = r_root.T @ (self.data.xpos[self._ee] - self.data.xpos[self._root])
        rot = r_root.T @ self.data.xmat[self._ee].reshape(3, 3)
        wxyz = np.zeros(4)
        self._mujoco.mju_mat2Quat(wxyz, rot.ravel())
        return pos, np.array([wxyz[1], wxyz[2], wxyz[3], wxyz[0]])


def _kinematic_urdf(root: ET.Element) -> str:
    for link in root.iter("link"):
        for child in list(link):
            if child.tag in ("visual", "collision"):
                link.remove(child)
    for extension in root.findall("mujoco"):
        root.remove(extension)
    mj = ET.SubElement(root, "mujoco")
    ET.SubElement(mj, "compiler", fusestatic="false", discardvisual="true", boundmass="1e-6",
                  boundinertia="1e-9")
    return ET.tostring(root, encoding="unicode")
