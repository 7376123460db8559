"""The arm graph on real ROS 2, one process per node, started by `ellsa bringup`:
camera test patterns, a microphone playing a WAV file, the policy node with a real
(scripted) Policy, a speaker writing a file, and the recorder."""
from __future__ import annotations

import json
import os
import re
import signal
import wave

import numpy as np
import pytest
from domain_coordinator import domain_id
from rclpy.qos import QoSReliabilityPolicy
from ros_graph import Probe, interrupt, spawn, wait_for
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float32MultiArray, Int16MultiArray, String
from std_srvs.srv import SetBool, Trigger

from ellsa_ros.nodes import messages as m
from ellsa_ros.nodes.console_link import ConsoleLink

PARAMS = """
agentview_camera: {ros__parameters: {source: test_pattern, fps: 15.0, width: 64, height: 48}}
wrist_camera: {ros__parameters: {source: test_pattern, fps: 15.0, width: 64, height: 48}}
microphone: {ros__parameters: {source: file, file: "%(wav)s", loop: true}}
policy:
  ros__parameters:
    cameras: [agentview, wrist]
    image_width: 64
    image_height: 48
    joint_names: [j1, j2, j3]
    max_age_s: {state: 0.5, camera: 1.0}
    armed_at_start: true
    policy: {class: "ros_doubles:SteadyPolicy"}
    speech: {tts: "runtime_doubles:ToneTTS"}
speaker: {ros__parameters: {sink: file, file: "%(speech)s"}}
"""
HOLD = [0.0] * 6 + [-1.0]


def write_wav(path, seconds=4.0, burst=(2.0, 2.6)):
    """Quiet room noise with a loud, speech-like burst (the energy VAD hears it as speech)."""
    sr = 16000
    rng = np.random.default_rng(0)
    x = 0.001 * rng.standard_normal(int(seconds * sr))
    a, b = int(burst[0] * sr), int(burst[1] * sr)
    x[a:b] = 0.2 * rng.standard_normal(b - a)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes((np.clip(x, -1, 1) * 32767).astype(np.int16).tobytes())


class Graph:
    def __init__(self, tmp, domain):
        self.tmp, self.domain = tmp, domain
        write_wav(tmp / "mic.wav")
        (tmp / "graph.yaml").write_text(PARAMS % {"wav": tmp / "mic.wav", "speech": tmp / "speech.wav"})
        self.bringup = spawn("ellsa", domain=domain, log=tmp / "bringup.log",
                             extra=["bringup", "--config", str(tmp / "graph.yaml")])
        self.recorder = spawn("recorder_node", "-r", "__node:=recorder", "-p", f"output:={tmp / 'bag'}",
                              domain=domain, log=tmp / "recorder.log")
        self.probe = Probe(domain)
        n = self.probe.node
        self.actions = self.probe.collect(Float32MultiArray, "action_chunk", m.RELIABLE_QOS)
        self.speech = self.probe.collect(Int16MultiArray, "speech_audio", m.RELIABLE_QOS)
        self.transcript = self.probe.collect(String, "transcript", m.RELIABLE_QOS)
        self.events: list[dict] = []
        n.create_subscription(String, "events", lambda msg: self.events.append(json.loads(msg.data)), m.RELIABLE_QOS)
        self.joints = n.create_publisher(JointState, "joint_states", m.RELIABLE_QOS)
        self.instruction = n.create_publisher(String, "instruction", m.RELIABLE_QOS)
        self.publish_state = True
        n.create_timer(0.05, self.state_callback)
        self.stop = n.create_client(Trigger, "policy/stop")
        self.mute = n.create_client(SetBool, "policy/mute")

    def instruct(self, text):
        """Types an instruction, as the console does, once the policy node listens for it."""
        wait_for(lambda: self.instruction.get_subscription_count() >= 1, 20.0, "the policy's instruction topic")
        self.instruction.publish(String(data=text))

    def state_callback(self):
        if self.publish_state:
            msg = JointState(name=["j3", "j2", "j1", "finger"], position=[3.0, 2.0, 1.0, 0.0])
            msg.header.stamp = self.probe.node.get_clock().now().to_msg()
            self.joints.publish(msg)

    def kinds(self, since=0):
        return [e["kind"] for e in self.events[since:]]

    def close(self):
        self.probe.close()
        try:
            for p in (self.recorder, self.bringup):
                if p.poll() is None:
                    interrupt(p, timeout_s=60.0)
        finally:
            # Nodes run in sessions of their own: if bringup itself had to be killed, they must
            # not outlive this module and talk on a domain a later test is handed.
            for pid in [int(x) for x in re.findall(r"pid (\d+)\)", (self.tmp / "bringup.log").read_text())]:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    with domain_id() as domain:
        g = Graph(tmp_path_factory.mktemp("graph"), domain)
        try:
            topics = ("action_chunk", "speech_audio", "transcript", "events")
            wait_for(lambda: all(g.probe.node.count_publishers(t) for t in topics), 60.0, "the policy's topics")
            # every tick publishes a command, the hold before the policy's first chunk too
            wait_for(lambda: any(np.allclose(m.chunk_array(a)[0], [0.1] * 6 + [-1.0]) for a in list(g.actions)),
                     60.0, "the policy's chunk on action_chunk")
            yield g
        finally:
            g.close()


