"""Instruction lists for `ellsa eval --instructions`: does the robot act, reject or answer?

This is how users check defective-instruction rejection on their own phrasing:

    suite: libero_spatial
    task: 0                      # the scene every instruction is given in
    init_state: 0                # default 0
    listen_s: 6.0                # how long the robot has to respond after the instruction ends
    instructions:
      - say: pick up the black bowl next to the ramekin and place it on the plate
        expect: act
      - say: pick up the elephant and put it on the plate
        expect: reject
      - wav: recordings/my_phrasing.wav      # relative to this file
        say: put the bowl in the fridge      # optional: what the recording says (for the report)
        expect: reject
      - say: what is on the plate?
        expect: answer
        contains: [nothing]                  # optional: words the answer must contain

Each instruction becomes one short scenario (spoken at 0.5 s) in the named scene.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from ellsa_ros.sim.scenario import Expectations, Scenario, ScenarioError, UserEvent, YamlReader

OUTCOMES = ("act", "reject", "answer")
FILE_FIELDS = ("suite", "task", "init_state", "listen_s", "instructions")
ITEM_FIELDS = ("say", "wav", "expect", "contains")
SPOKEN_AT_S = 0.5


@dataclass(frozen=True)
class Instruction:
    text: str                      # what is said ("" for a recording with no transcript given)
    wav: Path | None
    expect: str                    # "act" | "reject" | "answer"
    contains: tuple[str, ...] = ()
    line: int = 0


@dataclass(frozen=True)
class InstructionSet:
    path: Path
    suite: str
    task: int
    init_state: int
    listen_s: float
    instructions: tuple[Instruction, ...]

    def scenario(self, i: int) -> Scenario:
        """Instruction `i` as a scenario: spoken at 0.5 s; the episode ends `listen_s` after the
        speech does, however long the recording is."""
        item = self.instructions[i]
        event = UserEvent(SPOKEN_AT_S, "ask" if item.expect == "answer" else "say", item.text or "(recording)",
                          item.wav, line=item.line)
        expect = Expectations(rejected=item.expect == "reject", answer_contains=item.contains)
        return Scenario(f"{self.path.stem}[{i}]", (event,), expect, self.suite, self.task, self.init_state,
                        path=self.path, listen_s=self.listen_s)


def load_instructions(path: str | Path) -> InstructionSet:
    """Reads and checks an instruction list; raises ScenarioError (file:line: field: problem)."""
    r = YamlReader(path)
    top = r.mapping(r.root, "", FILE_FIELDS)
    for required in ("suite", "task", "instructions"):
        if required not in top:
            raise r.error(r.root, required, "missing")
    from ellsa_ros.sim.suites import suite_names, task_count
    suite = r.text(top["suite"], "suite")
    if suite not in suite_names():
        raise r.error(top["suite"], "suite", f"unknown suite {suite!r}; valid suites: {', '.join(suite_names())}")
    task = r.index(top["task"], "task")
    if task >= task_count(suite):
        raise r.error(top["task"], "task",
                      f"unknown task id {task} in {suite}; valid task ids: 0-{task_count(suite) - 1}")
    items = tuple(_item(r, n, f"instructions[{i}]") for i, n in enumerate(r.sequence(top["instructions"],
                                                                                        "instructions")))
    if not items:
        raise r.error(top["instructions"], "instructions", "is empty")
    return InstructionSet(
        r.path, suite, task,
        r.index(top["init_state"], "init_state") if "init_state" in top else 0,
        r.number(top["listen_s"], "listen_s", 0.5) if "listen_s" in top else 6.0,
        items)


def _item(r: YamlReader, node: yaml.Node, where: str) -> Instruction:
    f = r.mapping(node, where, ITEM_FIELDS)
    if "say" not in f and "wav" not in f:
        raise r.error(node, where, "needs `say` (text to synthesize) or `wav` (a recording), or both")
    if "expect" not in f:
        raise r.error(node, f"{where}.expect", f"missing: one of {', '.join(OUTCOMES)}")
    expect = r.text(f["expect"], f"{where}.expect")
    if expect not in OUTCOMES:
        raise r.error(f["expect"], f"{where}.expect", f"{expect!r} is not an outcome; valid: {', '.join(OUTCOMES)}")
    contains = r.words(f["contains"], f"{where}.contains") if "contains" in f else ()
    if contains and expect != "answer":
        raise ScenarioError(r.path, f["contains"].start_mark.line + 1, f"{where}.contains",
                            "only an instruction expecting an answer can check what the answer contains")
    return Instruction(r.text(f["say"], f"{where}.say") if "say" in f else "",
                       r.wav(f["wav"], f"{where}.wav") if "wav" in f else None,
                       expect, contains, node.start_mark.line + 1)
