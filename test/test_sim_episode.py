"""`ellsa sim`: one episode, printed live, written as JSON, mp4 and rosbag2."""
from __future__ import annotations

import json

from sim_policies import ReachPolicy
from sim_voices import make_tts, make_vad

from ellsa_ros import cli
from ellsa_ros.sim import robot as sim_robot


def test_sim_command_prints_live_and_writes_video_and_bag(tmp_path, capsys, monkeypatch):
    tts, real = make_tts(), sim_robot.SimRobot
    # The speech stack and the model are collaborators here: the command is under test.
    monkeypatch.setattr(sim_robot, "SimRobot",
                        lambda spec: real.from_parts(spec, ReachPolicy(replies=("act",)), tts, tts, make_vad()))
    monkeypatch.setenv("COLUMNS", "300")   # rich wraps at the terminal width
    rc = cli.main(["sim", "--typed", "--steps", "30", "--image-size", "64", "--no-asr", "--no-keywords",
                   "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0
    assert "script: at 0.50 s the user types (say): pick up the black bowl between the plate" in out
    assert "0.50 s user (typed): pick up the black bowl" in out
    assert "1.10 s robot: Okay, I am reaching for it now." in out   # block end + the policy latency
    assert "action_chunk_start" in out and "decided" not in out
    (run_dir,) = list(tmp_path.iterdir())
    episode = json.loads((run_dir / "episode.json").read_text())
    # 30 steps after the instruction, which was typed at 0.5 s (10 steps in).
    assert episode["steps"] == 40 and episode["error"] is None and episode["task_id"] == 0
    assert (run_dir / "episode.mp4").stat().st_size > 0
    assert list((run_dir / "bag").glob("*.mcap")) and (run_dir / "bag" / "metadata.yaml").is_file()
    assert f"wrote {run_dir / 'bag'}" in out


def test_sim_command_refuses_an_unknown_task(capsys):
    assert cli.main(["sim", "--task", "42"]) == 2
    assert "valid task ids: 0-9" in capsys.readouterr().err


def test_sim_command_refuses_a_camera_rate_that_cannot_serve_the_blocks(capsys, monkeypatch):
    tts, real = make_tts(), sim_robot.SimRobot
    monkeypatch.setattr(sim_robot, "SimRobot",
                        lambda spec: real.from_parts(spec, ReachPolicy(replies=("act",)), tts, tts, make_vad()))
    assert cli.main(["sim", "--block-s", "0.5", "--camera-hz", "5", "--no-asr", "--no-keywords"]) == 2
    err = capsys.readouterr()
    assert "camera_hz=5 Hz cannot serve 0.5 s blocks" in err.err and "building the simulator" not in err.out
    assert cli.main(["sim", "--video-fps", "0"]) == 2
    assert "video_fps=0.0 must be a positive rate" in capsys.readouterr().err
