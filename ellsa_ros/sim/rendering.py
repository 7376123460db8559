"""Camera images from the LIBERO simulator, stock or tuned for speed.

robosuite renders into a 640x480 offscreen buffer with 4x multisampling, shadows and
reflections, then reads back a 128 px corner of it. "tuned" sizes the buffer to the image
and turns multisampling, shadows and reflections off: what costs most on a software
renderer and matters least at 128 px. "stock" leaves robosuite's settings as they are.
"""
from __future__ import annotations

from typing import Literal

import mujoco
import numpy as np

RenderQuality = Literal["tuned", "stock"]
RENDER_QUALITIES: tuple[str, ...] = ("tuned", "stock")


def configure_renderer(sim, width: int, height: int, quality: RenderQuality) -> None:
    """Called once after the simulator and its offscreen context exist (a rebuilt simulator
    needs it again); sizes are in pixels."""
    if quality not in RENDER_QUALITIES:
        raise ValueError(f"unknown render quality {quality!r}; valid: {', '.join(RENDER_QUALITIES)}")
    if quality == "stock":
        return
    context = sim._render_context_offscreen
    if context is None:
        raise RuntimeError("the simulator has no offscreen render context to tune")
    context.scn.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
    context.scn.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
    # Buffer size and sample count are read when the GPU context is made: rebuild it.
    sim.model.vis.quality.offsamples = 0
    sim.model.vis.global_.offwidth = width
    sim.model.vis.global_.offheight = height
    context.gl_ctx.make_current()
    context.con.free()
    context._set_mujoco_context_and_buffers()


def render_camera(sim, camera: str, width: int, height: int) -> np.ndarray:
    """One (height, width, 3) uint8 image, upright: MuJoCo reads pixels bottom row first."""
    # robosuite renders into whichever GL context is current; with several simulators in one
    # process (a benchmark, parallel evaluations) that must be this simulator's own.
    sim._render_context_offscreen.gl_ctx.make_current()
    image = sim.render(width=width, height=height, camera_name=camera)
    return np.ascontiguousarray(image[::-1])
