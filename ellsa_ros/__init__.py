"""ellsa_ros: a robot control runtime with a full-duplex speech interface."""

__version__ = "0.1.0"
