"""Single nodes on real ROS 2, each in its own process: the policy node for a joint-space
arm (JointTrajectory chunks), the microphone's frame layout, bringup's exits."""
from __future__ import annotations

import json
import subprocess

import numpy as np
from domain_coordinator import domain_id
from ros_graph import BIN, Probe, interrupt, messages_from, ros_env, spawn, wait_for
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float32MultiArray, Int16MultiArray, String
from trajectory_msgs.msg import JointTrajectory

from ellsa_ros.nodes import messages as m
from ellsa_ros.nodes.share import config_file

JOINT_POLICY = """
policy:
  ros__parameters:
    cameras: [front]
    use_audio: false
    joint_names: [shoulder, elbow, wrist]
    action_space: joint_positions
    joint_low: [-1.0, -1.0, -1.0]
    joint_high: [1.0, 1.0, 1.0]
    max_step: 0.05
    control_hz: 10.0
    frame_id: base
    armed_at_start: true
    policy: {class: "ros_doubles:SteadyJointPolicy"}
    speech: {tts: "runtime_doubles:ToneTTS"}
"""


def publish_sensors(probe: Probe, joint_names: list[str]) -> None:
    """A front camera and the joints at zero, at 20 Hz, from the probe."""
    image = probe.node.create_publisher(Image, "front/image", m.SENSOR_QOS)
    joints = probe.node.create_publisher(JointState, "joint_states", m.SENSOR_QOS)

    def sensors():
        now = probe.node.get_clock().now().to_msg()
        image.publish(m.image_msg(np.zeros((8, 8, 3), np.uint8), now, "front"))
        state = JointState(name=joint_names, position=[0.0] * len(joint_names))
        state.header.stamp = now
        joints.publish(state)
    probe.node.create_timer(0.05, sensors)


def test_policy_node_drives_a_joint_arm_with_trajectories(tmp_path):
    (tmp_path / "joint.yaml").write_text(JOINT_POLICY)
    with domain_id() as domain:
        node = spawn("policy_node", "-r", "__node:=policy", "--params-file", str(tmp_path / "joint.yaml"),
                     domain=domain, log=tmp_path / "policy.log")
        probe = Probe(domain)
        try:
            got = probe.collect(JointTrajectory, "action_chunk", m.RELIABLE_QOS)
            publish_sensors(probe, ["wrist", "elbow", "shoulder"])
            wait_for(lambda: len(got) >= 25, 60.0, "25 trajectories")
        finally:
            probe.close()
            assert interrupt(node) == 0
    last = got[-1]
    assert last.joint_names == ["shoulder", "elbow", "wrist"] and last.header.frame_id == "base"
    assert len(last.points) >= 1 and last.points[0].time_from_start.sec == 0
    assert last.points[0].time_from_start.nanosec == 0
    # Look-ahead points follow at the control period (10 Hz here).
    steps = [p.time_from_start.sec * 1e9 + p.time_from_start.nanosec for p in last.points]
    assert np.allclose(np.diff(steps), 1e8)
    # Before the first plan the arm holds where its joints are; then the targets approach the
    # policy's [0.1, -0.2, 0.3] from there by at most max_step per tick.
    positions = np.array([t.points[0].positions for t in got])
    assert np.allclose(positions[0], 0.0)   # the measured joints
    assert np.all(np.abs(np.diff(positions, axis=0)) <= 0.05 + 1e-6), positions.round(3).tolist()
    assert np.allclose(positions[-1], [0.1, -0.2, 0.3])
    stamps = [m.from_stamp(t.header.stamp) for t in got]
    assert stamps == sorted(stamps)


def test_microphone_publishes_frames_of_the_configured_layout(tmp_path):
    import wave
    with wave.open(str(tmp_path / "tone.wav"), "wb") as w:   # 48 kHz stereo: resampled and laid out again
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(48000)
        t = np.arange(48000) / 48000
        tone = (0.5 * np.sin(2 * np.pi * 440 * t) * 32767).astype(np.int16)
        w.writeframes(np.repeat(tone[:, None], 2, axis=1).tobytes())
    got = messages_from("microphone_node", "-p", "source:=file", "-p", f"file:={tmp_path / 'tone.wav'}",
                        "-p", "frame_ms:=32.0", "-p", "channels:=2", msg_type=Int16MultiArray, topic="audio",
                        qos=m.SENSOR_QOS, count=5, log=tmp_path / "mic.log", what="five audio frames")
    frame = m.audio_array(got[-1])
    assert [d.label for d in got[-1].layout.dim] == ["samples", "channels"]
    assert frame.shape == (512, 2) and np.abs(frame).max() > 10000   # 32 ms at 16 kHz, the tone kept