def test_topics_types_and_qos(graph):
    node = graph.probe.node
    best_effort, reliable = QoSReliabilityPolicy.BEST_EFFORT, QoSReliabilityPolicy.RELIABLE
    expect = {  # topic -> (type, publishing node, reliability)
        "/agentview/image": ("sensor_msgs/msg/Image", "agentview_camera", best_effort),
        "/wrist/image": ("sensor_msgs/msg/Image", "wrist_camera", best_effort),
        "/audio": ("std_msgs/msg/Int16MultiArray", "microphone", best_effort),
        "/action_chunk": ("std_msgs/msg/Float32MultiArray", "policy", reliable),
        "/speech_audio": ("std_msgs/msg/Int16MultiArray", "policy", reliable),
        "/transcript": ("std_msgs/msg/String", "policy", reliable),
        "/events": ("std_msgs/msg/String", "policy", reliable),
        "/speech_played": ("std_msgs/msg/Int16MultiArray", "speaker", reliable),
    }
    for topic, (msgtype, who, reliability) in expect.items():
        wait_for(lambda t=topic, w=who: any(i.node_name == w for i in node.get_publishers_info_by_topic(t)), 20.0,
                 f"{who} to publish {topic}")
        pubs = [i for i in node.get_publishers_info_by_topic(topic) if i.node_name == who]
        assert len(pubs) == 1
        assert pubs[0].topic_type == msgtype and pubs[0].qos_profile.reliability == reliability, topic
    subs = {(i.node_name, t) for t in ("/agentview/image", "/wrist/image", "/audio", "/joint_states", "/instruction",
                                       "/speech_played", "/speech_audio")
            for i in node.get_subscriptions_info_by_topic(t)}
    for t in ("/agentview/image", "/wrist/image", "/audio", "/joint_states", "/instruction", "/speech_played"):
        assert ("policy", t) in subs
    assert ("speaker", "/speech_audio") in subs
    services = dict(node.get_service_names_and_types_by_node("policy", "/"))
    assert services["/policy/stop"] == ["std_srvs/srv/Trigger"]
    assert services["/policy/reset"] == ["std_srvs/srv/Trigger"]
    assert services["/policy/mute"] == ["std_srvs/srv/SetBool"]


