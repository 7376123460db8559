"""LiberoEnv: Gymnasium conformance, observation layout, reuse across episodes, bad input."""
from __future__ import annotations

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from ellsa_ros.sim.env import LiberoEnv, LiberoEnvConfig
from ellsa_ros.sim.suites import init_states, parse_task_ids, task_spec


@pytest.fixture(scope="module")
def env():
    env = LiberoEnv(LiberoEnvConfig(suite="libero_spatial", task_id=0, image_size=64), render_mode="rgb_array")
    yield env
    env.close()


def test_passes_gymnasium_env_checker(env):
    check_env(env, skip_render_check=True)


def test_observation_names_shapes_and_info(env):
    obs, info = env.reset(seed=3, options={"init_state": 4})
    assert set(obs) == {"state"}       # cameras are rendered on demand, not in every observation
    images = env.render_cameras()
    assert set(images) == {"agentview", "wrist"}
    assert images["agentview"].shape == (64, 64, 3) and images["agentview"].dtype == np.uint8
    assert obs["state"].shape == (18,) and obs["state"].dtype == np.float32
    assert env.control_hz == 20.0 and env.max_steps == 220
    assert info["task"] == "pick up the black bowl between the plate and the ramekin and place it on the plate"
    assert (info["suite"], info["task_id"], info["init_state"], info["success"]) == ("libero_spatial", 0, 4, False)
    assert info["goal"] == [("on", "akita_black_bowl_1", "plate_1")]
    lo, hi = info["object_boxes"]["plate_1"]
    assert np.all(lo <= info["objects"]["plate_1"] + 1e-6) and np.all(hi >= lo)
    # Images differ from frame to frame only through the scene: the two cameras see different things.
    assert not np.array_equal(images["agentview"], images["wrist"])
    assert np.array_equal(env.render(), images["agentview"])
    assert set(env.render_cameras(("wrist",))) == {"wrist"}


def test_state_holds_previous_action_and_finite_difference_velocity(env):
    obs0, _ = env.reset(options={"init_state": 0})
    action = np.array([0.5, -0.3, 0.2, 0.0, 0.0, 0.0, 2.0])       # gripper out of range: clipped
    obs1, _, _, _, _ = env.step(action)
    assert np.allclose(obs1["state"][11:18], np.clip(action, -1, 1))
    assert np.allclose(obs1["state"][8:11], (obs1["state"][0:3] - obs0["state"][0:3]) * 20.0, atol=1e-4)
    assert obs1["state"][8] > 0 and obs1["state"][9] < 0          # it moved the way it was told
    # The gripper points down at rest: a half turn about x.
    assert abs(np.linalg.norm(obs0["state"][3:6]) - np.pi) < 0.2


def test_reset_reuses_simulator_and_replays_init_state(env):
    sim = env._sim_env
    first, _ = env.reset(options={"init_state": 7})
    first_images = env.render_cameras()
    for _ in range(5):
        env.step(env.action_space.sample())
    again, info = env.reset(options={"init_state": 7})
    assert env._sim_env is sim
    assert np.allclose(first["state"], again["state"], atol=1e-6)
    assert np.array_equal(first_images["agentview"], env.render_cameras()["agentview"])
    assert info["step"] == 0


def test_truncates_at_step_limit():
    env = LiberoEnv(LiberoEnvConfig(suite="libero_object", task_id=2, cameras=False, max_steps=3))
    try:
        obs, info = env.reset(options={"init_state": 0})
        assert set(obs) == {"state"}
        with pytest.raises(RuntimeError, match="cameras=False"):
            env.render_cameras()
        flags = [env.step(np.zeros(7))[3] for _ in range(3)]
        assert flags == [False, False, True]
        # Another task rebuilds the simulator and reports the new task.
        _, info = env.reset(options={"task": 5, "init_state": 1})
        assert info["task_id"] == 5 and "tomato sauce" in info["task"]
        assert "tomato_sauce_1" in info["objects"]
    finally:
        env.close()


def test_bad_input_names_what_is_valid(env):
    with pytest.raises(ValueError, match="valid suites: libero_spatial, libero_object"):
        task_spec("libero_nope", 0)
    with pytest.raises(ValueError, match="valid task ids: 0-9"):
        task_spec("libero_object", 10)
    with pytest.raises(ValueError, match="valid task ids: 0-9"):
        parse_task_ids("3-12", "libero_spatial")
    with pytest.raises(ValueError, match="image_size"):
        LiberoEnvConfig(image_size=4)
    with pytest.raises(ValueError, match="valid options: task, init_state"):
        env.reset(options={"init": 1})
    with pytest.raises(ValueError, match="init_state must be an index in 0-49"):
        env.reset(options={"init_state": 50})
    env.reset(options={"init_state": 0})
    with pytest.raises(ValueError, match="unknown camera"):
        env.render_cameras(("left",))
    with pytest.raises(ValueError, match=r"shape \(7,\)"):
        env.step(np.zeros(6))
    with pytest.raises(ValueError, match="finite"):
        env.step(np.array([np.nan] * 7))


def test_rendering_on_demand_gives_the_images_of_rendering_every_step(env):
    """Frames rendered only now and then are pixel for pixel those of a camera rendered after
    every step: rendering reads the simulator and changes nothing in it."""
    actions = np.random.default_rng(5).uniform(-0.5, 0.5, (12, 7))
    env.reset(options={"init_state": 2})
    every_step = [env.render_cameras()]
    for action in actions:
        env.step(action)
        every_step.append(env.render_cameras())
    env.reset(options={"init_state": 2})
    for k, action in enumerate(actions, start=1):
        env.step(action)
        if k % 5 == 0:
            images = env.render_cameras()
            for camera in ("agentview", "wrist"):
                assert np.array_equal(images[camera], every_step[k][camera]), f"{camera} at step {k}"
    assert not np.array_equal(every_step[5]["wrist"], every_step[10]["wrist"])   # the scene did change


def test_suite_helpers():
    assert parse_task_ids("0-2,5", "libero_spatial") == [0, 1, 2, 5]
    assert parse_task_ids("all", "libero_object") == list(range(10))
    assert init_states("libero_spatial", 0).shape[0] == 50


def test_tuned_rendering_sizes_buffer_and_drops_effects(env):
    import mujoco

    model = env._sim_env.sim.model
    scene = env._sim_env.sim._render_context_offscreen.scn
    assert (model.vis.global_.offwidth, model.vis.global_.offheight, model.vis.quality.offsamples) == (64, 64, 0)
    assert scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] == 0
    assert scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] == 0