def test_bringup_refuses_a_bad_config_before_starting_anything(tmp_path):
    shipped = config_file("arm.yaml").read_text()
    bad = shipped.replace("block_s: 0.0", "block_s: 5.0")
    assert bad != shipped
    (tmp_path / "arm.yaml").write_text(bad)
    done = subprocess.run([str(BIN / "ellsa"), "bringup", "--config", str(tmp_path / "arm.yaml")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "policy.block_s" in done.stderr and "started" not in done.stderr


def test_bringup_ends_when_a_node_dies_and_names_it(tmp_path):
    wav = tmp_path / "quiet.wav"
    import wave
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(bytes(3200))
    (tmp_path / "arm.yaml").write_text(f"""
agentview_camera: {{ros__parameters: {{source: test_pattern, fps: 5.0, width: 32, height: 32}}}}
wrist_camera: {{ros__parameters: {{source: test_pattern, fps: 5.0, width: 32, height: 32}}}}
microphone: {{ros__parameters: {{source: file, file: "{wav}"}}}}
policy:
  ros__parameters: {{policy: {{class: "ros_doubles:NoSuchPolicy"}}, speech: {{tts: "runtime_doubles:ToneTTS"}}}}
speaker: {{ros__parameters: {{sink: file, file: "{tmp_path / 'speech.wav'}"}}}}
""")
    with domain_id() as domain:
        done = subprocess.run([str(BIN / "ellsa"), "bringup", "--config", str(tmp_path / "arm.yaml")],
                              capture_output=True, text=True, timeout=120, env=ros_env(domain))
    assert done.returncode == 2, done.stderr
    assert "node policy exited with code 2" in done.stderr
    assert "parameter 'policy.class': cannot load" in done.stderr
    assert done.stderr.count("started ") == 5


FAILING_POLICY = """
policy:
  ros__parameters:
    cameras: [front]
    use_audio: false
    control_hz: 20.0
    policy_failing_after: 3
    policy: {class: "ros_doubles:BrokenPolicy"}
    speech: {tts: "runtime_doubles:ToneTTS"}
"""


def test_a_failing_policy_is_loud_and_the_arm_keeps_hearing_hold(tmp_path):
    (tmp_path / "failing.yaml").write_text(FAILING_POLICY)
    with domain_id() as domain:
        node = spawn("policy_node", "-r", "__node:=policy", "--params-file", str(tmp_path / "failing.yaml"),
                     domain=domain, log=tmp_path / "policy.log")
        probe = Probe(domain)
        try:
            chunks = probe.collect(Float32MultiArray, "action_chunk", m.RELIABLE_QOS)
            events: list[dict] = []
            probe.node.create_subscription(String, "events", lambda msg: events.append(json.loads(msg.data)),
                                           m.RELIABLE_QOS)
            publish_sensors(probe, [f"j{i}" for i in range(9)])
            # Events published before discovery matched the probe would be lost: start the
            # failures once the probe hears the node's events.
            instruction = probe.node.create_publisher(String, "instruction", m.RELIABLE_QOS)
            wait_for(lambda: any(e["kind"] == "decided" for e in events), 60.0, "the node's events")
            wait_for(lambda: instruction.get_subscription_count() >= 1, 30.0, "the node's instruction topic")
            instruction.publish(String(data="fail from now on"))
            wait_for(lambda: any(e["kind"] == "policy_failing" for e in events), 60.0, "a policy_failing event")
            n = len(chunks)
            wait_for(lambda: len(chunks) >= n + 10, 30.0, "holding commands after the policy failed")
        finally:
            probe.close()
            assert interrupt(node) == 0
    failing = [e for e in events if e["kind"] == "policy_failing"]
    errors = [e for e in events if e["kind"] == "policy_error"]
    assert len(failing) == 1 and failing[0]["failures"] == 3
    assert [e["consecutive"] for e in errors[:3]] == [1, 2, 3]
    assert "state has 9 values, the model expects 18" in failing[0]["error"]
    # Every command the arm heard is the hold: zero deltas, one point, no look-ahead.
    held = [m.chunk_array(c) for c in chunks]
    assert held and all(h.shape == (1, 7) and not h.any() for h in held)
    assert not any(e["kind"] == "action_chunk_start" for e in events)
    log = (tmp_path / "policy.log").read_text()
    first = [line for line in log.splitlines() if "the policy failed on a block" in line]
    assert len(first) == 1 and first[0].startswith("[ERROR]") and "the model expects 18" in first[0]
    assert "has failed 3 blocks in a row" in log