def test_graph_acts_speaks_and_reports(graph):
    moving = [m.chunk_array(a) for a in graph.actions]
    assert all(c.ndim == 2 and c.shape[0] >= 1 and c.shape[1] == 7 for c in moving)
    assert any(c.shape[0] > 1 for c in moving)   # this tick's command plus the plan's look-ahead
    assert any(np.allclose(c[0], [0.1] * 6 + [-1.0]) for c in moving)   # the policy's chunk reached the arm
    graph.instruct("hello")
    wait_for(lambda: "You said: hello." in [t.data for t in graph.transcript], 20.0, "the robot's transcript")
    wait_for(lambda: any(np.abs(m.audio_array(f)).max() > 1000 for f in graph.speech), 20.0, "the robot's voice")
    assert all(m.audio_array(f).shape == (320, 1) for f in graph.speech)   # 20 ms frames at 16 kHz
    for kind in ("decided", "action_chunk_start", "robot_speech_start", "user_speech_start", "user_speech_end"):
        wait_for(lambda k=kind: k in graph.kinds(), 20.0, f"a {kind} event")   # the burst repeats every 4 s
    with wave.open(str(graph.tmp / "speech.wav")) as w:   # the speaker played the voice into its file
        pcm = np.frombuffer(w.readframes(w.getnframes()), np.int16)
    assert w.getframerate() == 16000 and np.abs(pcm).max() > 1000


def test_console_sends_typed_instruction_and_shows_reply(graph):
    link = ConsoleLink("policy", context=graph.probe.context)
    graph.probe.executor.add_node(link)
    wait_for(lambda: link.instruction_pub.get_subscription_count() >= 1 and link.count_publishers("events") >= 1,
             20.0, "the console to discover the policy")
    link.send("put the bowl on the plate")
    wait_for(lambda: "robot: You said: put the bowl on the plate." in link.state.conversation, 20.0,
             "the robot's answer in the console")
    assert "you (typed): put the bowl on the plate" in link.state.conversation
    # The policy sends a chunk every block: the console shows the arm acting (after a moment of
    # holding, when a best-effort state message is late on a loaded machine).
    wait_for(lambda: link.state.arm == "acting", 20.0, "the console to show the arm acting")
    assert any("action_chunk_start" in line for line in link.state.events)
    graph.probe.executor.remove_node(link)
    link.destroy_node()


def test_bad_inputs_are_dropped_counted_and_survived(graph):
    node = graph.probe.node
    image_pub = node.create_publisher(Image, "agentview/image", m.SENSOR_QOS)
    wait_for(lambda: image_pub.get_subscription_count() >= 1, 20.0, "the policy to subscribe the test's images")
    log = graph.tmp / "bringup.log"
    since = len(graph.events)

    def send_until(publish, done, what):
        """Sensor topics are best effort: a bad message may be lost, so send until it is noticed."""
        def attempt():
            publish()
            return done()
        wait_for(attempt, 20.0, what)

    def mono():
        msg = Image(height=48, width=64, encoding="mono8", step=64, data=bytes(64 * 48))
        msg.header.stamp = node.get_clock().now().to_msg()
        image_pub.publish(msg)

    def older_state():
        msg = JointState(name=["j1", "j2", "j3"], position=[1.0, 2.0, 3.0])
        msg.header.stamp = m.to_stamp(m.from_stamp(node.get_clock().now().to_msg()) - 60.0)
        graph.joints.publish(msg)

    def reasons():
        return " | ".join(e["reason"] for e in graph.events[since:] if e["kind"] == "invalid_input")

    send_until(mono, lambda: "dropped an input on agentview: image encoding 'mono8'" in log.read_text(),
               "the wrong encoding to be logged")
    send_until(lambda: graph.joints.publish(JointState(name=["j1", "j2"], position=[1.0, 2.0])),
               lambda: "dropped an input on state: joint_states lacks joints ['j3']" in log.read_text(),
               "the missing joint to be logged")
    send_until(lambda: image_pub.publish(m.image_msg(np.zeros((10, 10, 3), np.uint8),
                                                     node.get_clock().now().to_msg(), "x")),
               lambda: "image size 10x10, expected 64x48" in reasons(), "the wrong size to be refused")
    send_until(older_state, lambda: "earlier than the previous one" in reasons(), "the old stamp to be refused")
    counts = [e["count"] for e in graph.events[since:] if e["kind"] == "invalid_input" and e["stream"] == "state"]
    assert counts == sorted(counts) and counts[0] >= 1      # counted, one more each time
    n_actions = len(graph.actions)
    wait_for(lambda: len(graph.actions) > n_actions + 10, 20.0, "the policy to keep publishing")
    assert graph.bringup.poll() is None


