"""Collaborators for the ROS graph tests, loaded by the policy node through its parameters
(`policy.class: ros_doubles:SteadyPolicy`) with this folder on PYTHONPATH. The nodes, the
engine and the transport are the real ones.
"""
from __future__ import annotations

import numpy as np

from ellsa_ros.runtime.blocks import Block
from ellsa_ros.runtime.policy import Decision


class SteadyPolicy:
    """Answers every block with a 1 s chunk of the same end-effector delta (gripper open), and
    says one sentence on the second block; remembers the typed instructions it was given."""

    latency_s = 0.0

    def __init__(self) -> None:
        self.heard: list[str] = []

    def reset(self) -> None:
        self.heard.clear()

    def step(self, block: Block) -> Decision:
        if block.heard:
            self.heard.append(block.heard)
        actions = np.full((20, 7), 0.1, np.float32)
        actions[:, -1] = -1.0
        say = "Moving the arm." if block.index == 1 else ""
        if block.heard:
            say = f"You said: {block.heard}."
        return Decision(actions=actions, say=say)


class SteadyJointPolicy:
    """Holds three joints at fixed positions: a chunk of 20 identical joint targets per block."""

    def reset(self) -> None:
        pass

    def step(self, block: Block) -> Decision:
        return Decision(actions=np.tile(np.array([0.1, -0.2, 0.3], np.float32), (20, 1)))


class BrokenPolicy:
    """Holds until it is told anything, then fails every block, as a policy fed a state it
    cannot read does (the test says when, once it hears the node's events)."""

    def __init__(self) -> None:
        self.failing = False

    def reset(self) -> None:
        self.failing = False

    def step(self, block: Block) -> Decision:
        self.failing = self.failing or bool(block.heard)
        if self.failing:
            raise ValueError(f"block {block.index}: state has 9 values, the model expects 18")
        return Decision()


class FuzzPolicy:
    """Chunks a model must never get through to the arm: saturated values far outside [-1, 1],
    NaN, infinities and large random values, in turn, block after block."""

    latency_s = 0.0

    def __init__(self) -> None:
        self.rng = np.random.default_rng(0)

    def reset(self) -> None:
        pass

    def step(self, block: Block) -> Decision:
        kind = block.index % 4
        actions = self.rng.normal(0.0, 1e3, (20, 7)).astype(np.float32)
        if kind == 0:
            actions = np.sign(actions) * 50.0
        elif kind == 1:
            actions[3, 2] = np.nan
        elif kind == 2:
            actions[:, 0] = np.inf
        return Decision(actions=actions)


class NineStatePolicy(SteadyPolicy):
    """A policy that reads a 9-value state (its `state_dim`), as a joint-space model does."""

    state_dim = 9
