"""The real-arm command path: the policy node's outputs on the topics and messages the arm's
controllers read (MoveIt Servo twists, JointTrajectory, forward-command arrays, the gripper),
arming, holds and caps under fuzzed model outputs, forward kinematics against the simulator's
own state, and a short episode through config/arm_sim.yaml. Node processes are real, on ROS
domains of their own; the policies are doubles where the model is not the point."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess

import numpy as np
import pytest
import yaml
from domain_coordinator import domain_id
from geometry_msgs.msg import PoseStamped, TwistStamped
from ros_graph import BIN, Probe, interrupt, ros_env, spawn, wait_for
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64MultiArray, String
from std_srvs.srv import SetBool
from trajectory_msgs.msg import JointTrajectory

from ellsa_ros.arm.proprio import ProprioceptionTracker
from ellsa_ros.nodes import messages as m
from ellsa_ros.nodes.commands import GripperScale, TwistScale
from ellsa_ros.nodes.params import ParamError, PolicyParams
from ellsa_ros.nodes.share import config_file

SERVO = "/servo_node/delta_twist_cmds"
GRIPPER = "/gripper_controller/commands"
PANDA = [f"panda_joint{i}" for i in range(1, 8)] + ["panda_finger_joint1", "panda_finger_joint2"]


def policy_params(tmp_path, **values) -> str:
    base = {"cameras": ["front"], "use_audio": False, "control_hz": 20.0, "state_source": "ee_pose",
            "pose_frame": "panda_link0", "max_age_s": {"state": 0.5, "camera": 1.0},
            "speech": {"tts": "runtime_doubles:ToneTTS"}}
    base.update(values)
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump({"policy": {"ros__parameters": base}}))
    return str(path)


class ArmDriver:
    """The probe as the arm's driver: a camera, joint_states and the end-effector pose at 20 Hz."""

    def __init__(self, probe: Probe, frame: str = "panda_link0") -> None:
        node = probe.node
        self.node, self.frame, self.running = node, frame, True
        self.image = node.create_publisher(Image, "front/image", m.SENSOR_QOS)
        self.joints = node.create_publisher(JointState, "joint_states", m.SENSOR_QOS)
        self.pose = node.create_publisher(PoseStamped, "ee_pose", m.SENSOR_QOS)
        node.create_timer(0.05, self.publish)

    def publish(self) -> None:
        if not self.running:
            return
        now = self.node.get_clock().now().to_msg()
        self.image.publish(m.image_msg(np.zeros((8, 8, 3), np.uint8), now, "front"))
        js = JointState(name=PANDA, position=[0.0, -0.78, 0.0, -2.36, 0.0, 1.57, 0.78, 0.04, 0.04])
        js.header.stamp = now
        self.joints.publish(js)
        p = PoseStamped()
        p.header.stamp, p.header.frame_id = now, self.frame
        p.pose.position.x, p.pose.position.z = 0.31, 0.49
        p.pose.orientation.x, p.pose.orientation.w = 1.0, 0.0
        self.pose.publish(p)


class PolicyProcess:
    def __init__(self, tmp_path, domain, params_file: str) -> None:
        self.log_path = tmp_path / "policy.log"
        self.proc = spawn("policy_node", "-r", "__node:=policy", "--params-file", params_file, domain=domain,
                          log=self.log_path)
        self.probe = Probe(domain)
        self.events: list[dict] = []
        self.probe.node.create_subscription(String, "events", lambda msg: self.events.append(json.loads(msg.data)),
                                            m.RELIABLE_QOS)

    def call(self, srv_type, name: str, request):
        return self.probe.call(self.probe.node.create_client(srv_type, name), request)

    def close(self) -> int:
        self.probe.close()
        return interrupt(self.proc)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def twist_values(msgs: list[TwistStamped]) -> np.ndarray:
    return np.array([[t.twist.linear.x, t.twist.linear.y, t.twist.linear.z,
                      t.twist.angular.x, t.twist.angular.y, t.twist.angular.z] for t in msgs])


# --- scaling and caps, without ROS --------------------------------------------------------