def test_stale_joint_states_hold_the_arm(graph):
    since = len(graph.events)
    graph.publish_state = False
    try:
        # Under load a best-effort camera may go stale too; the state must be among what went stale.
        wait_for(lambda: any(e["kind"] == "stale_input" and e["stream"] == "state" for e in graph.events[since:]),
                 20.0, "a stale_input event for the state")
        n = len(graph.actions)
        wait_for(lambda: len(graph.actions) > n + 12, 20.0, "commands while stale")
        later = [m.chunk_array(a)[0] for a in graph.actions[n + 2:]]   # two may have been on the way
        assert all(np.allclose(c, HOLD) for c in later), later          # holding: no motion, gripper kept
    finally:
        graph.publish_state = True
    wait_for(lambda: "input_recovered" in graph.kinds(since), 20.0, "the state to recover")


def test_stop_and_mute_services(graph):
    since = len(graph.events)
    answer = graph.probe.call(graph.stop, Trigger.Request())
    assert answer.success
    wait_for(lambda: any(e["kind"] == "action_halt" and e["reason"] == "stop_service" for e in graph.events[since:]),
             10.0, "action_halt from the stop service")
    assert graph.probe.call(graph.mute, SetBool.Request(data=True)).success
    n_speech = len(graph.speech)
    graph.instruct("say something")
    wait_for(lambda: "robot_speech_start" in graph.kinds(since), 20.0, "the robot to speak (muted)")
    wait_for(lambda: len(graph.speech) > n_speech + 50, 20.0, "speech frames while muted")
    assert all(np.abs(m.audio_array(f)).max() == 0 for f in graph.speech[n_speech:])
    assert graph.probe.call(graph.mute, SetBool.Request(data=False)).success


def test_recorder_bag_reads_back(graph):
    from mcap_ros2.reader import read_ros2_messages
    streams = ("/agentview/image", "/wrist/image", "/audio", "/action_chunk", "/speech_audio", "/events",
               "/joint_states")
    topics = (*streams, "/transcript")

    def heard(topic):
        """The recorder's own word that a message of `topic` is in the bag: its subscription being
        seen by the probe says nothing of whether the publisher has matched it yet."""
        return f"first message on {topic}" in (graph.tmp / "recorder.log").read_text()

    wait_for(lambda: all(heard(t) for t in streams), 20.0, "the recorder to receive every runtime stream")

    def remembered():
        n = len(graph.transcript)
        graph.instruct("remember this")
        wait_for(lambda: len(graph.transcript) > n, 20.0, "the robot's reply")
        return heard("/transcript")

    # Transcripts come only when spoken to: ask until one has reached the recorder.
    wait_for(remembered, 60.0, "the recorder to receive a transcript")
    assert interrupt(graph.recorder) == 0
    mcaps = list((graph.tmp / "bag").glob("*.mcap"))
    assert (graph.tmp / "bag" / "metadata.yaml").is_file() and len(mcaps) == 1
    seen: dict[str, list] = {}
    for msg in read_ros2_messages(str(mcaps[0])):
        seen.setdefault(msg.channel.topic, []).append(msg.ros_msg)
    for topic in topics:
        assert seen.get(topic), f"{topic} is not in the bag"
    image = seen["/agentview/image"][0]
    assert (image.width, image.height, image.encoding) == (64, 48, "rgb8")
    assert json.loads(seen["/events"][0].data)["kind"]
    assert "You said: remember this." in [t.data for t in seen["/transcript"]]
    assert [d.label for d in seen["/action_chunk"][0].layout.dim] == ["chunk", "dof"]


def test_bringup_ctrl_c_stops_every_node(graph):
    pids = [int(p) for p in re.findall(r"pid (\d+)\)", (graph.tmp / "bringup.log").read_text())]
    assert len(pids) == 5
    assert interrupt(graph.bringup, timeout_s=60.0) == 0
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            import os
            os.kill(pid, 0)
