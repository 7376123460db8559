"""LIBERO as a Gymnasium 1.x environment.

One simulator is built per task and reused across its episodes: `reset` puts the robot and
its controller back, loads one of the task's fixed init states, and runs a few no-op
"settle" steps (object poses are wrong until contacts have resolved). Asking `reset` for
another task rebuilds the simulator (seconds).

Observation (dict):
  "state": (18,) float32 = eef_pos (m, 3) + eef_axis_angle (rad, 3) + gripper_qpos (m, 2)
           + eef_vel (m/s, 3, finite difference over one control period) + previous action (7),
           built by `ellsa_ros.arm.proprio.state_vector` (the one definition real arms use too)
Camera images are not in the observation: rendering both 128 px cameras costs about four
physics steps, and a policy looks at one frame per block (every 10th step at 0.5 s blocks).
`render_cameras()` renders them when a frame is used: (H, W, 3) uint8 upright images of the
simulator as it is now, i.e. what the last reset/step left; called right after a step they
are the images of that step's observation.
Action: Box(-1, 1, (7,)): end-effector position delta, rotation delta, gripper (-1 open, +1 close).
Reward: 1.0 on the step the task is achieved, else 0.0. terminated = task success,
truncated = `max_steps` control steps taken since reset.
info: success, task (instruction), task_id, suite, init_state (index), step, goal (BDDL goal
predicates), and privileged scene state for experts and scene questions: objects {name: xyz (m)},
object_quats {name: wxyz}, object_boxes {name: (lo xyz, hi xyz) (m)} world-aligned bounds of the
collision geometry, object_sizes {name: extent (m) along the object's own axes}, object_parts
{name: (centres, rotations, half-extents)} its collision geoms as oriented boxes (SceneGeometry.parts).
"""
from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass
from typing import Any

# Headless rendering: robosuite picks its GL backend when first imported.
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402

from ellsa_ros.arm.proprio import ACTION_DIM, state_vector  # noqa: E402
from ellsa_ros.sim.rendering import RENDER_QUALITIES, RenderQuality, configure_renderer, render_camera  # noqa: E402
from ellsa_ros.sim.scene import SceneGeometry  # noqa: E402
from ellsa_ros.sim.suites import TaskSpec, init_states, task_spec  # noqa: E402

CAMERAS: dict[str, str] = {"agentview": "agentview", "wrist": "robot0_eye_in_hand"}
STATE_DIM = 18
SETTLE_ACTION = np.array([0, 0, 0, 0, 0, 0, -1], np.float64)   # hold still, gripper open
RESET_OPTIONS = ("task", "init_state")


@dataclass(frozen=True)
class LiberoEnvConfig:
    """suite/task_id: the first task built. image_size: camera images are square, in px.
    cameras: False builds no renderer at all (physics only; `render_cameras` refuses).
    render_quality: "tuned" for speed, "stock" for robosuite's defaults.
    settle_steps: no-op control steps after loading an init state, not counted in max_steps.
    max_steps: per-episode step limit; None takes the suite's standard limit."""
    suite: str = "libero_spatial"
    task_id: int = 0
    image_size: int = 128
    cameras: bool = True
    render_quality: RenderQuality = "tuned"
    settle_steps: int = 10
    max_steps: int | None = None

    def __post_init__(self) -> None:
        task_spec(self.suite, self.task_id)   # names the valid suites / ids on bad input
        if not 16 <= self.image_size <= 1024:
            raise ValueError(f"image_size must be in 16..1024 px, got {self.image_size}")
        if self.render_quality not in RENDER_QUALITIES:
            raise ValueError(f"render_quality must be one of {', '.join(RENDER_QUALITIES)}, "
                             f"got {self.render_quality!r}")
        if self.settle_steps < 0:
            raise ValueError(f"settle_steps must be >= 0, got {self.settle_steps}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1 or None, got {self.max_steps}")


