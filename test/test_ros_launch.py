"""The launch files, executed through generate_launch_description() with recording
stand-ins for `launch` and `launch_ros` (neither installs from PyPI): every Node must name
an installed executable of this package and a params file that loads, and `ellsa bringup`
must start the same processes with the same arguments."""
from __future__ import annotations

import importlib.metadata
import importlib.util
import sys
import types
from pathlib import Path

import pytest

from ellsa_ros.bringup import check_config
from ellsa_ros.nodes.graph import GRAPHS, ros_args
from ellsa_ros.nodes.params import PARAMS_OF, load_params_file
from ellsa_ros.nodes.share import share_dir


class Recorded:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


class LaunchConfiguration(Recorded):
    pass


@pytest.fixture
def launch_stand_ins(monkeypatch):
    """`launch`, `launch.actions`, `launch.substitutions`, `launch_ros.actions` that record calls."""
    made = {}
    for name, attrs in {
        "launch": {"LaunchDescription": type("LaunchDescription", (Recorded,), {})},
        "launch.actions": {"DeclareLaunchArgument": type("DeclareLaunchArgument", (Recorded,), {})},
        "launch.substitutions": {"LaunchConfiguration": LaunchConfiguration},
        "launch_ros": {},
        "launch_ros.actions": {"Node": type("Node", (Recorded,), {})},
    }.items():
        module = types.ModuleType(name)
        module.__dict__.update(attrs)
        made[name] = module
        monkeypatch.setitem(sys.modules, name, module)
    return made


def describe(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem.replace(".", "_"), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.generate_launch_description()


def resolve(value, defaults):
    return defaults[value.args[0]] if isinstance(value, LaunchConfiguration) else value


def console_scripts() -> set[str]:
    return {e.name for e in importlib.metadata.entry_points(group="console_scripts")
            if e.value.startswith("ellsa_ros.")}


@pytest.mark.parametrize("graph", ["arm", "sim", "arm_sim"])
def test_launch_file_nodes_are_installed_and_their_params_load(launch_stand_ins, graph):
    description = describe(share_dir() / "launch" / f"{graph}.launch.py")
    actions = description.args[0]
    defaults = {a.args[0]: a.kwargs["default_value"] for a in actions if type(a).__name__ == "DeclareLaunchArgument"}
    nodes = [a for a in actions if type(a).__name__ == "Node"]
    assert [n.kwargs["name"] for n in nodes] == [g.name for g in GRAPHS[graph]]
    installed = console_scripts()
    bin_dir = Path(sys.executable).parent
    for node in nodes:
        kw = node.kwargs
        assert kw["package"] == "ellsa_ros"
        assert kw["executable"] in installed and (bin_dir / kw["executable"]).is_file()
        (params_file,) = [resolve(p, defaults) for p in kw["parameters"]]
        sections = load_params_file(params_file)
        assert kw["name"] in sections
        if kw["executable"] in PARAMS_OF:
            PARAMS_OF[kw["executable"]].from_mapping(sections[kw["name"]])
        # bringup gives the process the same name, params file and remappings
        remaps = [(src, resolve(dst, defaults)) for src, dst in kw["remappings"]]
        graph_node = next(g for g in GRAPHS[graph] if g.name == kw["name"])
        expected = ros_args(graph_node, params_file)
        given = ["--ros-args", "-r", f"__node:={kw['name']}", "--params-file", params_file]
        for src, dst in remaps:
            if src != dst:
                given += ["-r", f"{src}:={dst}"]
        assert given == expected
    assert check_config(Path(defaults["params_file"]), None) == GRAPHS[graph]


def test_arm_launch_remaps_the_arm_topics(launch_stand_ins):
    actions = describe(share_dir() / "launch" / "arm.launch.py").args[0]
    declared = {a.args[0] for a in actions if type(a).__name__ == "DeclareLaunchArgument"}
    assert {"params_file", "joint_states", "action_chunk"} <= declared
    policy = next(a for a in actions if type(a).__name__ == "Node" and a.kwargs["name"] == "policy")
    remapped = {src: dst.args[0] for src, dst in policy.kwargs["remappings"] if isinstance(dst, LaunchConfiguration)}
    assert remapped == {"joint_states": "joint_states", "action_chunk": "action_chunk"}


def test_share_dir_prefers_an_installed_share(tmp_path, monkeypatch):
    prefix = tmp_path / "install"
    (prefix / "share" / "ament_index" / "resource_index" / "packages").mkdir(parents=True)
    (prefix / "share" / "ament_index" / "resource_index" / "packages" / "ellsa_ros").write_text("")
    (prefix / "share" / "ellsa_ros" / "launch").mkdir(parents=True)
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(prefix))
    assert share_dir() == prefix / "share" / "ellsa_ros"
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(tmp_path / "elsewhere"))
    assert (share_dir() / "launch" / "arm.launch.py").is_file()   # the source tree
