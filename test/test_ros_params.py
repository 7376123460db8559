"""Node parameters: the shipped params files load, bad values are refused naming the
parameter, and a node started with a bad value exits with that message."""
from __future__ import annotations

import subprocess

import pytest
from domain_coordinator import domain_id
from ros_graph import BIN, ros_env

from ellsa_ros.bringup import check_config
from ellsa_ros.nodes.graph import GRAPHS
from ellsa_ros.nodes.params import CameraParams, MicrophoneParams, ParamError, PolicyParams, flatten, load_params_file
from ellsa_ros.nodes.share import config_file
from ellsa_ros.sim.bridge_node import SimBridgeParams


@pytest.mark.parametrize("name", ["arm", "sim", "arm_sim"])
def test_shipped_params_files_load(name):
    nodes = check_config(config_file(f"{name}.yaml"), None)
    assert nodes == GRAPHS[name]
    policy = PolicyParams.from_mapping(load_params_file(config_file(f"{name}.yaml"))["policy"])
    assert policy.cameras == ("agentview", "wrist") and policy.action_dof == 7


def test_nested_yaml_becomes_dotted_names():
    assert flatten({"policy": {"remote": "tcp://x:1"}, "max_age_s": {"camera": 0.5}, "dof": 7}) == \
        {"policy.remote": "tcp://x:1", "max_age_s.camera": 0.5, "dof": 7}
    p = PolicyParams.from_mapping({"policy.remote": "tcp://127.0.0.1:5555", "max_age_s.camera": 0.2})
    assert p.remote == "tcp://127.0.0.1:5555" and p.max_age_camera_s == 0.2


@pytest.mark.parametrize("cls, values, name, says", [
    (CameraParams, {"fps": 30}, "fps", "write doubles with a decimal point"),
    (CameraParams, {"fps": -1.0}, "fps", "below the minimum"),
    (CameraParams, {"widht": 640}, "widht", "unknown parameter"),
    (MicrophoneParams, {"source": "file"}, "file", "no file is given"),
    (MicrophoneParams, {"source": "usb"}, "source", "not one of"),
    (PolicyParams, {"block_s": 3.0}, "block_s", "above the maximum"),
    (PolicyParams, {"cameras": "agentview"}, "cameras", "expected a list"),
    (PolicyParams, {"action_space": "joint_positions"}, "joint_names", "needs the joint names"),
    (PolicyParams, {"action_space": "joint_positions", "joint_names": ["a", "b"], "joint_low": [0.0],
                    "joint_high": [1.0, 1.0]}, "joint_low", "1 values for 2 joints"),
    (PolicyParams, {"policy.remote": "tcp://h:1", "policy.class": "m:C"}, "policy.class", "set only one"),
    (PolicyParams, {"policy.remote": "h:1"}, "policy.remote", "not a tcp://"),
    (PolicyParams, {"image_width": 64}, "image_width", "set both"),
    (PolicyParams, {"block_s": 0.1}, "block_s", "below the minimum 0.16"),
    (PolicyParams, {"state_source": "ee_pose", "dof": 6}, "state_source", "7-value end-effector-delta"),
    (PolicyParams, {"state_source": "ee_pose", "gripper_joints": ["f"]}, "gripper_joints", "two finger joints"),
    (PolicyParams, {"speech.backchannel_s": 0.5, "speech.resume_window_s": 0.4}, "speech.resume_window_s",
     "not longer than speech.backchannel_s"),
    (PolicyParams, {"speech.keywords": True, "speech.stop_words": [""]}, "speech.stop_words", "is empty"),
    (PolicyParams, {"speech.stop_hold_s": 0.0}, "speech.stop_hold_s", "below the minimum"),
    (PolicyParams, {"late_chunks": "drop"}, "late_chunks", "not one of"),
    (SimBridgeParams, {"camera_hz": 3.0}, "camera_hz", "does not land on the 20 Hz control ticks"),
])
def test_bad_values_are_refused_naming_the_parameter(cls, values, name, says):
    with pytest.raises(ParamError) as err:
        cls.from_mapping(values)
    assert err.value.name == name and says in err.value.reason


def test_bad_params_file_section_names_node_and_parameter(tmp_path):
    text = config_file("arm.yaml").read_text().replace("fps: 30.0", "fps: 30", 1)
    (tmp_path / "arm.yaml").write_text(text)
    with pytest.raises(ParamError, match="agentview_camera.fps"):
        check_config(tmp_path / "arm.yaml", None)


@pytest.mark.parametrize("executable, args, says", [
    ("camera_node", ["-p", "fps:=30"], "parameter 'fps': wrong type"),
    ("camera_node", ["-p", "source:=/no/such/video.mp4"], "parameter 'source': cannot open"),
    ("policy_node", ["-p", "action_space:=joints"], "parameter 'action_space': 'joints' is not one of"),
    ("policy_node", ["-p", "policy.class:=ros_doubles:NoSuchPolicy", "-p", "speech.tts:=runtime_doubles:ToneTTS"],
     "parameter 'policy.class': cannot load"),
    ("microphone_node", ["-p", "source:=file", "-p", "file:=/no/such.wav"], "parameter 'file': /no/such.wav"),
])
def test_node_with_bad_parameter_stops_naming_it(executable, args, says):
    with domain_id() as domain:
        done = subprocess.run([str(BIN / executable), "--ros-args", *args], env=ros_env(domain),
                              capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert says in done.stderr + done.stdout


@pytest.mark.parametrize("executable", ["camera_node", "microphone_node", "speaker_node", "recorder_node",
                                        "policy_node", "sim_bridge_node"])
def test_every_node_refuses_an_unknown_parameter_of_its_params_file(executable, tmp_path):
    # The section is the node's default name; a misspelled parameter beside a good one.
    name = {"camera_node": "camera", "microphone_node": "microphone", "speaker_node": "speaker",
            "recorder_node": "recorder", "policy_node": "policy", "sim_bridge_node": "sim_bridge"}[executable]
    (tmp_path / "p.yaml").write_text(f"{name}:\n  ros__parameters:\n    control_hzz: 20.0\n")
    with domain_id() as domain:
        done = subprocess.run([str(BIN / executable), "--ros-args", "-r", f"__node:={name}",
                               "--params-file", str(tmp_path / "p.yaml")],
                              env=ros_env(domain), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "parameter 'control_hzz': unknown parameter" in done.stderr + done.stdout


@pytest.mark.parametrize("args, says", [
    (["-p", "block_s:=1.0"], "parameter 'block_s': 1.0 s, but the policy runs at 0.5 s blocks"),
    (["-p", "joint_names:=[a,b,c,d,e,f,g,h,i]"],
     "parameter 'joint_names': 9 joints give a 9-value state, but the policy expects 18 values"),
])
def test_the_embedded_model_refuses_a_block_length_or_state_it_was_not_trained_for(args, says):
    with domain_id() as domain:
        done = subprocess.run([str(BIN / "policy_node"), "--ros-args", *args], env=ros_env(domain),
                              capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert says in done.stderr + done.stdout
