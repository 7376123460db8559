"""Episode videos: both cameras side by side, with the conversation drawn under them.

Each frame shows what the robot saw at that control tick (simulation time), the last thing
the user said and the last thing the robot said (for a few seconds after they were said),
and markers for halts, rejections and success.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ellsa_ros.sim.bridge import CAMERAS, EpisodeResult

CAPTION_PX = 72
SHOW_LINE_S = 4.0     # how long a line of the conversation stays on screen


def write_video(path: str | Path, result: EpisodeResult, fps: float = 20.0, height_px: int = 256) -> Path:
    """Writes `result`'s recorded frames as an H.264 mp4; raises if it recorded none."""
    import imageio.v2 as imageio

    if not result.frames:
        raise ValueError("the episode recorded no frames (run the bridge with record_frames=True)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = _lines(result)
    with imageio.get_writer(str(path), fps=fps, codec="libx264", quality=7, macro_block_size=8,
                            ffmpeg_log_level="error") as writer:
        for t, images in result.frames:
            writer.append_data(draw_frame(t, images, lines, height_px, result.success and _after_success(result, t)))
    return path


def draw_frame(t: float, images: dict[str, np.ndarray], lines: list[dict[str, Any]], height_px: int,
               succeeded: bool) -> np.ndarray:
    """One video frame (H, W, 3) uint8: the cameras side by side at `height_px`, captions below."""
    import cv2

    tiles = [cv2.resize(images[c], (height_px, height_px), interpolation=cv2.INTER_NEAREST)
             for c in CAMERAS if c in images]
    top = np.concatenate(tiles, axis=1)
    width = top.shape[1]
    caption = np.zeros((CAPTION_PX, width, 3), np.uint8)
    font, scale = cv2.FONT_HERSHEY_SIMPLEX, 0.42
    cv2.putText(caption, f"t={t:5.2f} s", (6, 16), font, scale, (200, 200, 200), 1, cv2.LINE_AA)
    marks = [m["text"] for m in lines if m["who"] == "event" and m["t"] <= t < m["t"] + SHOW_LINE_S]
    if succeeded:
        marks.append("SUCCESS")
    if marks:
        cv2.putText(caption, " ".join(marks[-2:]), (110, 16), font, scale, (80, 220, 255), 1, cv2.LINE_AA)
    for row, (who, colour) in enumerate((("user", (120, 255, 120)), ("robot", (255, 190, 90)))):
        said = [m for m in lines if m["who"] == who and m["t"] <= t < m["t"] + SHOW_LINE_S]
        if said:
            text = f"{who}: {said[-1]['text']}"
            max_chars = max(10, int(width / (scale * 20)))
            cv2.putText(caption, text[:max_chars], (6, 40 + 22 * row), font, scale, colour, 1, cv2.LINE_AA)
    return np.ascontiguousarray(np.concatenate([top, caption], axis=0))


def _after_success(result: EpisodeResult, t: float) -> bool:
    success_t = result.metrics.get("success_t_s")
    return success_t is not None and t >= success_t


def _lines(result: EpisodeResult) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = []
    for u in result.script:
        if u["kind"] != "silence":
            lines.append({"t": u["t_start"], "who": "user", "text": u["text"]})
    for m in result.transcript:
        if m["who"] == "robot" and m["text"]:
            lines.append({"t": m["t"], "who": "robot", "text": m["text"]})
        elif m["who"] == "user" and m["source"] == "asr":
            lines.append({"t": m["t"], "who": "user", "text": f"(heard) {m['text']}"})
    for e in result.events:
        if e["kind"] == "action_halt":
            lines.append({"t": e["t"], "who": "event", "text": f"HALT ({e['reason']})"})
        elif e["kind"] == "rejection":
            lines.append({"t": e["t"], "who": "event", "text": "REJECTED"})
    return sorted(lines, key=lambda m: m["t"])