def test_twist_scaling_keeps_direction_and_caps_every_output():
    scale = TwistScale(linear_scale=1.0, angular_scale=10.0, max_linear=0.25, max_angular=1.0)
    lin, ang = scale.twist(np.array([0.1, -0.05, 0.0, 0.0, 0.0, 0.05, 1.0]))
    assert np.allclose(lin, [0.1, -0.05, 0.0]) and np.allclose(ang, [0.0, 0.0, 0.5])   # under the caps
    lin, ang = scale.twist(np.array([1.0, 1.0, 0.0, 0.0, -1.0, 0.0, 1.0]))
    assert np.isclose(np.linalg.norm(lin), 0.25) and np.allclose(lin / np.linalg.norm(lin), [2 ** -0.5, 2 ** -0.5, 0])
    assert np.isclose(np.linalg.norm(ang), 1.0) and ang[1] < 0
    rng = np.random.default_rng(1)
    fuzz = np.concatenate([rng.normal(0, 1e6, (500, 7)), np.full((1, 7), np.nan), np.full((1, 7), -np.inf)])
    for a in fuzz:
        lin, ang = scale.twist(a)
        assert np.isfinite(lin).all() and np.isfinite(ang).all()
        assert np.linalg.norm(lin) <= 0.25 and np.linalg.norm(ang) <= 1.0
    assert not any(scale.twist(np.full(7, np.nan))[0])
    assert np.allclose(scale.action(*TwistScale(1.0, 10.0, np.inf, np.inf).twist(np.full(7, 0.3))), 0.3)
    g = GripperScale(0.04, 0.0)
    assert (g.position(-1.0), g.position(1.0), g.position(5.0)) == (0.04, 0.0, 0.0)
    assert g.action(g.position(0.2)) == pytest.approx(0.2)


@pytest.mark.parametrize("values, name, says", [
    ({"command_interface": "servo"}, "command_interface", "not one of"),
    ({"linear_scale": 0.0}, "linear_scale", "above 0"),
    ({"max_angular_speed": -1.0}, "max_angular_speed", "above 0"),
    ({"command_interface": "joint_trajectory_controller"}, "command_interface", "joint_positions"),
    ({"command_interface": "forward_command", "forward_interface": "position"}, "forward_interface", "joint_pos"),
    ({"gripper_open": 0.0, "gripper_closed": 0.0}, "gripper_closed", "equals gripper_open"),
    ({"state_source": "fk"}, "urdf", "needs the arm's URDF"),
    ({"state_source": "fk", "urdf": "/no/such.urdf", "ee_link": "x"}, "urdf", "does not exist"),
    ({"state_source": "ee_pose", "base_xyz": [0.0, 1.0]}, "base_xyz", "x, y, z"),
])
def test_bad_command_and_state_parameters_are_refused_naming_them(values, name, says):
    with pytest.raises(ParamError) as err:
        PolicyParams.from_mapping(values)
    assert err.value.name == name and says in err.value.reason


# --- the policy node's outputs ------------------------------------------------------------

