"""The graphs as shipped: `ellsa bringup` with the package's own params files and the real
speech stack and embedded model they name. config/sim.yaml runs unmodified; config/arm.yaml
runs with only its device sources swapped (test-pattern cameras, a WAV microphone, a WAV
speaker) and this test standing in for the arm's driver (joint states and the end-effector
pose) and for MoveIt Servo (the twist topic)."""
from __future__ import annotations

import json
import os
import re
import signal

import numpy as np
import soundfile
import yaml
from domain_coordinator import domain_id
from geometry_msgs.msg import PoseStamped, TwistStamped
from ros_graph import Probe, interrupt, spawn, wait_for
from sensor_msgs.msg import JointState
from std_msgs.msg import Float32MultiArray, Int16MultiArray, String

from ellsa_ros.nodes import messages as m
from ellsa_ros.nodes.share import config_file
from ellsa_ros.sim.microphone import synthesize
from ellsa_ros.speech import make_tts

PANDA_JOINTS = [f"panda_joint{i}" for i in range(1, 8)] + ["panda_finger_joint1", "panda_finger_joint2"]


class ShippedGraph:
    """`ellsa bringup --config FILE` in `cwd`, and a probe on the graph's topics."""

    def __init__(self, config, cwd, domain):
        self.cwd = cwd
        self.bringup = spawn("ellsa", domain=domain, log=cwd / "bringup.log", cwd=cwd,
                             extra=["bringup", "--config", str(config)])
        self.probe = Probe(domain)
        self.chunks = self.probe.collect(Float32MultiArray, "action_chunk", m.RELIABLE_QOS)
        self.twists = self.probe.collect(TwistStamped, "/servo_node/delta_twist_cmds", m.RELIABLE_QOS)
        self.speech = self.probe.collect(Int16MultiArray, "speech_audio", m.RELIABLE_QOS)
        self.events: list[dict] = []
        self.probe.node.create_subscription(String, "events", lambda msg: self.events.append(json.loads(msg.data)),
                                            m.RELIABLE_QOS)

    def kinds(self) -> list[str]:
        return [e["kind"] for e in self.events]

    def wait(self, condition, what: str, timeout_s: float = 240.0) -> None:
        def check():
            if self.bringup.poll() is not None:
                raise AssertionError(f"bringup exited {self.bringup.returncode}:\n{self.log()[-3000:]}")
            return condition()
        wait_for(check, timeout_s, what)

    def log(self) -> str:
        return (self.cwd / "bringup.log").read_text(errors="replace")

    def close(self) -> int:
        self.probe.close()
        try:
            return interrupt(self.bringup, timeout_s=60.0)
        finally:
            for pid in [int(x) for x in re.findall(r"pid (\d+)\)", self.log())]:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


def test_sim_graph_runs_from_the_shipped_params_file(tmp_path):
    with domain_id() as domain:
        g = ShippedGraph(config_file("sim.yaml"), tmp_path, domain)
        try:
            g.wait(lambda: len(g.chunks) >= 20, "20 commands on action_chunk")
            g.wait(lambda: any(e["kind"] == "user_transcript" and e.get("source") == "asr" for e in g.events),
                   "the spoken instruction transcribed")
            g.wait(lambda: "decided" in g.kinds(), "a decision of the embedded model")
        finally:
            rc = g.close()
    assert rc == 0, g.log()[-3000:]
    heard = next(e["text"] for e in g.events if e["kind"] == "user_transcript")
    # from its first word: the episode waited for the policy to load before speaking to it
    assert heard.lower().startswith("pick up the black bowl"), heard
    assert "policy_error" not in g.kinds(), [e for e in g.events if e["kind"] == "policy_error"][:1]
    assert len(g.speech) >= 20 and all(m.audio_array(s).size for s in g.speech)
    assert all(m.chunk_array(c).shape[1] == 7 for c in g.chunks)
    assert "0.5 s blocks" in g.log()   # the embedded model's block length, from block_s: 0.0
    # the ASR is biased toward the scene's object names, which the sim bridge publishes
    assert re.search(r"listening for the scene's object names: .*ramekin", g.log()), g.log()[-3000:]


