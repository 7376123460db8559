"""`ellsa bringup --config FILE`: the launch files' graph, for machines without `ros2 launch`.

Starts the same executables, with the same node names, remappings and params file, as
`launch/arm.launch.py` or `launch/sim.launch.py` (both read `ellsa_ros.nodes.graph`). The
graph is the one whose nodes the params file configures. The file is checked before any
process starts. Ctrl-C (or SIGTERM) asks every node to shut down, waits, and exits 0; a
node that dies ends bringup: the others are shut down and the exit status is non-zero.
"""
from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ellsa_ros.nodes.graph import GRAPHS, GraphNode, graph_for, ros_args
from ellsa_ros.nodes.params import PARAMS_OF, ParamError, load_params_file
from ellsa_ros.nodes.share import share_dir

EXIT_NODE_DIED = 1
EXIT_BAD_CONFIG = 2


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True,
                        help="params YAML; a bare name (arm.yaml) is looked up in the package's config/")
    parser.add_argument("--graph", choices=sorted(GRAPHS), help="which graph (default: the file's nodes decide)")
    parser.add_argument("--remap", action="append", default=[], metavar="FROM:=TO",
                        help="a topic remapping given to every node (repeatable)")
    parser.add_argument("--grace-s", type=float, default=10.0,
                        help="how long nodes may take to shut down before they are killed")


def resolve_config(name: str) -> Path:
    path = Path(name)
    if path.is_file():
        return path.resolve()
    shared = share_dir() / "config" / path.name
    if not path.parent.parts and shared.is_file():
        return shared
    raise FileNotFoundError(f"no params file {name!r} (nor {shared})")


def check_config(path: Path, graph: str | None) -> tuple[GraphNode, ...]:
    """The graph's nodes, after checking every section of the params file that this package
    knows how to check. Raises ValueError (or ParamError, naming node and parameter)."""
    sections = load_params_file(path)
    nodes = GRAPHS[graph or graph_for(set(sections))]
    for node in nodes:
        if node.name not in sections:
            raise ValueError(f"{path}: no section for node {node.name!r}")
        params = PARAMS_OF.get(node.executable)
        if params is not None:
            try:
                params.from_mapping(sections[node.name])
            except ParamError as e:
                raise ParamError(f"{node.name}.{e.name}", e.reason) from None
    return nodes


def executable_path(name: str) -> str:
    """A console script of this environment (beside the Python running bringup), else on PATH."""
    local = Path(sys.executable).parent / name
    if local.is_file():
        return str(local)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"executable {name!r} is not installed (pip install -e . registers it)")
    return found


@dataclass
class Running:
    node: GraphNode
    process: subprocess.Popen


class Bringup:
    """The started processes, watched until one ends or a shutdown is asked for."""

    def __init__(self, nodes: tuple[GraphNode, ...], config: Path, remaps: dict[str, str], grace_s: float) -> None:
        self.grace_s = grace_s
        self.running: list[Running] = []
        try:
            for node in nodes:
                cmd = [executable_path(node.executable), *ros_args(node, str(config), remaps)]
                # A session of its own: a terminal's Ctrl-C reaches bringup only, which then
                # shuts the nodes down in order instead of all at once.
                self.running.append(Running(node, subprocess.Popen(cmd, start_new_session=True)))
                print(f"[bringup] started {node.name} ({node.executable}, pid {self.running[-1].process.pid})",
                      file=sys.stderr, flush=True)
        except BaseException:
            self.shutdown()
            raise

    def watch(self, poll_s: float = 0.1) -> GraphNode | None:
        """Blocks until a node exits (returns it) or KeyboardInterrupt."""
        while True:
            for r in self.running:
                if r.process.poll() is not None:
                    return r.node
            time.sleep(poll_s)

    def shutdown(self) -> None:
        """SIGINT to every live node, then SIGTERM and SIGKILL to the ones still alive."""
        for sig, wait_s in ((signal.SIGINT, self.grace_s), (signal.SIGTERM, 2.0), (signal.SIGKILL, 2.0)):
            live = [r for r in self.running if r.process.poll() is None]
            if not live:
                return
            for r in live:
                r.process.send_signal(sig)
            deadline = time.monotonic() + wait_s
            for r in live:
                try:
                    r.process.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    print(f"[bringup] {r.node.name} did not stop on {sig.name}", file=sys.stderr, flush=True)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    try:
        config = resolve_config(args.config)
        nodes = check_config(config, args.graph)
        remaps = dict(r.split(":=", 1) for r in args.remap if ":=" in r)
        if len(remaps) != len(args.remap):
            raise ValueError(f"--remap takes FROM:=TO, got {args.remap}")
    except (OSError, ValueError) as e:
        print(f"[bringup] {e}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    # Both installed explicitly: a process started from a background job inherits SIGINT as
    # ignored, and Python then never turns Ctrl-C into KeyboardInterrupt.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    bringup = None
    try:
        bringup = Bringup(nodes, config, remaps, args.grace_s)
        died = bringup.watch()
        code = bringup.running[[r.node for r in bringup.running].index(died)].process.returncode
        print(f"[bringup] node {died.name} exited with code {code}; shutting down", file=sys.stderr, flush=True)
        return code if code > 0 else EXIT_NODE_DIED
    except KeyboardInterrupt:
        print("[bringup] shutting down", file=sys.stderr, flush=True)
        return 0
    except FileNotFoundError as e:
        print(f"[bringup] {e}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    finally:
        if bringup is not None:
            bringup.shutdown()
