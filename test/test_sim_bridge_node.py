"""The sim bridge as a ROS 2 node: observations, microphone and typed lines out, chunks in."""
from __future__ import annotations

import json
import subprocess

import numpy as np
import rclpy
from domain_coordinator import domain_id
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image, JointState
from sim_voices import shared_env
from std_msgs.msg import Float32MultiArray, Int16MultiArray, String

from ellsa_ros.nodes import messages as m
from ellsa_ros.sim.bridge_node import SimBridgeNode

STEPS = 30


def test_bridge_node_runs_an_episode_from_action_chunks(tmp_path):
    wav = tmp_path / "bowl.wav"
    wav.write_bytes(subprocess.run(["espeak-ng", "--stdout", "pick up the black bowl"], check=True,
                                   capture_output=True).stdout)
    (tmp_path / "s.yaml").write_text("events:\n  - {at: 0.2, say: pick up the black bowl, wav: bowl.wav}\n"
                                     "  - {at: 0.3, say: typed hello, typed: true}\n")
    with domain_id() as domain:
        context = rclpy.Context()
        rclpy.init(context=context, domain_id=domain)
        try:
            node = SimBridgeNode(env=shared_env(), context=context, parameter_overrides=[
                Parameter("scenario", value=str(tmp_path / "s.yaml")), Parameter("image_size", value=64),
                Parameter("max_steps", value=STEPS)])
            peer = rclpy.create_node("peer", context=context)
            got: dict[str, list] = {"state": [], "audio_peak": [], "instruction": [], "events": [], "frames": []}
            # frames at camera_hz (4 Hz: every 5th step)
            peer.create_subscription(Image, "agentview/image", got["frames"].append, m.SENSOR_QOS)
            peer.create_subscription(JointState, "joint_states", lambda msg: got["state"].append(msg.position[2]),
                                     m.RELIABLE_QOS)
            peer.create_subscription(Int16MultiArray, "audio",
                                     lambda msg: got["audio_peak"].append(int(np.abs(m.audio_array(msg)).max())),
                                     m.SENSOR_QOS)
            peer.create_subscription(String, "instruction", lambda msg: got["instruction"].append(msg.data),
                                     m.RELIABLE_QOS)
            peer.create_subscription(String, "sim/events", lambda msg: got["events"].append(json.loads(msg.data)),
                                     m.RELIABLE_QOS)
            executor = SingleThreadedExecutor(context=context)
            executor.add_node(node)
            executor.add_node(peer)
            # A listener alone is not a policy (a recorder listens too): the episode waits for commands.
            for _ in range(40):
                executor.spin_once(timeout_sec=0.05)
            assert node.steps == 0 and not got["audio_peak"] and not got["events"]
            chunks = peer.create_publisher(Float32MultiArray, "action_chunk", m.RELIABLE_QOS)
            z0 = float(node.obs["state"][2])
            down = np.zeros((10, 7), np.float32)
            down[:, 2], down[:, 6] = -0.8, -1.0
            sent = False
            for _ in range(4000):
                if node.done and got["events"]:
                    break
                executor.spin_once(timeout_sec=0.05)
                if node.steps >= 3 and not sent:
                    chunks.publish(m.chunk_array_msg(np.zeros((4, 6), np.float32)))   # wrong width: refused
                    chunks.publish(m.chunk_array_msg(down))
                    sent = True
            for _ in range(20):
                executor.spin_once(timeout_sec=0.01)
            assert node.steps == STEPS and node.done
            assert node.refused == 1 and node.chunks == 1
            z = [float(x) for x in node.obs["state"][:3]]
            assert z[2] < z0 - 0.05                         # the 10 downward actions ran
            # Then it held: the last action sent (state[11:18]) was zero deltas with the gripper kept open.
            assert np.allclose(node.obs["state"][11:18], [0, 0, 0, 0, 0, 0, -1.0])
            assert got["instruction"] == ["typed hello"]
            assert STEPS // 5 - 1 <= len(got["frames"]) <= STEPS // 5 + 1, len(got["frames"])
            assert max(got["audio_peak"]) > 10000 > min(got["audio_peak"])   # the words, and room noise
            assert got["events"][0]["kind"] == "episode_start" and got["events"][0]["t"] == 0.0
            assert got["events"][-1]["kind"] == "episode_end" and got["events"][-1]["steps"] == STEPS
            # The scene's object names are latched: a node that joins after the start still gets them.
            names: list = []
            late = rclpy.create_node("late", context=context)
            late.create_subscription(String, "scene_vocabulary", lambda msg: names.append(json.loads(msg.data)),
                                     m.LATCHED_QOS)
            executor.add_node(late)
            for _ in range(100):
                if names:
                    break
                executor.spin_once(timeout_sec=0.05)
            assert names and {"black bowl", "plate", "ramekin"} <= set(names[0]), names
            late.destroy_node()
            node.destroy_node()
            peer.destroy_node()
        finally:
            rclpy.try_shutdown(context=context)


def test_the_step_budget_starts_once_the_instruction_has_been_said(tmp_path):
    # As in `ellsa sim`: a 4 s spoken instruction must not take 4 s from the suite's 220 steps.
    wav = tmp_path / "long.wav"
    said = "pick up the black bowl between the plate and the ramekin and place it on the plate"
    spoken = subprocess.run(["espeak-ng", "-s", "120", "--stdout", said], check=True, capture_output=True)
    wav.write_bytes(spoken.stdout)
    (tmp_path / "s.yaml").write_text("events:\n  - {at: 1.0, say: pick up the bowl, wav: long.wav}\n")
    with domain_id() as domain:
        context = rclpy.Context()
        rclpy.init(context=context, domain_id=domain)
        try:
            env = shared_env()
            node = SimBridgeNode(env=env, context=context, parameter_overrides=[
                Parameter("scenario", value=str(tmp_path / "s.yaml")), Parameter("image_size", value=64)])
            said_end = node.mic.utterances[0].t_end
            assert said_end > 4.0
            assert node.max_steps == int(np.ceil(said_end / 0.05 - 1e-9)) + env.max_steps
            node.destroy_node()
        finally:
            rclpy.try_shutdown(context=context)
