"""The Fast DDS profile every ellsa_ros process applies: whole 640x480 camera frames in one
shared-memory message, and the user's own Fast DDS settings left alone."""
from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET

import numpy as np
from ros_graph import messages_from
from sensor_msgs.msg import Image

from ellsa_ros.nodes import messages as m
from ellsa_ros.nodes.camera_sources import pattern_index
from ellsa_ros.nodes.dds import PROFILES, USER_SETTINGS, configure_dds

NS = {"d": "http://www.eprosima.com"}
FRAME_640x480 = 640 * 480 * 3


def test_profile_carries_a_vga_frame_in_one_shared_memory_message():
    root = ET.parse(PROFILES).getroot()
    shm = next(t for t in root.iterfind(".//d:transport_descriptor", NS) if t.findtext("d:type", None, NS) == "SHM")
    assert int(shm.findtext("d:maxMessageSize", None, NS)) > FRAME_640x480 + 4096     # frame plus headers
    assert int(shm.findtext("d:segment_size", None, NS)) >= 2 * int(shm.findtext("d:maxMessageSize", None, NS))
    participant = root.find(".//d:participant", NS)
    assert participant.get("is_default_profile") == "true"
    used = [e.text for e in participant.iterfind("d:rtps/d:userTransports/d:transport_id", NS)]
    assert shm.findtext("d:transport_id", None, NS) in used and len(used) == 2   # shared memory and UDP
    assert participant.findtext("d:rtps/d:useBuiltinTransports", None, NS) == "false"


def test_user_settings_win():
    env = {"FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA"}
    assert configure_dds(env) is None and "FASTDDS_DEFAULT_PROFILES_FILE" not in env
    env = {"FASTRTPS_DEFAULT_PROFILES_FILE": "/etc/mine.xml"}
    assert configure_dds(env) is None and "FASTDDS_DEFAULT_PROFILES_FILE" not in env
    env = {"FASTDDS_BUILTIN_TRANSPORTS": ""}             # set but empty is not a choice
    assert configure_dds(env) == str(PROFILES) and env["FASTDDS_DEFAULT_PROFILES_FILE"] == str(PROFILES)


def test_fast_dds_loads_the_profile_without_complaint():
    code = ("from ellsa_ros.nodes.dds import configure_dds; configure_dds(); import rclpy; rclpy.init(); "
            "n = rclpy.create_node('dds_check'); n.destroy_node(); rclpy.shutdown(); print('ok')")
    env = {k: v for k, v in os.environ.items() if k not in USER_SETTINGS}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
    assert "error" not in out.stderr.lower(), out.stderr


def test_camera_node_delivers_whole_vga_frames(tmp_path):
    got = messages_from("camera_node", "-p", "source:=test_pattern", "-p", "width:=640", "-p", "height:=480",
                        "-p", "fps:=15.0", msg_type=Image, topic="image", qos=m.SENSOR_QOS, count=5,
                        log=tmp_path / "camera.log", what="five 640x480 frames")
    frames = [m.image_array(msg, "camera") for msg in got[:5]]
    assert all(f.shape == (480, 640, 3) for f in frames)
    indices = [pattern_index(f) for f in frames]
    assert indices == sorted(indices) and len(set(indices)) == 5   # in order, none twice
    assert np.ptp(frames[-1][240, :, 0]) > 200   # the colour bars, not an empty buffer
