"""Every `ellsa bench NAME`, run as a user runs it (small sizes only, so the suite stays short):
the last line of stdout is one JSON object with the keys the benchmark documents. Timings are
never asserted here; they are what the benchmarks are for."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ELLSA = str(Path(sys.executable).parent / "ellsa")

CASES = {
    "tick": (["--seconds", "2"], {"rate_hz", "period_error_ms_p99", "stalls", "ticks", "policy_steps"}),
    "barge-in": (["--trials", "1"], {"trials", "duck_ms_p95", "cut_ms_p95", "halt_ms_p95", "backchannel_false_cuts",
                                     "false_halts"}),
    "model": (["--blocks", "3", "--warmup", "1"], {"small_torch_ms_p95", "small_onnx_ms_p95", "onnx_speedup",
                                                   "moe_over_dense", "small_params", "sentence_ms_p50"}),
    "sim": (["--physics-steps", "20", "--render-steps", "4", "--rounds", "1", "--episode-steps", "40",
             "--image-size", "64"], {"physics_steps_per_s", "render_speedup", "eval_episode_s", "render_per_step_ms"}),
    "serve": (["--steps", "20", "--clients", "2", "--episode-blocks", "2", "--sessions", "4",
               "--session-model-size", "tiny"], {"loopback_ms_p50", "loopback_overhead_ms_p50", "underruns_240ms",
                                                 "session_marginal_mb", "sessions_max_tested"}),
    "transport": (["--seconds", "2", "--warmup-s", "1", "--width", "64", "--height", "48"],
                  {"camera_hz", "camera_latency_ms_p99", "camera_lost", "audio_latency_ms_p99", "reliable_lost"}),
    "datagen": (["--episodes", "1", "--image-size", "64"], {"s_per_demo", "blocks_per_s_per_worker",
                                                            "frames_per_demo", "frame_hz"}),
    "speech": (["--commands", "2"], {"vad_onset_ms_p95", "stop_word_delay_ms_p95", "stop_word_miss_rate",
                                     "asr_wer_20db", "tts"}),
    "listen": (["--clips", "3"], {"wer_heldout_15db", "wer_heldout_by_noise", "wer_tuned_15db",
                                  "spurious_utterances", "split_utterances", "runaway_transcripts",
                                  "asr_latency_ms_p95"}),
    "turns": (["--trials", "1"], {"backchannel_takeover_rate", "interruption_takeover_rate", "yield_ms_p50",
                                  "yield_ms_p95", "resume_ms_p95", "false_halts", "stop_misses", "halt_ms_p95",
                                  "backchannel_false_cuts", "hold_ms_max"}),
    "arm": (["--seconds", "2", "--warmup-s", "1", "--episodes", "1", "--episode-max-steps", "10"],
            {"command_hz", "command_latency_ms_p99", "over_cap", "non_finite", "success_rate", "success_rate_direct"}),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bench_prints_one_json_object_last_with_its_keys(name):
    argv, keys = CASES[name]
    done = subprocess.run([ELLSA, "bench", name, "--json", *argv], cwd=REPO, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    last = done.stdout.strip().splitlines()[-1]
    result = json.loads(last)
    assert isinstance(result, dict) and keys <= set(result), sorted(keys - set(result))


def test_every_benchmark_is_exercised():
    from bench import available
    assert set(available()) == set(CASES), "a benchmark no test runs"
