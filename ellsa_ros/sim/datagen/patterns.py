"""Interaction patterns: what the user says around a demonstration, and their shares.

Every episode is one demonstration with one pattern laid over it:

- instruction:       the LIBERO instruction or a paraphrase; the robot acts in silence;
- acknowledge:       as above, and the robot acknowledges while it starts acting;
- question_mid_task: a question while the robot works, answered while it keeps acting;
- scene_question:    questions about the scene before the instruction, answered from
                     simulator state, the robot still;
- defective:         first an instruction to refuse (absent object, impossible or unsafe
                     request, unintelligible speech): a spoken rejection and no action; then
                     the real instruction;
- barge_in:          "stop" / "pause" mid-task: the actions stop and the robot acknowledges;
                     "continue" resumes;
- backchannel:       "mm-hmm", "okay" while the robot works: nothing stops, nothing is said.

Silence when there is nothing to say is in every pattern: most blocks carry no words.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ellsa_ros.sim.datagen.scene_talk import (
    Boxes,
    Defect,
    Question,
    defective_instruction,
    doing_answer,
    scene_question,
)

PATTERNS = ("instruction", "acknowledge", "question_mid_task", "scene_question", "defective", "barge_in",
            "backchannel")
DEFAULT_SHARES = {"instruction": 0.2, "acknowledge": 0.15, "question_mid_task": 0.15, "scene_question": 0.15,
                  "defective": 0.15, "barge_in": 0.1, "backchannel": 0.1}

STOP_PHRASES = ("stop", "stop, please", "wait", "pause", "wait a second", "halt")
STOP_REPLIES = ("Okay, I've stopped.", "Stopping.", "Okay, pausing.", "Sure, I'll wait.")
CONTINUE_PHRASES = ("continue", "go on", "okay, continue", "you can continue now", "carry on", "resume")
CONTINUE_REPLIES = ("Continuing.", "Okay, going on.", "Resuming.", "")
BACKCHANNELS = ("mm-hmm", "uh-huh", "okay", "right", "yeah", "good")
ACKNOWLEDGEMENTS = ("Okay.", "Sure.", "On it.", "Will do.")
DOING_QUESTIONS = ("what are you doing?", "what are you working on?")
_FRAMES = ("{i}", "please {i}", "could you {i}?", "can you {i}, please?", "I'd like you to {i}", "{i}, thanks",
           "go ahead and {i}")
_SWAPS = (("pick up", ("grab", "take", "pick up")), ("place it on", ("put it on", "set it on", "place it on")),
          ("place it in", ("put it in", "drop it in", "place it in")))


@dataclass(frozen=True)
class PatternShares:
    """Share of episodes per pattern; normalized at construction."""
    shares: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_SHARES))

    def __post_init__(self) -> None:
        unknown = sorted(set(self.shares) - set(PATTERNS))
        if unknown:
            raise ValueError(f"unknown interaction pattern(s) {unknown}; patterns: {', '.join(PATTERNS)}")
        bad = {k: v for k, v in self.shares.items() if not (np.isfinite(v) and v >= 0)}
        if bad:
            raise ValueError(f"pattern shares must be finite and >= 0, got {bad}")
        total = sum(self.shares.values())
        if total <= 0:
            raise ValueError("pattern shares sum to 0: give at least one pattern a positive share")
        object.__setattr__(self, "shares", {k: self.shares.get(k, 0.0) / total for k in PATTERNS})

    @classmethod
    def parse(cls, text: str) -> PatternShares:
        """'instruction=0.3,barge_in=0.2' (patterns not named get 0)."""
        shares: dict[str, float] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            name, eq, value = part.partition("=")
            try:
                shares[name.strip()] = float(value)
            except ValueError:
                raise ValueError(f"bad pattern share {part!r}: write name=share, e.g. barge_in=0.2") from None
            if not eq:
                raise ValueError(f"bad pattern share {part!r}: write name=share, e.g. barge_in=0.2")
        return cls(shares)

    def draw(self, rng: np.random.Generator) -> str:
        return str(rng.choice(PATTERNS, p=[self.shares[k] for k in PATTERNS]))


def paraphrase(instruction: str, rng: np.random.Generator) -> str:
    """The instruction as a user might say it: a polite frame and, sometimes, other verbs."""
    text = instruction.strip().rstrip(".")
    for phrase, options in _SWAPS:
        if phrase in text:
            text = text.replace(phrase, options[int(rng.integers(len(options)))], 1)
    return _FRAMES[int(rng.integers(len(_FRAMES)))].format(i=text)


@dataclass
class Before:
    """Something said before the instruction, answered while the robot stays still."""
    text: str
    question: Question | None = None      # a scene question, answered from the scene at answer time
    defect: Defect | None = None          # a defective instruction, rejected


@dataclass
class During:
    """Something said `offset_s` after the robot started acting."""
    offset_s: float
    kind: str                              # "question" | "backchannel" | "stop"
    text: str
    question: Question | None = None       # None with kind "question": "what are you doing?"
    reply: str = ""
    pause_s: float = 0.0                   # stop: how long the user waits before saying continue
    continue_text: str = ""
    continue_reply: str = ""


@dataclass
class InteractionPlan:
    pattern: str
    lead_in_s: float
    instruction: str                       # what the user says to start the task
    acknowledge: str = ""
    before: list[Before] = field(default_factory=list)
    during: list[During] = field(default_factory=list)


def _pick(seq, rng: np.random.Generator):
    return seq[int(rng.integers(len(seq)))]


def plan_episode(pattern: str, task_instruction: str, boxes: Boxes, rng: np.random.Generator) -> InteractionPlan:
    """Everything the user will say in one episode (`boxes`: the scene at the start)."""
    if pattern not in PATTERNS:
        raise ValueError(f"unknown interaction pattern {pattern!r}; patterns: {', '.join(PATTERNS)}")
    said = task_instruction if rng.random() < 0.4 else paraphrase(task_instruction, rng)
    plan = InteractionPlan(pattern, float(rng.uniform(0.3, 1.0)), said)
    if pattern == "acknowledge":
        plan.acknowledge = _pick((*ACKNOWLEDGEMENTS, "Okay, " + doing_answer(task_instruction)[4:]), rng)
    elif pattern == "scene_question":
        for _ in range(int(rng.integers(1, 3))):
            q = scene_question(boxes, rng)
            plan.before.append(Before(q.text, question=q))
    elif pattern == "defective":
        d = defective_instruction(boxes, rng)
        plan.before.append(Before(d.text, defect=d))
    elif pattern == "question_mid_task":
        if rng.random() < 0.3:
            plan.during.append(During(float(rng.uniform(1.0, 3.0)), "question", _pick(DOING_QUESTIONS, rng),
                                      reply=doing_answer(task_instruction)))
        else:
            q = scene_question(boxes, rng)
            plan.during.append(During(float(rng.uniform(1.0, 3.0)), "question", q.text, question=q))
    elif pattern == "barge_in":
        plan.during.append(During(float(rng.uniform(1.0, 3.0)), "stop", _pick(STOP_PHRASES, rng),
                                  reply=_pick(STOP_REPLIES, rng), pause_s=float(rng.uniform(0.8, 2.0)),
                                  continue_text=_pick(CONTINUE_PHRASES, rng),
                                  continue_reply=_pick(CONTINUE_REPLIES, rng)))
    elif pattern == "backchannel":
        offset = float(rng.uniform(0.8, 2.0))
        for _ in range(int(rng.integers(1, 3))):
            plan.during.append(During(offset, "backchannel", _pick(BACKCHANNELS, rng)))
            offset += float(rng.uniform(1.5, 3.0))
    return plan
