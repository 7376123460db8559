"""`ellsa serve`: serve a policy to robots over ZeroMQ, or create CURVE keys for it.

    ellsa serve --policy CKPT [--bind tcp://127.0.0.1:5555] [--keys DIR]
    ellsa serve --policy-class package.module:Factory       (any Policy class or factory)
    ellsa serve --gen-keys DIR [--robot NAME]

Each robot's session gets its own policy: `--policy-class` is called once per session; a
checkpoint is loaded once and each session gets `policy.new_session()` when the loaded policy
offers it (shared weights, own state: `ModelPolicy` does), else a deep copy.

The served spec also carries what the model reads (cameras, image_size, state_dim from the
policy or its config), so that the server refuses blocks the model cannot use.

Ctrl-C or SIGTERM stops serving and exits 0 once the server's threads have ended; both
handlers are installed explicitly, since a process started from a background job inherits
SIGINT as ignored, and a second signal during the shutdown is ignored.
"""
from __future__ import annotations

import argparse
import copy
import importlib
import logging
import os
import signal
import sys
from typing import Callable

from ..runtime.policy import Policy
from .codec import ACTION_SPACES, STATE_LIMIT, PolicySpec
from .keys import ROBOT, generate
from .server import PolicyServer, ServerConfig


def configure(parser: argparse.ArgumentParser) -> None:
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--policy", metavar="CKPT", help="checkpoint to serve (ellsa_ros.model.load_policy)")
    src.add_argument("--policy-class", metavar="MODULE:NAME", help="a Policy class or factory to serve")
    src.add_argument("--gen-keys", metavar="DIR", help="create CURVE keys for the server and one robot in DIR")
    parser.add_argument("--robot", default=ROBOT, help="with --gen-keys: the robot's key name (default: robot)")
    parser.add_argument("--bind", default="tcp://127.0.0.1:5555", help="ZeroMQ endpoint (default: loopback)")
    parser.add_argument("--keys", metavar="DIR", help="CURVE keys; required to bind a non-loopback address")
    parser.add_argument("--block-s", type=float, help="block length (s); default: the policy's own")
    parser.add_argument("--chunk", type=int, help="actions per chunk; default: the policy's own")
    parser.add_argument("--dof", type=int, help="values per action; default: the policy's own")
    parser.add_argument("--control-hz", type=float, help="control rate of the chunk; default: the policy's own")
    parser.add_argument("--action-space", choices=ACTION_SPACES, help="default: the policy's own, else ee_delta")
    parser.add_argument("--max-message-mb", type=float, default=8.0, help="largest request answered (MiB)")
    parser.add_argument("--max-sessions", type=int, default=ServerConfig.max_sessions,
                        help=f"robots served at once (default {ServerConfig.max_sessions})")


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s",
                        stream=sys.stderr)
    if args.gen_keys:
        for path in generate(args.gen_keys, args.robot):
            print(path, file=sys.stderr)
        print(f"copy {args.gen_keys}/server.key and {args.gen_keys}/{args.robot}.key* to the robot; "
              f"serve with --keys {args.gen_keys}", file=sys.stderr)
        return 0
    if not (args.policy or args.policy_class):
        print("ellsa serve: give --policy CKPT, --policy-class MODULE:NAME or --gen-keys DIR", file=sys.stderr)
        return 2
    try:
        make_policy, name = _policy_factory(args)
        probe = make_policy()
        if not isinstance(probe, Policy):
            raise TypeError(f"{name} made a {type(probe).__name__}, which has no reset() and step()")
        spec = spec_for(probe, args, name)
        config = ServerConfig(bind=args.bind, keys_dir=args.keys,
                              max_message_bytes=int(args.max_message_mb * (1 << 20)), max_sessions=args.max_sessions)
    except (ValueError, TypeError, ImportError, AttributeError, FileNotFoundError) as e:
        print(f"ellsa serve: {e}", file=sys.stderr)
        return 2
    server = PolicyServer(make_policy, spec, config)
    # Installed before the server starts: from then on no signal may end the process before
    # close() has waited for the server's threads.
    previous = {sig: signal.signal(sig, _Interrupt()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.start()
        print(f"serving {name} on {server.endpoint}: block {spec.block_s} s, chunk {spec.chunk} x {spec.dof} "
              f"at {spec.control_hz} Hz ({spec.action_space})", file=sys.stderr, flush=True)
        server.serve_forever()
    except (OSError, FileNotFoundError) as e:
        print(f"ellsa serve: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("ellsa serve: shutting down", file=sys.stderr, flush=True)
    finally:
        server.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not server.stopped:
        # A policy still inside step(): CPython ends such a daemon thread at finalization with
        # pthread_exit, and unwinding through torch's C++ frames calls std::terminate (SIGABRT).
        print("ellsa serve: a session did not finish its request; exiting without waiting for it",
              file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(0)
    return 0


class _Interrupt:
    """The SIGINT/SIGTERM handler: KeyboardInterrupt on the first signal only, so that a
    second one cannot cut short the wait for the server's threads."""

    def __init__(self) -> None:
        self.raised = False

    def __call__(self, signum: int, frame: object) -> None:
        if not self.raised:
            self.raised = True
            raise KeyboardInterrupt


def _policy_factory(args: argparse.Namespace) -> tuple[Callable[[], Policy], str]:
    if args.policy_class:
        module_name, _, attr = args.policy_class.partition(":")
        if not attr:
            raise ValueError(f"--policy-class {args.policy_class!r} is not MODULE:NAME")
        factory = getattr(importlib.import_module(module_name), attr)
        if not callable(factory):
            raise TypeError(f"{args.policy_class} is not callable")
        return factory, args.policy_class
    from ellsa_ros.model import load_policy  # torch is imported only when a checkpoint is served
    base = load_policy(args.policy)
    new_session = getattr(base, "new_session", None)
    return (new_session if callable(new_session) else lambda: copy.deepcopy(base)), args.policy


# The engine's defaults (EngineConfig): used when neither a flag nor the policy says otherwise.
RUNTIME_DEFAULTS = {"block_s": 1.0, "control_hz": 20.0, "action_space": "ee_delta"}


def spec_for(policy: Policy, args: argparse.Namespace, name: str) -> PolicySpec:
    """Flags win; then the policy's `spec`, its attributes, its `config`'s attributes, and for
    block_s, control_hz and action_space the engine's defaults. chunk and dof must be known;
    cameras, image_size, state_dim and state_limit are checked only where declared."""
    declared = getattr(policy, "spec", None)
    sources = [declared] if isinstance(declared, PolicySpec) else [policy, getattr(policy, "config", None)]

    def pick(key: str) -> object:
        flag = getattr(args, key, None)
        if flag is not None:
            return flag
        for src in sources:
            if src is not None and getattr(src, key, None) is not None:
                return getattr(src, key)
        if key in RUNTIME_DEFAULTS:
            logging.getLogger("ellsa.serve").info("%s: %s not declared, using %s", name, key, RUNTIME_DEFAULTS[key])
            return RUNTIME_DEFAULTS[key]
        raise ValueError(f"{name} does not declare {key}: pass --{key.replace('_', '-')}")

    def declared_input(key: str, default: object) -> object:
        for src in sources:
            if src is not None and getattr(src, key, None) is not None:
                return getattr(src, key)
        return default

    return PolicySpec(block_s=float(pick("block_s")), chunk=int(pick("chunk")), dof=int(pick("dof")),
                      control_hz=float(pick("control_hz")), action_space=str(pick("action_space")), model=name,
                      cameras=tuple(declared_input("cameras", ())), image_size=int(declared_input("image_size", 0)),
                      state_dim=int(declared_input("state_dim", 0)),
                      state_limit=float(declared_input("state_limit", STATE_LIMIT)))
