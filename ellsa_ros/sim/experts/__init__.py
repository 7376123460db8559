"""Scripted experts: privileged-state controllers that solve LIBERO tasks.

They generate demonstrations and check the simulator; they are never the deployed policy.
An expert is reset at the start of an episode and asked for one action per control step.
"""
from __future__ import annotations

from typing import Protocol

import numpy as np

from ellsa_ros.sim.experts.pick_place import PickPlaceConfig, PickPlaceExpert

# Suites whose every task is one pick-and-place of an object onto or into a target.
PICK_PLACE_SUITES = ("libero_spatial", "libero_object")


class ScriptedExpert(Protocol):
    def reset(self) -> None:
        """Called at the start of every episode, after the environment's reset."""

    def act(self, obs: dict, info: dict) -> np.ndarray:
        """Called once per control step with the latest observation and info; returns (7,) in [-1, 1]."""


def expert_for(suite: str) -> ScriptedExpert:
    """The scripted expert for every task of `suite`."""
    if suite not in PICK_PLACE_SUITES:
        raise ValueError(f"no scripted expert for suite {suite!r}; experts exist for: {', '.join(PICK_PLACE_SUITES)}")
    return PickPlaceExpert()


__all__ = ["PICK_PLACE_SUITES", "PickPlaceConfig", "PickPlaceExpert", "ScriptedExpert", "expert_for"]
