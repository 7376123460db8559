"""`ellsa eval`: planning and bad input, an instruction-list evaluation run end to end (real
simulator, engine, TTS and VAD; a test policy) with a crashed episode recorded, and episodes on
Ray: a real cluster started with `ray start --head`, a local Ray whose worker dies, and
addresses that are not a Ray cluster."""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import soundfile
from sim_policies import ReachPolicy
from sim_voices import make_tts, make_vad, shared_env

from ellsa_ros import cli
from ellsa_ros.sim import evaluate
from ellsa_ros.sim.eval_runner import EpisodeRunner
from ellsa_ros.sim.microphone import synthesize
from ellsa_ros.sim.robot import RobotSpec, SimRobot

REPO = Path(__file__).resolve().parents[1]


def eval_args(tmp_path: Path, *argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    evaluate.configure(parser)
    return parser.parse_args(["--out", str(tmp_path / "out"), *argv])


def test_plan_gives_each_task_its_episodes_and_init_states(tmp_path):
    setup, jobs = evaluate.plan(eval_args(tmp_path, "--tasks", "0-2", "--episodes", "2", "--seed", "10"))
    assert [(j.task_id, j.episode, j.init_state) for j in jobs] == \
        [(0, 0, 0), (0, 1, 1), (1, 0, 0), (1, 1, 1), (2, 0, 0), (2, 1, 1)]
    assert [j.seed for j in jobs] == list(range(10, 16)) and len({j.name for j in jobs}) == 6
    assert setup.robot.policy is None and setup.robot.policy_class is None   # the embedded model


def test_scenario_task_is_the_default_and_its_suite_must_match(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("suite: libero_spatial\ntask: 4\ninit_state: 9\nevents:\n  - {at: 0.5, say: '{task}'}\n")
    _, jobs = evaluate.plan(eval_args(tmp_path, "--scenario", str(path), "--episodes", "2"))
    assert [(j.task_id, j.init_state) for j in jobs] == [(4, 9), (4, 9)]
    with pytest.raises(ValueError, match="written for libero_spatial"):
        evaluate.plan(eval_args(tmp_path, "--scenario", str(path), "--suite", "libero_object"))


@pytest.mark.parametrize("argv, words", [
    (["--suite", "libero_nope"], "valid suites: libero_spatial, libero_object"),
    (["--tasks", "12"], "valid task ids: 0-9"),
    (["--tasks", "two"], "valid task ids: 0-9"),
    (["--episodes", "0"], "--episodes must be >= 1"),
    (["--scenario", "nowhere.yaml"], "nowhere.yaml"),
])
def test_bad_input_is_refused_with_what_is_valid(tmp_path, capsys, argv, words):
    assert cli.main(["eval", "--out", str(tmp_path / "out"), *argv]) == 2
    assert words in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_camera_rate_that_cannot_serve_the_policys_blocks_is_refused_naming_both(tmp_path, capsys):
    rc = cli.main(["eval", "--tasks", "0", "--policy-class", "sim_policies:ReachPolicy", "--block-s", "0.5",
                   "--camera-hz", "5", "--no-asr", "--no-keywords", "--user-voice", "espeak", "--robot-voice",
                   "espeak", "--out", str(tmp_path / "out")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "camera_hz" in err and "5" in err and "0.5 s" in err
    assert not (tmp_path / "out" / "episodes").exists()


def test_a_policy_that_cannot_load_stops_the_evaluation_with_its_reason(tmp_path, capsys):
    missing = tmp_path / "no_checkpoint"
    rc = cli.main(["eval", "--tasks", "0", "--policy", str(missing), "--workers", "2", "--out", str(tmp_path / "out")])
    assert rc == 2
    err = capsys.readouterr().err
    assert f"cannot load the policy ({missing})" in err


def test_instruction_list_accuracy_with_a_crashed_episode(tmp_path):
    tts = make_tts()
    recording = tmp_path / "my_phrasing.wav"
    soundfile.write(recording, synthesize(tts, "put the bowl in the fridge"), 16000)
    items = tmp_path / "mine.yaml"
    items.write_text(f"""
suite: libero_spatial
task: 0
init_state: 2
listen_s: 1.2
instructions:
  - {{say: pick up the bowl, expect: act}}
  - {{say: pick up the elephant, expect: reject}}
  - {{wav: {recording.name}, expect: reject}}
""")
    args = eval_args(tmp_path, "--instructions", str(items), "--image-size", "64", "--no-asr", "--no-keywords")
    setup, jobs = evaluate.plan(args)
    assert [(j.task_id, j.init_state, j.instruction) for j in jobs] == [(0, 2, 0), (0, 2, 1), (0, 2, 2)]
    # A policy that rejects everything: the harness must grade that, not the policy be good.
    robot = SimRobot.from_parts(RobotSpec(image_size=64, asr=False, keywords=False),
                                ReachPolicy(replies=("reject",)), tts, tts, make_vad())
    runner = EpisodeRunner(setup, robot=robot, env=shared_env())
    recording.unlink()   # gone by the time its episode plays: that episode crashes, the rest go on
    records, summary = evaluate.evaluate(setup, jobs, runner=runner, progress=False)

    assert [r["metrics"].get("outcome") for r in records] == ["reject", "reject", None]
    assert [r["outcome_ok"] for r in records] == [False, True, False]
    assert records[2]["error"].startswith("FileNotFoundError") and str(recording) in records[2]["error"]
    assert records[0]["error"] is None and records[0]["sim_time_s"] >= 0.5 + 1.2
    assert summary["instruction_accuracy"] == pytest.approx(1 / 3, abs=1e-4)
    assert summary["instruction_accuracy_by_outcome"] == {"act": 0.0, "reject": 0.5}
    # The crashed episode counts against every expectation it had.
    assert records[2]["checks"] == {"rejected": {"expected": True, "observed": None, "ok": False}}
    assert summary["errors"] == 1 and summary["rejection_accuracy"] == pytest.approx(1 / 3, abs=1e-4)

    out = tmp_path / "out"
    saved = json.loads((out / "episodes" / "t00_i001.json").read_text())
    assert saved["metrics"]["rejected"] and any(e["kind"] == "rejection" for e in saved["events"])
    assert saved["script"][0]["text"] == "pick up the elephant"
    assert json.loads((out / "summary.json").read_text()) == summary
    assert "| libero_spatial | 3 |" in (out / "summary.md").read_text()
    assert [Path(r["video"]).name if r["video"] else None for r in records] == ["t00_i000.mp4", "t00_i001.mp4", None]
    assert all((out / "videos" / f"t00_i00{i}.mp4").stat().st_size > 0 for i in (0, 1))


# --- on Ray ------------------------------------------------------------------------------------

ELLSA = [sys.executable, "-m", "ellsa_ros.cli"]
SHORT = """name: short
duration_s: 1.5
events:
  - {at: 0.2, say: "{task}", typed: true}
expect:
  success: false
"""
CHEAP = ["--no-asr", "--no-keywords", "--image-size", "64", "--videos", "none", "--user-voice", "espeak",
         "--robot-voice", "espeak"]


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without Ray's settings (a Ray started in this process leaves some)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(RAY_USAGE_STATS_ENABLED="0", **extra)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def processes_with(marker: str) -> list[int]:
    """Pids of the processes whose environment holds `marker` (Ray's processes inherit it)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and marker.encode() in (entry / "environ").read_bytes():
                pids.append(int(entry.name))
        except OSError:
            pass
    return pids


def stop_processes(marker: str) -> None:
    """Ends the processes that hold `marker`: the ones `ray start` left, and their workers
    (`ray stop` would end every Ray on the machine, other test runs' too)."""
    for sig, wait_s in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 10.0)):
        for pid in processes_with(marker):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        end = time.monotonic() + wait_s
        while processes_with(marker) and time.monotonic() < end:
            time.sleep(0.2)
    assert processes_with(marker) == [], "the test's Ray cluster would not stop"


@pytest.fixture(scope="module")
def ray_head() -> dict:
    """A one-node Ray cluster of 2 CPUs as a workstation would run it, with token authentication
    (the token in the environment, not in ~/.ray); its workers import the test policies, which
    the drivers here cannot: an episode that runs proves it ran on the cluster."""
    port = free_port()
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": uuid.uuid4().hex + uuid.uuid4().hex}
    marker = uuid.uuid4().hex
    env = clean_env(PYTHONPATH=str(Path(__file__).parent), ELLSA_TEST_CLUSTER=marker, **auth)
    start = subprocess.Popen([str(Path(sys.executable).parent / "ray"), "start", "--head", "--port", str(port),
                              "--node-ip-address", "127.0.0.1", "--num-cpus", "2", "--include-dashboard=false",
                              "--disable-usage-stats"], env=env, start_new_session=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = start.communicate(timeout=120)
        assert start.returncode == 0, out
        yield {"address": f"127.0.0.1:{port}", "auth": auth}
    finally:
        start.kill()
        stop_processes(marker)


def test_an_evaluation_runs_on_a_ray_cluster(tmp_path, ray_head):
    (tmp_path / "short.yaml").write_text(SHORT)
    run = subprocess.run([*ELLSA, "eval", "--tasks", "0", "--episodes", "2", "--scenario", "short.yaml",
                          "--policy-class", "sim_policies:ReachPolicy", *CHEAP, "--ray", ray_head["address"],
                          "--out", "out"], cwd=tmp_path, env=clean_env(**ray_head["auth"]), capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    out = tmp_path / "out"     # relative paths reach workers that run elsewhere
    records = [json.loads((out / "episodes" / f"t00_e00{e}.json").read_text()) for e in (0, 1)]
    assert [r["error"] for r in records] == [None, None]
    assert [r["init_state"] for r in records] == [0, 1] and all(r["steps"] == 30 for r in records)
    assert json.loads((out / "summary.json").read_text())["episodes"] == 2
    from ellsa_ros.sim.cluster import probe_address
    probe_address(ray_head["address"])    # joined, not shut down: the cluster is still there


def test_a_cluster_that_wants_a_token_is_named_when_none_is_given(tmp_path, ray_head):
    run = subprocess.run([*ELLSA, "eval", "--tasks", "0", "--ray", ray_head["address"], "--out", "out"], cwd=tmp_path,
                         env=clean_env(HOME=str(tmp_path)), capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert f"cannot connect to the Ray cluster at {ray_head['address']}" in run.stderr
    assert "RAY_AUTH_MODE=token" in run.stderr and not (tmp_path / "out").exists()


def test_a_worker_that_dies_is_retried_then_its_episode_is_recorded_as_failed(tmp_path):
    (tmp_path / "short.yaml").write_text(SHORT)
    marker = uuid.uuid4().hex
    # task 1's instruction makes the policy end its own process: both tries of that episode die
    run = subprocess.run([*ELLSA, "eval", "--tasks", "0,1", "--episodes", "1", "--scenario", "short.yaml",
                          "--policy-class", "sim_policies:CrashingPolicy", *CHEAP, "--workers", "2",
                          "--out", "out"], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                         env=clean_env(PYTHONPATH=str(Path(__file__).parent), ELLSA_TEST_RUN=marker))
    assert run.returncode == 0, run.stderr[-3000:]
    out = tmp_path / "out"
    kept = json.loads((out / "episodes" / "t00_e000.json").read_text())
    died = json.loads((out / "episodes" / "t01_e000.json").read_text())
    assert kept["error"] is None and kept["steps"] == 30
    assert died["error"].startswith("the worker process died while running it, 2 times") and "pid" in died["error"]
    assert "running its job again" in run.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["episodes"] == 2 and summary["errors"] == 1
    deadline = time.monotonic() + 20.0
    while processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert processes_with(marker) == []      # the local Ray ended with the command


@pytest.mark.parametrize("command", ["eval", "datagen"])
def test_an_address_that_is_not_a_ray_cluster_is_named(tmp_path, command):
    closed = free_port()
    own = ["--tasks", "0"] if command == "eval" else ["--voices", "espeak", "--no-progress"]
    with socket.socket() as silent:          # accepts connections and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        for address, words in ((f"127.0.0.1:{closed}", "no Ray cluster at"),
                               (f"127.0.0.1:{silent.getsockname()[1]}", "is not a Ray cluster")):
            run = subprocess.run([*ELLSA, command, "--ray", address, "--out", str(tmp_path / "out"), *own],
                                 env=clean_env(), capture_output=True, text=True, timeout=30)
            assert run.returncode == 2, run.stderr
            assert words in run.stderr and address in run.stderr
            assert not (tmp_path / "out").exists()