def test_servo_output_is_disarmed_at_start_scaled_capped_and_holds_with_zeros(tmp_path):
    params = policy_params(tmp_path, command_interface="moveit_servo", frame_id="panda_link0",
                           linear_scale=0.5, angular_scale=2.0, max_linear_speed=0.3, max_angular_speed=0.3,
                           gripper_open=0.04, gripper_closed=0.0, policy={"class": "ros_doubles:SteadyPolicy"})
    with domain_id() as domain:
        node = PolicyProcess(tmp_path, domain, params)
        try:
            twists = node.probe.collect(TwistStamped, SERVO, m.RELIABLE_QOS)
            gripper = node.probe.collect(Float64MultiArray, GRIPPER, m.RELIABLE_QOS)
            driver = ArmDriver(node.probe)
            wait_for(lambda: any(e["kind"] == "action_chunk_start" for e in node.events), 60.0, "a plan")
            n = len(twists)
            wait_for(lambda: len(twists) >= n + 20, 30.0, "twists while disarmed")
            disarmed = twist_values(twists)
            assert not gripper   # a disarmed gripper is not commanded at all
            assert node.call(SetBool, "policy/enable", SetBool.Request(data=True)).message == "armed"
            wait_for(lambda: len(twists) >= 20 and twist_values(twists[-5:])[:, 0].min() > 0.04, 30.0,
                     "armed twists at the plan's speed")
            wait_for(lambda: len(gripper) >= 5, 10.0, "gripper commands")
            driver.running = False   # the arm's driver goes quiet: the state goes stale
            wait_for(lambda: any(e["kind"] == "stale_input" and e["stream"] == "state" for e in node.events), 10.0,
                     "stale state")
            stale_at = len(twists)
            wait_for(lambda: len(twists) >= stale_at + 10, 10.0, "twists while the state is stale")
            held = twist_values(twists[stale_at + 2:])   # two may have been on the way
            driver.running = True
            wait_for(lambda: any(e["kind"] == "input_recovered" for e in node.events), 10.0, "fresh state")
            wait_for(lambda: twist_values(twists[-3:])[:, 0].min() > 0.04, 30.0, "motion again")
            node.call(SetBool, "policy/enable", SetBool.Request(data=False))
            wait_for(lambda: [e["armed"] for e in node.events if e["kind"] == "commands_armed"][-1:] == [False],
                     10.0, "the disarm event")
            disarmed_at = len(twists)
            wait_for(lambda: len(twists) >= disarmed_at + 10, 10.0, "twists while disarmed again")
        finally:
            rc = node.close()
    assert rc == 0, node.log()[-2000:]
    values = twist_values(twists)
    assert not disarmed.any()
    assert {t.header.frame_id for t in twists} == {"panda_link0"}
    # SteadyPolicy's 0.1 deltas: 0.05 m/s per axis (0.5 m/s per unit); 0.2 rad/s per axis capped to 0.3 in all
    moving = values[values[:, 0] > 0.049]
    assert len(moving) and np.allclose(moving[:, :3], 0.05, atol=1e-6)
    assert np.allclose(np.linalg.norm(moving[:, 3:], axis=1), 0.3, atol=1e-6)
    assert np.allclose(moving[:, 3:] / moving[:, 3:4], 1.0)   # the direction kept
    assert len(held) >= 8 and not held.any()                   # stale state: zeros, every tick
    assert not values[disarmed_at + 2:].any()                  # disarmed: zeros
    assert not twist_values(twists[-1:]).any()                 # the last word at shutdown is zero
    assert {g.data[0] for g in gripper} == {0.04}              # gripper -1: open
    stamps = [m.from_stamp(t.header.stamp) for t in twists]
    assert stamps == sorted(stamps)
    changes = [e for e in node.events if e["kind"] == "commands_armed" and e["reason"] == "enable_service"]
    assert [e["armed"] for e in changes] == [True, False]


@pytest.mark.parametrize("interface", ["moveit_servo", "forward_command"])
def test_fuzzed_model_outputs_never_exceed_the_caps_nor_reach_the_topic_as_nan(tmp_path, interface):
    topic = SERVO if interface == "moveit_servo" else "/forward_command_controller/commands"
    msg_type = TwistStamped if interface == "moveit_servo" else Float64MultiArray
    params = policy_params(tmp_path, command_interface=interface, armed_at_start=True, block_s=0.25,
                           max_linear_speed=0.2, max_angular_speed=0.5, policy={"class": "ros_doubles:FuzzPolicy"})
    with domain_id() as domain:
        node = PolicyProcess(tmp_path, domain, params)
        try:
            got = node.probe.collect(msg_type, topic, m.RELIABLE_QOS)
            ArmDriver(node.probe)
            wait_for(lambda: sum(e["kind"] == "decided" for e in node.events) >= 12, 60.0, "12 fuzzed decisions")
        finally:
            rc = node.close()
    assert rc == 0, node.log()[-2000:]
    values = twist_values(got) if interface == "moveit_servo" else np.array([list(g.data) for g in got])
    assert values.shape[1] == 6 and np.isfinite(values).all()
    assert np.linalg.norm(values[:, :3], axis=1).max() <= 0.2
    assert np.linalg.norm(values[:, 3:], axis=1).max() <= 0.5
    assert np.isclose(np.linalg.norm(values[:, :3], axis=1).max(), 0.2)   # saturated outputs hit the cap


