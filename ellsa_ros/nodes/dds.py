"""Fast DDS settings every ellsa_ros process applies before it creates a ROS context.

Fast DDS reads its default profile once, when a process creates its first participant, so
`configure_dds()` must run before `rclpy.init()`. A user's own choice wins: with
FASTDDS_DEFAULT_PROFILES_FILE, FASTRTPS_DEFAULT_PROFILES_FILE or FASTDDS_BUILTIN_TRANSPORTS
set, nothing changes. Other RMW implementations ignore the variable.
"""
from __future__ import annotations

import os
from pathlib import Path

PROFILES = Path(__file__).with_name("fastdds.xml")
USER_SETTINGS = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_BUILTIN_TRANSPORTS")


def configure_dds(environ: dict[str, str] | None = None) -> str | None:
    """Points Fast DDS at the shipped profile (large shared-memory segments for camera
    frames) unless the user configured Fast DDS; returns the profile path it set, or None."""
    env = os.environ if environ is None else environ
    if any(env.get(k) for k in USER_SETTINGS):
        return None
    env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(PROFILES)
    return str(PROFILES)