class LiberoEnv(gym.Env):
    """A LIBERO task at 20 Hz. `reset(seed, options={"task": id, "init_state": index})`."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}
    control_hz = 20.0

    def __init__(self, config: LiberoEnvConfig | None = None, render_mode: str | None = None) -> None:
        self.config = config or LiberoEnvConfig()
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        if render_mode is not None and not self.config.cameras:
            raise ValueError("render_mode='rgb_array' needs cameras=True")
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Dict({"state": gym.spaces.Box(-np.inf, np.inf, (STATE_DIM,), np.float32)})
        self.action_space = gym.spaces.Box(-1.0, 1.0, (ACTION_DIM,), np.float32)
        self._sim_env = None
        self._build(task_spec(self.config.suite, self.config.task_id))
        self._init_index = -1
        self._steps = 0
        self._previous_action = np.zeros(ACTION_DIM, np.float32)
        self._previous_eef = np.zeros(3)
        self._eef_vel = np.zeros(3)
        self._needs_reset = True

    # -- what is running ---------------------------------------------------------------

    @property
    def task(self) -> TaskSpec:
        return self._task

    @property
    def max_steps(self) -> int:
        return self.config.max_steps if self.config.max_steps is not None else self._task.max_steps

    @property
    def n_init_states(self) -> int:
        return len(init_states(self._task.suite, self._task.task_id))

    # -- gymnasium API -----------------------------------------------------------------

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Start an episode. options: "task" (id in this suite; another id rebuilds the simulator),
        "init_state" (index into the task's init states; default drawn with the seeded rng)."""
        super().reset(seed=seed)
        options = dict(options or {})
        unknown = sorted(set(options) - set(RESET_OPTIONS))
        if unknown:
            raise ValueError(f"unknown reset option(s) {unknown}; valid options: {', '.join(RESET_OPTIONS)}")
        task_id = options.get("task", self._task.task_id)
        if task_id != self._task.task_id:
            self._build(task_spec(self._task.suite, task_id))
        states = init_states(self._task.suite, self._task.task_id)
        index = options.get("init_state")
        if index is None:
            index = int(self.np_random.integers(len(states)))
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index < len(states):
            raise ValueError(f"init_state must be an index in 0-{len(states) - 1} for task "
                             f"{self._task.task_id} of {self._task.suite}, got {index!r}")
        self._init_index = int(index)
        self._load_init_state(states[self._init_index])
        for _ in range(self.config.settle_steps):
            self._sim_env.step(SETTLE_ACTION)
        self._steps = 0
        self._previous_action = np.zeros(ACTION_DIM, np.float32)
        self._previous_eef = self._eef_pos()
        self._eef_vel = np.zeros(3)
        self._needs_reset = False
        success = bool(self._sim_env.env._check_success())
        return self._observation(), self._info(success)

    def step(self, action):
        """One control period (1 / control_hz s). The action is clipped to [-1, 1]."""
        if self._needs_reset:
            raise RuntimeError("call reset() before step()")
        action = np.asarray(action, np.float64)
        if action.shape != (ACTION_DIM,):
            raise ValueError(f"action must have shape ({ACTION_DIM},), got {action.shape}")
        if not np.all(np.isfinite(action)):
            raise ValueError(f"action must be finite, got {action.tolist()}")
        action = np.clip(action, -1.0, 1.0)
        self._sim_env.step(action)
        self._steps += 1
        eef = self._eef_pos()
        self._eef_vel = (eef - self._previous_eef) * self.control_hz
        self._previous_eef = eef
        self._previous_action = action.astype(np.float32)
        success = bool(self._sim_env.env._check_success())
        truncated = self._steps >= self.max_steps and not success
        return self._observation(), float(success), success, truncated, self._info(success)

    def render_cameras(self, cameras: tuple[str, ...] = tuple(CAMERAS)) -> dict[str, np.ndarray]:
        """Renders `cameras` (names of CAMERAS) of the current simulator state: {name: (H, W, 3)
        uint8 upright image}. Called whenever a frame is used, after reset() / step()."""
        if not self.config.cameras:
            raise RuntimeError("this environment was built with cameras=False: it has no renderer")
        if self._needs_reset:
            raise RuntimeError("call reset() before render_cameras()")
        unknown = [c for c in cameras if c not in CAMERAS]
        if unknown:
            raise ValueError(f"unknown camera(s) {unknown}; cameras: {', '.join(CAMERAS)}")
        size = self.config.image_size
        return {name: render_camera(self._sim_env.sim, CAMERAS[name], size, size) for name in cameras}

    def arm_readings(self) -> dict[str, np.ndarray]:
        """What a real Panda's driver would report, now: "joints" (7,) rad, "fingers" (2,) m
        (the state's gripper values), and the end effector in the arm's base frame: "eef_pos"
        (3,) m and "eef_quat_xyzw" (4,) (the state's position and orientation, less the base's
        pose in the world), with "base_pos" (3,) m and "base_quat_xyzw" (4,) in the world."""
        if self._needs_reset:
            raise RuntimeError("call reset() before arm_readings()")
        import mujoco
        sim, robot = self._sim_env.sim, self._sim_env.env.robots[0]
        base = sim.model.body_name2id(robot.robot_model.root_body)
        base_pos = np.array(sim.data.body_xpos[base], np.float64)
        base_wxyz = np.array(sim.data.body_xquat[base], np.float64)
        inv = np.zeros(4)
        mujoco.mju_negQuat(inv, base_wxyz)
        rel_pos, rel_wxyz = np.zeros(3), np.zeros(4)
        mujoco.mju_rotVecQuat(rel_pos, self._eef_pos() - base_pos, inv)
        mujoco.mju_mulQuat(rel_wxyz, inv, np.asarray(sim.data.get_body_xquat(robot.robot_model.eef_name),
                                                     np.float64))
        return {"joints": np.array(sim.data.qpos[robot._ref_joint_pos_indexes], np.float64),
                "fingers": np.array(sim.data.qpos[robot._ref_gripper_joint_pos_indexes], np.float64),
                "eef_pos": rel_pos, "eef_quat_xyzw": _wxyz_to_xyzw(rel_wxyz),
                "base_pos": base_pos, "base_quat_xyzw": _wxyz_to_xyzw(base_wxyz)}

    def render(self) -> np.ndarray | None:
        """The agentview image (upright, image_size px) when render_mode is "rgb_array"."""
        if self.render_mode is None:
            return None
        size = self.config.image_size
        return render_camera(self._sim_env.sim, CAMERAS["agentview"], size, size)

    def close(self) -> None:
        if self._sim_env is not None:
            self._sim_env.close()
            self._sim_env = None

    # -- inside ------------------------------------------------------------------------

    def _build(self, task: TaskSpec) -> None:
        from libero.libero.envs.env_wrapper import ControlEnv

        self.close()
        size = self.config.image_size
        # LIBERO reports scene-building notices on stdout, which is kept for results.
        with contextlib.redirect_stdout(sys.stderr):
            self._sim_env = ControlEnv(
                bddl_file_name=task.bddl_file, use_camera_obs=False,
                has_offscreen_renderer=self.config.cameras, camera_heights=size, camera_widths=size,
                # Episodes end here (truncation), not in robosuite; no model rebuild on reset.
                ignore_done=True, hard_reset=False)
            self._sim_env.reset()
        if self.config.cameras:
            configure_renderer(self._sim_env.sim, size, size, self.config.render_quality)
        self._task = task
        self._scene = SceneGeometry(self._sim_env.env)
        self._goal = [tuple(str(p) for p in predicate) for predicate in self._sim_env.env.parsed_problem["goal_state"]]
        self._needs_reset = True

    def _load_init_state(self, state: np.ndarray) -> None:
        env = self._sim_env.env
        # Simulator data (solver warm start, actuator state), the robot and its controller go
        # back to rest first, so nothing of the last episode survives and the same init state
        # replays the same episode; the init state then sets every joint.
        self._sim_env.sim.reset()
        env.robots[0].reset(deterministic=True)
        gripper = env.robots[0].gripper
        gripper.current_action = np.zeros(gripper.dof)   # the Panda gripper integrates its commands
        env.timestep = 0
        env.cur_time = 0
        env.done = False
        self._sim_env.set_init_state(state)

    def _eef_pos(self) -> np.ndarray:
        robot = self._sim_env.env.robots[0]
        return np.array(self._sim_env.sim.data.site_xpos[robot.eef_site_id], np.float64)

    def _observation(self) -> dict[str, np.ndarray]:
        env = self._sim_env.env
        robot = env.robots[0]
        quat_xyzw = _wxyz_to_xyzw(self._sim_env.sim.data.get_body_xquat(robot.robot_model.eef_name))
        gripper = self._sim_env.sim.data.qpos[robot._ref_gripper_joint_pos_indexes]
        return {"state": state_vector(self._eef_pos(), quat_xyzw, np.asarray(gripper, np.float64), self._eef_vel,
                                      self._previous_action)}

    def _info(self, success: bool) -> dict[str, Any]:
        positions, quats, boxes = self._scene.snapshot(self._sim_env.sim)
        return {"success": success, "task": self._task.language, "task_id": self._task.task_id,
                "suite": self._task.suite, "init_state": self._init_index, "step": self._steps,
                "goal": list(self._goal), "objects": positions, "object_quats": quats,
                "object_boxes": boxes, "object_sizes": self._scene.sizes,
                "object_parts": self._scene.parts(self._sim_env.sim)}


def _wxyz_to_xyzw(quat: np.ndarray) -> np.ndarray:
    return np.array([quat[1], quat[2], quat[3], quat[0]], np.float64)
