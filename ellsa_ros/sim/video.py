"""Episode videos: the agentview camera, with the conversation drawn under it.

Each frame shows what the agentview camera saw at that control tick (simulation time), at
the video rate the bridge recorded (`BridgeConfig.video_fps`), the last thing the user said
and the last thing the robot said (for a few seconds after they were said), and markers for
halts, rejections and success.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ellsa_ros.sim.bridge import EpisodeResult

ROW_PX = 20
CAPTION_ROWS = 6      # time, markers, two lines of the user, two of the robot
SHOW_LINE_S = 4.0     # how long a line of the conversation stays on screen
FONT_SCALE = 0.42
CHAR_PX = 8.4         # the width of one character of the caption font at FONT_SCALE


def video_frames(result: EpisodeResult) -> list[tuple[float, np.ndarray]]:
    """The agentview frames on the video's grid (every 1 / video_fps s): (t, image)."""
    fps = result.video_fps
    if fps <= 0:
        return []
    return [(t, images["agentview"]) for t, images in result.frames
            if "agentview" in images and abs(t * fps - round(t * fps)) < 1e-6]


def write_video(path: str | Path, result: EpisodeResult, height_px: int = 384) -> Path:
    """Writes `result`'s video frames as an H.264 mp4 at its `video_fps`; raises if it recorded none."""
    import imageio.v2 as imageio

    frames = video_frames(result)
    if not frames:
        raise ValueError("the episode recorded no video frames (run the bridge with record_frames=True)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = _lines(result)
    with imageio.get_writer(str(path), fps=result.video_fps, codec="libx264", quality=7, macro_block_size=8,
                            ffmpeg_log_level="error") as writer:
        for t, image in frames:
            writer.append_data(draw_frame(t, image, lines, height_px, result.success and _after_success(result, t)))
    return path


def draw_frame(t: float, image: np.ndarray, lines: list[dict[str, Any]], height_px: int,
               succeeded: bool) -> np.ndarray:
    """One video frame (H, W, 3) uint8: the camera image scaled to `height_px`, captions below."""
    import cv2

    top = cv2.resize(image, (height_px, height_px), interpolation=cv2.INTER_NEAREST)
    width = top.shape[1]
    caption = np.zeros((CAPTION_ROWS * ROW_PX + 8, width, 3), np.uint8)   # 384 + 128: whole macro blocks
    font = cv2.FONT_HERSHEY_SIMPLEX
    max_chars = max(10, int(width / CHAR_PX) - 1)

    def put(row: int, text: str, colour: tuple[int, int, int]) -> None:
        cv2.putText(caption, text, (6, ROW_PX * (row + 1) - 4), font, FONT_SCALE, colour, 1, cv2.LINE_AA)

    put(0, f"t={t:5.2f} s", (200, 200, 200))
    marks = [m["text"] for m in lines if m["who"] == "event" and m["t"] <= t < m["t"] + SHOW_LINE_S]
    if succeeded:
        marks.append("SUCCESS")
    if marks:
        put(1, " ".join(marks[-2:])[:max_chars], (80, 220, 255))
    for row, (who, colour) in ((2, ("user", (120, 255, 120))), (4, ("robot", (255, 190, 90)))):
        said = [m for m in lines if m["who"] == who and m["t"] <= t < m["t"] + SHOW_LINE_S]
        if said:
            for k, part in enumerate(_wrap(f"{who}: {said[-1]['text']}", max_chars, 2)):
                put(row + k, part, colour)
    return np.ascontiguousarray(np.concatenate([top, caption], axis=0))


def _wrap(text: str, width: int, rows: int) -> list[str]:
    """`text` in at most `rows` lines of `width` characters, broken at spaces where possible."""
    out: list[str] = []
    while text and len(out) < rows:
        if len(text) <= width:
            out.append(text)
            break
        cut = text.rfind(" ", 0, width + 1)
        cut = cut if cut > 0 else width
        out.append(text[:cut])
        text = text[cut:].lstrip()
    return out


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