@pytest.mark.parametrize("interface, topic", [
    ("joint_trajectory_controller", "/joint_trajectory_controller/joint_trajectory"),
    ("forward_command", "/forward_command_controller/commands"),
])
def test_joint_space_outputs_follow_the_plan(tmp_path, interface, topic):
    params = policy_params(tmp_path, command_interface=interface, forward_interface="position",
                           state_source="joints", joint_names=["shoulder", "elbow", "wrist"],
                           action_space="joint_positions", joint_low=[-1.0, -1.0, -1.0], joint_high=[1.0, 1.0, 1.0],
                           max_step=0.05, frame_id="base", armed_at_start=True,
                           policy={"class": "ros_doubles:SteadyJointPolicy"})
    msg_type = JointTrajectory if interface == "joint_trajectory_controller" else Float64MultiArray
    with domain_id() as domain:
        node = PolicyProcess(tmp_path, domain, params)
        try:
            got = node.probe.collect(msg_type, topic, m.RELIABLE_QOS)
            image = node.probe.node.create_publisher(Image, "front/image", m.SENSOR_QOS)
            joints = node.probe.node.create_publisher(JointState, "joint_states", m.SENSOR_QOS)

            def sensors():
                now = node.probe.node.get_clock().now().to_msg()
                image.publish(m.image_msg(np.zeros((8, 8, 3), np.uint8), now, "front"))
                js = JointState(name=["wrist", "elbow", "shoulder"], position=[0.0, 0.0, 0.0])
                js.header.stamp = now
                joints.publish(js)
            node.probe.node.create_timer(0.05, sensors)
            target = [0.1, -0.2, 0.3]
            first = (lambda g: g.points[0].positions) if msg_type is JointTrajectory else (lambda g: g.data)
            wait_for(lambda: got and np.allclose(first(got[-1]), target), 60.0, "the joints at the plan's target")
        finally:
            rc = node.close()
    assert rc == 0, node.log()[-2000:]
    positions = np.array([list(first(g)) for g in got])
    assert np.allclose(positions[0], 0.0) and np.all(np.abs(np.diff(positions, axis=0)) <= 0.05 + 1e-6)
    if msg_type is JointTrajectory:
        assert got[-1].joint_names == ["shoulder", "elbow", "wrist"] and got[-1].header.frame_id == "base"
        assert any(len(g.points) > 1 for g in got)   # the look-ahead is kept


