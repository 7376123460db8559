"""Time blocks: what the policy sees each step.

ELLSA runs its model over interleaved time blocks (1 s by default) of speech, image, text and
action. `BlockAssembler` cuts the input streams into such blocks on the engine clock; the
block carries raw inputs (audio, latest images, joint state) and what happened in it (the
finished user utterances, typed text, interruptions, what the robot said), so that any
policy — the model, a remote server, a scripted test policy — can build its tokens from it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

BLOCK_S_MIN = 0.16
BLOCK_S_MAX = 2.0


@dataclass
class Block:
    """One time block. Times are engine clock seconds; audio is float32 in [-1, 1]."""
    index: int
    t_start: float
    t_end: float
    audio: np.ndarray                      # (n_samples,) float32, the microphone over [t_start, t_end)
    sample_rate: int
    images: dict[str, np.ndarray]          # camera -> (H, W, 3) uint8, latest frame, upright
    image_stamps: dict[str, float]         # camera -> capture stamp of that frame
    state: np.ndarray | None               # (n_state,) float32 proprioception, None if none yet
    state_stamp: float | None
    # the user's utterances (VAD segments) that ended in this block
    utterances: list[np.ndarray] = field(default_factory=list)
    # what the user said in this block, as text: typed, or transcribed by a listening policy
    heard: str = ""
    user_speaking: bool = False            # the user is still speaking at t_end
    interrupted: bool = False              # barge-in or a stop word happened in this block
    keywords: tuple[str, ...] = ()         # keywords spotted in this block ("stop", ...)
    said: str = ""                         # what the robot said since the previous block
    robot_speaking: bool = False           # the robot's voice is still playing at t_end
    acting: bool = False                   # the action queue had actions left at t_end
    stale: tuple[str, ...] = ()            # input streams that were stale at t_end
    dropped_blocks: int = 0                # blocks merged into this one because the policy was busy

    @property
    def duration_s(self) -> float:
        return self.t_end - self.t_start

    def merge_earlier(self, earlier: Block) -> None:
        """Folds a block the policy never saw into this one, so that nothing said is lost."""
        self.audio = np.concatenate([earlier.audio, self.audio])
        self.t_start = earlier.t_start
        self.utterances = earlier.utterances + self.utterances
        self.heard = " ".join(s for s in (earlier.heard, self.heard) if s)
        self.said = " ".join(s for s in (earlier.said, self.said) if s)
        self.interrupted = self.interrupted or earlier.interrupted
        self.keywords = earlier.keywords + self.keywords
        self.dropped_blocks += earlier.dropped_blocks + 1


def check_block_s(block_s: float) -> float:
    if not (BLOCK_S_MIN <= block_s <= BLOCK_S_MAX):
        raise ValueError(f"block_s={block_s} is outside [{BLOCK_S_MIN}, {BLOCK_S_MAX}] s")
    return float(block_s)
