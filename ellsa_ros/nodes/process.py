"""The life of one node process: init, build, spin, shut down.

Every node's `main()` is this with its own Node class. A ParamError (or a source that
cannot open) while building ends the process with exit code 2 and the message naming the
parameter; Ctrl-C and an external shutdown end it with 0.
"""
from __future__ import annotations

import signal
from collections.abc import Callable

import rclpy
from rclpy._rclpy_pybind11 import RCLError
from rclpy.executors import Executor, ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

from ellsa_ros.nodes.dds import configure_dds
from ellsa_ros.nodes.params import ParamError

EXIT_BAD_PARAMS = 2


def run_node(make: Callable[[], Node], name: str, args: list[str] | None = None,
             executor: Callable[[], Executor] = SingleThreadedExecutor, last_words: bool = False) -> int:
    """Builds the node with `make()` and spins it on `executor()` until shutdown.
    `last_words`: Ctrl-C and SIGTERM reach the node while its context still works, so that
    `destroy_node` can still publish (rclpy's own handler shuts the context down first)."""
    configure_dds()
    if last_words:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.default_int_handler)
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO if last_words else None)
    try:
        node = make()
    except ParamError as e:
        rclpy.logging.get_logger(name).fatal(f"cannot start: {e}")
        rclpy.try_shutdown()
        return EXIT_BAD_PARAMS
    spinner = executor()
    spinner.add_node(node)
    try:
        spinner.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except RCLError:
        # Ctrl-C shuts the context down from rclpy's signal handler; an executor caught
        # between two waits then reports the invalid context instead of ExternalShutdown.
        if rclpy.ok():
            raise
    finally:
        spinner.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0