def arm_config_with_test_sources(tmp_path, wav) -> str:
    """config/arm.yaml as shipped, but for where the devices are."""
    doc = yaml.safe_load(config_file("arm.yaml").read_text())
    for cam in ("agentview_camera", "wrist_camera"):
        doc[cam]["ros__parameters"].update(source="test_pattern", width=128, height=128, fps=15.0)
    # The recording repeats, as a room goes on: the policy node may start listening after the first pass.
    doc["microphone"]["ros__parameters"].update(source="file", file=str(wav), loop=True)
    doc["speaker"]["ros__parameters"].update(sink="file", file=str(tmp_path / "speech.wav"))
    path = tmp_path / "arm.yaml"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def test_arm_graph_runs_from_the_shipped_params_file(tmp_path):
    voice = make_tts("hibari")
    said = synthesize(voice, "Pick up the black bowl and place it on the plate.")
    silence = np.zeros(16000 * 2, np.float32)
    soundfile.write(tmp_path / "mic.wav", np.concatenate([silence, said, silence, silence]), 16000)
    config = arm_config_with_test_sources(tmp_path, tmp_path / "mic.wav")
    with domain_id() as domain:
        g = ShippedGraph(config, tmp_path, domain)
        node = g.probe.node
        joints = node.create_publisher(JointState, "joint_states", m.SENSOR_QOS)
        pose = node.create_publisher(PoseStamped, "ee_pose", m.SENSOR_QOS)

        def driver():   # the arm at rest, as its driver reports it
            now = node.get_clock().now().to_msg()
            js = JointState(name=PANDA_JOINTS, position=[0.0, -0.78, 0.0, -2.36, 0.0, 1.57, 0.78, 0.04, 0.04])
            js.header.stamp = now
            joints.publish(js)
            p = PoseStamped()
            p.header.stamp, p.header.frame_id = now, "panda_link0"
            p.pose.position.x, p.pose.position.z = 0.31, 0.49
            p.pose.orientation.x, p.pose.orientation.w = 1.0, 0.0
            pose.publish(p)
        node.create_timer(0.02, driver)
        try:
            g.wait(lambda: len(g.twists) >= 20, "20 MoveIt Servo twists")
            g.wait(lambda: g.kinds().count("decided") >= 3, "decisions of the embedded model on the arm's state")
            # the node may start listening mid-sentence: wait for a whole pass of the recording
            g.wait(lambda: any(e["kind"] == "user_transcript" and e.get("source") == "asr"
                               and "bowl" in e["text"].lower() for e in g.events),
                   "the microphone's instruction transcribed")
        finally:
            rc = g.close()
    assert rc == 0, g.log()[-3000:]
    # The 18-d state was built from the pose and the fingers: no block failed, nothing was dropped.
    assert "policy_error" not in g.kinds(), [e for e in g.events if e["kind"] == "policy_error"][:1]
    assert not [e for e in g.events if e["kind"] == "invalid_input" and e.get("stream") == "state"]
    heard = next(e["text"] for e in g.events if e["kind"] == "user_transcript" and "bowl" in e["text"].lower())
    assert "plate" in heard.lower(), heard
    # Disarmed as shipped: Servo hears zero twists in the arm's base frame, every tick, and no gripper command.
    assert not g.chunks and {t.header.frame_id for t in g.twists} == {"panda_link0"}
    assert not any(getattr(t.twist.linear, a) or getattr(t.twist.angular, a) for t in g.twists for a in "xyz")


def test_arm_sim_graph_runs_from_the_shipped_params_file(tmp_path):
    from geometry_msgs.msg import TwistStamped
    with domain_id() as domain:
        g = ShippedGraph(config_file("arm_sim.yaml"), tmp_path, domain)
        twists = g.probe.collect(TwistStamped, "/servo_node/delta_twist_cmds", m.RELIABLE_QOS)
        poses = g.probe.collect(PoseStamped, "ee_pose", m.SENSOR_QOS)
        try:
            g.wait(lambda: len(twists) >= 20 and len(poses) >= 20, "20 twists out and 20 poses in")
            g.wait(lambda: any(e["kind"] == "user_transcript" and e.get("source") == "asr" for e in g.events),
                   "the spoken instruction transcribed")
            g.wait(lambda: g.kinds().count("decided") >= 3, "decisions of the embedded model on the arm's state")
        finally:
            rc = g.close()
    assert rc == 0, g.log()[-3000:]
    assert "policy_error" not in g.kinds(), [e for e in g.events if e["kind"] == "policy_error"][:1]
    assert {t.header.frame_id for t in twists} == {"panda_link0"} and {p.header.frame_id for p in poses} == \
        {"panda_link0"}
    assert all(np.isfinite([t.twist.linear.x, t.twist.linear.y, t.twist.linear.z]).all() for t in twists)


def test_every_shipped_params_file_is_started_by_a_test():
    from ellsa_ros.nodes.share import share_dir
    shipped = {p.name for p in (share_dir() / "config").glob("*.yaml")}
    assert shipped == {"sim.yaml", "arm.yaml", "arm_sim.yaml"}, "a params file no test starts as shipped"
