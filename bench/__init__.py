"""`ellsa bench NAME`: benchmarks. Each is `bench/NAME.py` (dashes become underscores) with
`configure(parser)` and `measure(args) -> dict`; the dict is printed as the last line, as JSON.
Progress and tables go to stderr so that the last line of stdout is always the JSON object.
"""
from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import sys
from pathlib import Path


def available() -> list[str]:
    here = Path(__file__).parent
    return sorted(m.name.replace("_", "-") for m in pkgutil.iter_modules([str(here)]) if not m.name.startswith("_"))


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help=f"which benchmark: {', '.join(available())}")
    parser.add_argument("--json", action="store_true", help="(default) print the result as one JSON line")
    parser.add_argument("rest", nargs=argparse.REMAINDER, help="the benchmark's own options")


def run(args: argparse.Namespace) -> int:
    if args.name not in available():
        print(f"unknown benchmark {args.name!r}; choose from {', '.join(available())}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"bench.{args.name.replace('-', '_')}")
    sub = argparse.ArgumentParser(prog=f"ellsa bench {args.name}")
    if hasattr(module, "configure"):
        module.configure(sub)
    result = module.measure(sub.parse_args([a for a in args.rest if a != "--json"]))
    print(json.dumps(result), flush=True)
    return 0
