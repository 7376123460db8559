"""`ellsa datagen --inspect DIR`: what a dataset holds, and a contact sheet of it.

Counts come from the manifest (attempts, discards, skipped tasks, frame rate) and from the
episodes (patterns, utterance kinds, robot controls, duration, blocks at a given block length,
stored frames per camera, bytes).
The contact sheet is a PNG grid: for sampled utterances, the agentview frame stored last when the
user finished speaking, captioned with what was said and what the robot was to answer.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import cv2
import numpy as np

from ellsa_ros.sim.datagen.reader import BlockFormat, DatasetReader, block_times, decode_image

TILE_PX = 160
CAPTION_LINES = 6


def dataset_counts(root: str | Path, block_s: float = 1.0) -> dict:
    """Counts of the dataset in `root` (a JSON-ready dict); `block_s` for the block count."""
    reader = DatasetReader(root)
    m = reader.manifest
    patterns, utterances, controls, voices, noise = Counter(), Counter(), Counter(), Counter(), Counter()
    episodes = steps = blocks = retried = frames = 0
    duration = 0.0
    fmt = BlockFormat(block_s=block_s)
    reader.check(fmt)
    for ep in reader.episodes():
        episodes += 1
        steps += ep.steps
        frames += len(ep.frames.get("agentview", ()))
        duration += ep.duration_s
        blocks += len(block_times(ep.duration_s, fmt))
        retried += ep.retries > 0
        patterns[ep.pattern] += 1
        utterances.update(u.kind for u in ep.utterances)
        controls.update(r.control or ("say" if r.say else "silent") for r in ep.robot)
        voices[ep.voices[0]] += 1
        noise[ep.noise.split("@")[0]] += 1
    shard_bytes = sum(h["bytes"] for h in m["shards"].values())
    tasks = m.get("tasks", {})
    return {
        "episodes": episodes, "hours": round(duration / 3600.0, 4), "steps": steps,
        "blocks": blocks, "block_s": block_s, "bytes": shard_bytes,
        "frames": frames, "frame_hz": reader.frame_hz,
        "bytes_per_block": round(shard_bytes / blocks, 1) if blocks else 0.0,
        "attempts": sum(h["attempts"] for h in m["shards"].values()),
        "discarded": sum(h["discarded"] for h in m["shards"].values()),
        "episodes_with_retries": retried,
        "skipped_tasks": {k: t["skipped"] for k, t in tasks.items() if t.get("skipped")},
        "patterns": dict(sorted(patterns.items())), "utterances": dict(sorted(utterances.items())),
        "robot_turns": dict(sorted(controls.items())), "user_voices": dict(sorted(voices.items())),
        "noise": dict(sorted(noise.items())), "shards": len(m["shards"]),
    }


def _caption(tile: np.ndarray, lines: list[str]) -> np.ndarray:
    h = 14
    band = np.full((h * CAPTION_LINES + 4, tile.shape[1], 3), 255, np.uint8)
    chars = max(8, tile.shape[1] // 6)
    wrapped: list[str] = []
    for line in lines:
        while line and len(wrapped) < CAPTION_LINES:
            wrapped.append(line[:chars])
            line = line[chars:]
    for i, text in enumerate(wrapped[:CAPTION_LINES]):
        cv2.putText(band, text, (3, h * (i + 1)), cv2.FONT_HERSHEY_SIMPLEX, 0.33, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([tile, band], axis=0)


def contact_sheet(root: str | Path, out_png: str | Path, n: int = 12, columns: int = 4, seed: int = 0) -> int:
    """Writes a PNG of up to `n` sampled utterances (frame + transcript + reply); returns how many."""
    reader = DatasetReader(root)
    samples: list[tuple[np.ndarray, list[str]]] = []
    for ep in reader.episodes():
        for u in ep.utterances:
            i = min(ep.steps, int(round(u.heard_t * ep.control_hz)))
            reply = next((r for r in ep.robot if abs(r.t - u.heard_t) < 1e-6), None)
            answer = "" if reply is None else (f"[{reply.control}] " if reply.control else "") + reply.say
            samples.append((ep.frame("agentview", i), [f"{ep.pattern} t={u.t_start:.1f}s", f"user: {u.text}",
                                                        f"robot: {answer or '(silent)'}"]))
    if not samples:
        raise ValueError(f"{root} holds no utterances to show")
    rng = np.random.default_rng(seed)
    picked = sorted(rng.choice(len(samples), size=min(n, len(samples)), replace=False))
    tiles = []
    for j in picked:
        frame, lines = samples[j]
        img = cv2.resize(decode_image(frame), (TILE_PX, TILE_PX), interpolation=cv2.INTER_NEAREST)
        tiles.append(_caption(img, lines))
    rows = []
    for r in range(0, len(tiles), columns):
        row = tiles[r:r + columns]
        row += [np.full_like(tiles[0], 255)] * (columns - len(row))
        rows.append(np.concatenate(row, axis=1))
    sheet = np.concatenate(rows, axis=0)
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out_png), sheet[..., ::-1]):
        raise OSError(f"could not write {out_png}")
    return len(tiles)
