"""A small test policy for driving the sim bridge (the bridge is under test, not the policy).

`ReachPolicy` answers the user's utterances in order with scripted replies, and while it acts
it moves the end effector toward a target position read against `block.state` (the first 3
values of LIBERO's proprioception are the end-effector position in metres).
"""
from __future__ import annotations

import numpy as np

from ellsa_ros.runtime.blocks import Block
from ellsa_ros.runtime.policy import Decision

CHUNK = 20
STEP_M = 0.05   # roughly how far one unit of LIBERO's position delta moves the hand per control step


class ReachPolicy:
    """replies[i] answers the i-th utterance: "act" (reach, and say so), "cancel", "reject",
    or "say:TEXT" (speak, keep acting). A stop word spotted by the engine also cancels.
    target: where to reach (m, world); None reaches 0.12 m below where the hand was when it
    was told to act."""

    def __init__(self, target=None, replies=("act", "cancel", "say:I am holding nothing."),
                 latency_s: float = 0.1) -> None:
        self.target0 = None if target is None else np.asarray(target, np.float64)
        self.replies = tuple(replies)
        self.latency_s = latency_s
        self.blocks: list[Block] = []
        self.reset()

    def reset(self) -> None:
        self.heard = 0
        self.acting = False
        self.target = self.target0
        self.blocks = []

    def step(self, block: Block) -> Decision:
        self.blocks.append(block)
        eef = np.asarray(block.state[:3], np.float64)
        say = ""
        for _ in range(len(block.utterances) + (1 if block.heard and not block.utterances else 0)):
            reply = self.replies[self.heard] if self.heard < len(self.replies) else "cancel"
            self.heard += 1
            if reply == "act":
                self.acting = True
                if self.target is None:
                    self.target = eef + np.array([0.0, 0.0, -0.12])
                say = "Okay, I am reaching for it now."
            elif reply == "cancel":
                self.acting = False
                return Decision(cancel=True, say="Stopping.")
            elif reply == "reject":
                self.acting = False
                return Decision(reject="I cannot see that object")
            elif reply.startswith("say:"):
                say = reply[4:]
        if "stop" in block.keywords:
            self.acting = False
            return Decision(cancel=True, say="Stopping.")
        if not self.acting:
            return Decision(say=say)
        delta = np.clip((self.target - eef) / (STEP_M * CHUNK / 2), -0.6, 0.6)
        actions = np.zeros((CHUNK, 7), np.float32)
        actions[:, :3] = delta
        actions[:, 6] = -1.0
        return Decision(actions=actions, say=say)


class CrashingPolicy(ReachPolicy):
    """ReachPolicy whose process ends at once (no exception, no cleanup: a segfault or an OOM
    kill looks the same to the runner) when the instruction it hears contains the marker
    `CRASH_ON`: a worker dying in the middle of an episode."""

    CRASH_ON = "next to the ramekin"     # libero_spatial task 1's instruction

    def step(self, block: Block) -> Decision:
        if self.CRASH_ON in block.heard:
            import os
            os._exit(70)
        return super().step(block)
