"""What a user runs first, run as they run it: `ellsa sim` with no arguments (the embedded model,
the whole speech stack, video and bag), the embedded model listening through the real ASR,
`ellsa serve` with the embedded checkpoint answering a robot, and `ellsa datagen` then
`ellsa train` through the command line."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ellsa_ros.model import load_policy
from ellsa_ros.runtime.blocks import Block
from ellsa_ros.runtime.listening import ListeningPolicy
from ellsa_ros.sim.microphone import synthesize
from ellsa_ros.speech import make_transcriber, make_tts

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ELLSA = str(Path(sys.executable).parent / "ellsa")
INSTRUCTION = "pick up the black bowl between the plate and the ramekin and place it on the plate"


def test_ellsa_sim_with_no_arguments_hears_the_instruction_and_writes_its_record(tmp_path):
    done = subprocess.run([ELLSA, "sim"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    runs = list((tmp_path / "sim_runs").iterdir())
    assert len(runs) == 1
    run = runs[0]
    assert (run / "episode.mp4").stat().st_size > 10_000
    assert (run / "bag" / "metadata.yaml").is_file() and list((run / "bag").glob("*.mcap"))
    episode = json.loads((run / "episode.json").read_text())
    assert episode["suite"] == "libero_spatial" and episode["task_id"] == 0 and episode["error"] is None
    heard = [e for e in episode["events"] if e["kind"] == "user_transcript" and e["source"] == "asr"]
    assert heard and "black bowl" in heard[0]["text"] and "plate" in heard[0]["text"], heard
    # the embedded model acts on what it heard: the arm moves after the transcript, and not before
    chunks = [e["t"] for e in episode["events"] if e["kind"] == "action_chunk_start"]
    assert chunks and min(chunks) >= heard[0]["t"], (chunks, heard[0]["t"])
    assert episode["metrics"]["outcome"] == "act"
    assert "user (asr): pick up the black bowl" in done.stdout


def block_with(i: int, utterances: list[np.ndarray]) -> Block:
    rng = np.random.default_rng(i)
    images = {cam: rng.integers(0, 255, (128, 128, 3), dtype=np.uint8) for cam in ("agentview", "wrist")}
    state = np.zeros(18, np.float32)
    state[:3] = (-0.2, 0.0, 1.2)
    t = 0.5 * (i + 1)
    return Block(i, 0.5 * i, t, np.zeros(8000, np.float32), 16000, images, {cam: t for cam in images}, state, t,
                 utterances=utterances)


def test_the_embedded_model_steps_on_what_the_real_asr_heard():
    policy = ListeningPolicy(load_policy(), make_transcriber())
    spoken = synthesize(make_tts("hibari"), INSTRUCTION)
    policy.reset()
    decisions = [policy.step(block_with(i, [spoken] if i == 1 else [])) for i in range(4)]
    assert "black bowl" in decisions[1].heard.lower() and "plate" in decisions[1].heard.lower()
    assert [d.heard for d in decisions[2:]] == ["", ""]
    for d in decisions:   # whatever it decided, it is a well-formed decision
        assert d.actions is None or (d.actions.shape == (10, 7) and np.isfinite(d.actions).all())
        assert isinstance(d.say, str) and (d.reject is None or d.reject)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ellsa_serve_with_the_embedded_checkpoint_answers_a_robot(tmp_path):
    from ellsa_ros.model import DEFAULT_CHECKPOINT
    from ellsa_ros.serve import RemoteConfig, RemotePolicy
    port = free_port()
    server = subprocess.Popen([ELLSA, "serve", "--policy", str(DEFAULT_CHECKPOINT), "--bind",
                               f"tcp://127.0.0.1:{port}"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, start_new_session=True)
    try:
        robot = RemotePolicy(RemoteConfig(f"tcp://127.0.0.1:{port}", timeout_s=60.0, hello_timeout_s=120.0))
        spec = robot.connect()
        assert spec.block_s == 0.5 and spec.state_dim == 18
        decisions = [robot.step(block_with(i, [])) for i in range(3)]
        assert all(d.actions is None or d.actions.shape == (10, 7) for d in decisions)
        assert decisions[0].info["remote"]["new_session"] and not decisions[1].info["remote"]["new_session"]
        robot.close()
    finally:
        os.killpg(server.pid, signal.SIGINT)
        out, _ = server.communicate(timeout=60)
    assert server.returncode == 0, out[-2000:]


def test_ellsa_datagen_then_ellsa_train_through_the_command_line(tmp_path):
    data, run = tmp_path / "data", tmp_path / "run"
    made = subprocess.run([ELLSA, "datagen", "--suites", "libero_spatial", "--tasks", "0", "--episodes-per-task", "1",
                           "--shard-size", "1", "--image-size", "64", "--patterns", "instruction=1",
                           "--voices", "espeak:en-us", "--out", str(data), "--seed", "3", "--no-progress",
                           "--block-s", "0.5"], capture_output=True, text=True, timeout=600)
    assert made.returncode == 0, made.stderr[-3000:]
    assert "libero_spatial/0: 1 demonstrations" in made.stdout
    trained = subprocess.run([ELLSA, "train", "--data", str(data), "--out", str(run), "--size", "tiny", "--steps", "6",
                              "--batch", "1", "--save-every", "3", "--threads", "1"],
                             capture_output=True, text=True, timeout=600)
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert "step 6/6" in trained.stderr and f"checkpoint: {run / 'model'}" in trained.stdout
    assert load_policy(run / "model").config.size == "tiny"