@pytest.mark.parametrize("values, says", [
    ({"policy": {"class": "ros_doubles:NineStatePolicy"}}, "'ee_pose' gives the 18-value proprioception, but the "
                                                           "policy expects 9 values"),
    ({"state_source": "fk", "urdf": "CONFIG/panda_libero.urdf", "ee_link": "panda_tcp",
      "policy": {"class": "ros_doubles:SteadyPolicy"}}, "parameter 'ee_link'"),
    ({"state_source": "fk", "urdf": "CONFIG/panda_libero.urdf", "ee_link": "panda_grip_site", "pose_frame": "world",
      "policy": {"class": "ros_doubles:SteadyPolicy"}}, "parameter 'pose_frame'"),
    ({"state_source": "fk", "urdf": "BROKEN", "ee_link": "panda_hand",
      "policy": {"class": "ros_doubles:SteadyPolicy"}}, "parameter 'urdf'"),
])
def test_a_state_the_policy_cannot_read_is_refused_at_start(tmp_path, values, says):
    (tmp_path / "broken.urdf").write_text("<robot name='x'><link name='a'></robot>")
    for key in ("urdf",):
        if key in values:
            values[key] = values[key].replace("CONFIG", str(config_file("arm.yaml").parent)) \
                .replace("BROKEN", str(tmp_path / "broken.urdf"))
    params = policy_params(tmp_path, **values)
    with domain_id() as domain:
        done = subprocess.run([str(BIN / "policy_node"), "--ros-args", "-r", "__node:=policy", "--params-file", params],
                              env=ros_env(domain), capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert says in done.stdout + done.stderr


# --- forward kinematics against the simulator ---------------------------------------------

def test_pose_topic_and_forward_kinematics_give_the_same_state_for_the_simulated_panda():
    from sim_voices import shared_env

    from ellsa_ros.arm.kinematics import ArmKinematics
    env = shared_env()
    obs, _ = env.reset(options={"task": 0, "init_state": 1})
    fk = ArmKinematics(config_file("arm.yaml").parent / "panda_libero.urdf", "panda_grip_site")
    assert fk.joints == tuple(PANDA[:7]) and fk.root_link == "panda_link0"
    rng = np.random.default_rng(3)
    base = env.arm_readings()["base_pos"]
    from_pose, from_fk = ProprioceptionTracker(base), ProprioceptionTracker(base)
    for step in range(40):
        action = np.clip(rng.normal(0, 0.6, 7), -1, 1)
        obs, *_ = env.step(action)
        r = env.arm_readings()
        stamp = (step + 1) * 0.05
        from_pose.pose(r["eef_pos"], r["eef_quat_xyzw"], stamp)
        from_fk.pose(*fk.pose(r["joints"]), stamp)
        for t in (from_pose, from_fk):
            t.gripper(r["fingers"], stamp)
            t.action(action.astype(np.float32))
        a, b = from_pose.state(), from_fk.state()
        assert np.abs(a[:3] - b[:3]).max() < 1e-3, (step, a[:3], b[:3])      # position: 1 mm
        assert np.abs(a[3:6] - b[3:6]).max() < 0.01, (step, a[3:6], b[3:6])  # axis-angle: 0.01 rad
        assert np.allclose(a[6:8], b[6:8]) and np.allclose(a[11:], b[11:])
        assert np.abs(a[:3] - obs["state"][:3]).max() < 1e-6          # the pose topic is LIBERO's own state
        assert np.abs(b[:8] - obs["state"][:8]).max() < 0.01
    assert np.abs(from_pose.state()[8:11] - from_fk.state()[8:11]).max() < 0.03   # velocity from stamps (m/s)


# --- the whole real-arm path in simulation --------------------------------------------------

def arm_sim_config(tmp_path) -> str:
    doc = yaml.safe_load(config_file("arm_sim.yaml").read_text())
    doc["sim_arm"]["ros__parameters"].update(image_size=32, max_steps=2000, instruction_at_s=10000.0)
    # Typed instructions only: the reach starts when this test says so.
    doc["policy"]["ros__parameters"].update(
        block_s=0.5, use_audio=False,
        policy={"class": "sim_policies:ReachPolicy", "checkpoint": "", "backend": "torch"},
        speech={"tts": "runtime_doubles:ToneTTS", "vad": "energy", "asr": "", "keywords": False},
        max_age_s={"camera": 1.0, "state": 0.5, "audio": 1.0})
    doc["speaker"]["ros__parameters"].update(file=str(tmp_path / "speech.wav"))
    path = tmp_path / "arm_sim.yaml"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def test_an_episode_through_arm_sim_moves_the_arm_where_the_twists_say(tmp_path):
    config = arm_sim_config(tmp_path)
    with domain_id() as domain:
        bringup = spawn("ellsa", domain=domain, log=tmp_path / "bringup.log", cwd=tmp_path,
                        extra=["bringup", "--config", config])
        probe = Probe(domain)
        try:
            twists = probe.collect(TwistStamped, SERVO, m.RELIABLE_QOS)
            poses = probe.collect(PoseStamped, "ee_pose", m.SENSOR_QOS)
            instruction = probe.node.create_publisher(String, "instruction", m.RELIABLE_QOS)

            def alive():
                assert bringup.poll() is None, (tmp_path / "bringup.log").read_text()[-3000:]
                return True
            wait_for(lambda: alive() and len(twists) >= 10 and len(poses) >= 10, 240.0, "twists and poses")
            wait_for(lambda: instruction.get_subscription_count() >= 1, 30.0, "the policy's instruction topic")
            start = poses[-1].pose.position
            instruction.publish(String(data="pick up the black bowl"))
            wait_for(lambda: alive() and twist_values(twists[-3:])[:, 2].max() < -0.05, 60.0, "downward twists")
            moving_at = len(twists)
            wait_for(lambda: alive() and poses[-1].pose.position.z < start.z - 0.04, 30.0, "the hand 4 cm lower")
        finally:
            probe.close()
            rc = interrupt(bringup, timeout_s=60.0)
            for pid in [int(x) for x in re.findall(r"pid (\d+)\)", (tmp_path / "bringup.log").read_text())]:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
    assert rc == 0
    values = twist_values(twists)
    assert {t.header.frame_id for t in twists} == {"panda_link0"} and {p.header.frame_id for p in poses} == \
        {"panda_link0"}
    down = values[moving_at - 3:moving_at + 5]
    assert np.isfinite(values).all() and (down[:, 2] < -0.05).all()     # commanded: down ...
    end = poses[-1].pose.position
    assert end.z < start.z - 0.04                                        # ... and down it went,
    assert abs(end.x - start.x) < 0.02 and abs(end.y - start.y) < 0.02   # not sideways
