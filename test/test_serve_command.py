"""`ellsa serve` as a process: Ctrl-C and SIGTERM stop it cleanly, also when it was started
from a background job (SIGINT inherited as ignored)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from test_serve_faults import ROOT, free_port
from test_serve_session import make_block

from ellsa_ros.serve import RemoteConfig, RemotePolicy


def start(port: int, ignore_sigint: bool) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "test"), str(ROOT)]))
    # What a shell does for `cmd &`: the child starts with SIGINT ignored.
    ignore = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if ignore_sigint else None
    proc = subprocess.Popen([sys.executable, "-m", "ellsa_ros.cli", "serve", "--policy-class",
                             "test_serve_session:CountingPolicy", "--bind", f"tcp://127.0.0.1:{port}"],
                            env=env, stderr=subprocess.PIPE, text=True, preexec_fn=ignore)
    for line in proc.stderr:
        if line.startswith("serving"):
            return proc
    raise AssertionError(f"ellsa serve exited with {proc.wait()}")


@pytest.mark.parametrize("sig, ignore_sigint", [(signal.SIGINT, True), (signal.SIGINT, False),
                                                (signal.SIGTERM, True)])
def test_ellsa_serve_stops_on_sigint_and_sigterm(sig, ignore_sigint):
    port = free_port()
    proc = start(port, ignore_sigint)
    try:
        robot = RemotePolicy(RemoteConfig(f"tcp://127.0.0.1:{port}", robot="arm", timeout_s=5.0,
                                          hello_timeout_s=5.0))
        assert robot.step(make_block(0)).info["seen"] == 1
        robot.close()
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "shutting down" in err
