"""`ellsa eval`: planning and bad input, and an instruction-list evaluation run end to end
(real simulator, engine, TTS and VAD; a test policy) with a crashed episode recorded."""
from __future__ import annotations

import argparse
import json
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
