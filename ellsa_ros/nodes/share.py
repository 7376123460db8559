"""Where the package's launch/ and config/ files are.

An installed package (colcon, or a non-editable pip install) has them under
`share/ellsa_ros/`, found through the ament index (`AMENT_PREFIX_PATH`). An editable
install has no share folder: the files are read from the source tree instead.
"""
from __future__ import annotations

from pathlib import Path

PACKAGE = "ellsa_ros"
_SOURCE_ROOT = Path(__file__).resolve().parents[2]


def share_dir() -> Path:
    """The folder holding `launch/` and `config/`: the ament share directory if the package
    is installed in an ament prefix, else the source tree's root."""
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
        try:
            share = Path(get_package_share_directory(PACKAGE))
            if (share / "launch").is_dir():
                return share
        except (PackageNotFoundError, ValueError, OSError):
            pass   # no AMENT_PREFIX_PATH, or not installed in any prefix on it (an editable install)
    except ImportError:
        pass       # no ament index at all: only the source tree can hold the files
    if (_SOURCE_ROOT / "launch").is_dir() and (_SOURCE_ROOT / "config").is_dir():
        return _SOURCE_ROOT
    raise FileNotFoundError(f"no share folder for {PACKAGE}: not installed in an ament prefix "
                            f"(AMENT_PREFIX_PATH) and no source tree at {_SOURCE_ROOT}")


def config_file(name: str) -> Path:
    """`config/<name>` (e.g. "arm.yaml") from the share folder; raises if it does not exist."""
    path = share_dir() / "config" / name
    if not path.is_file():
        raise FileNotFoundError(f"no params file {name!r} in {path.parent}")
    return path
