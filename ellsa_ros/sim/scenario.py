"""Scenarios: what the user says to the simulated robot, when, and what should come of it.

A scenario is a YAML file (see sim/scenarios/). Times are simulation seconds from the start
of the episode (after the environment has settled).

    name: stop_mid_task                  # default: the file name
    suite: libero_spatial                # default: the evaluation's --suite
    task: 0                              # default: every task of the evaluation's --tasks
    init_state: 0                        # default: the evaluation's episode index
    duration_s: 11.0                     # default: the suite's step limit
    events:
      - {at: 0.5, say: "{task}"}         # {task}: the task's own instruction
      - {at: 5.0, stop: stop}            # say the stop word (default "stop")
      - {at: 7.0, ask: "what are you holding?"}
      - {at: 9.0, silence: 2.0}          # nobody speaks for 2 s
      - {at: 0.5, say: "put it down", wav: put_it_down.wav}   # the words come from a recording
      - {at: 0.5, say: "{task}", typed: true}                 # typed, not spoken
    expect:
      success: false
      rejected: false
      halted: true
      halt_within_s: 1.5
      answer_contains: [bowl]
      speech_overlaps_action: true

Every parse error names the file, the line and the field; a `wav` that does not exist is
named with the path that was looked for (relative paths are relative to the scenario file).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

EVENT_KINDS = ("say", "stop", "ask", "silence")
EVENT_FIELDS = ("at", *EVENT_KINDS, "wav", "typed")
EXPECT_FIELDS = ("success", "rejected", "halted", "halt_within_s", "answer_contains", "speech_overlaps_action")
SCENARIO_FIELDS = ("name", "description", "suite", "task", "init_state", "duration_s", "events", "expect")
TASK_PLACEHOLDER = "{task}"


class ScenarioError(ValueError):
    """A scenario or instruction file that cannot be used; the message names file, line and field."""

    def __init__(self, path: str | Path, line: int, field_name: str, message: str) -> None:
        super().__init__(f"{path}:{line}: {field_name}: {message}")
        self.path, self.line, self.field_name = str(path), line, field_name


@dataclass(frozen=True)
class UserEvent:
    """One thing the user does at `at_s` (simulation seconds).

    kind "say"/"ask"/"stop": `text` is spoken (or typed when `typed`); `wav`, when set, is the
    recording that is played instead of synthesized speech. kind "silence": nobody speaks for
    `duration_s`."""
    at_s: float
    kind: str
    text: str = ""
    wav: Path | None = None
    typed: bool = False
    duration_s: float = 0.0
    line: int = 0

    def for_task(self, instruction: str) -> UserEvent:
        """This event with `{task}` replaced by the task's own instruction."""
        if TASK_PLACEHOLDER not in self.text:
            return self
        return UserEvent(self.at_s, self.kind, self.text.replace(TASK_PLACEHOLDER, instruction),
                         self.wav, self.typed, self.duration_s, self.line)


@dataclass(frozen=True)
class Expectations:
    """Outcomes a scenario expects; None means "not checked"."""
    success: bool | None = None
    rejected: bool | None = None
    halted: bool | None = None
    halt_within_s: float | None = None          # barge-in: stop onset -> actions halted, sim seconds
    answer_contains: tuple[str, ...] = ()       # words the robot's answer to the question must contain
    speech_overlaps_action: bool | None = None  # the robot spoke while its arm moved


@dataclass(frozen=True)
class Scenario:
    name: str
    events: tuple[UserEvent, ...]
    expect: Expectations = field(default_factory=Expectations)
    suite: str | None = None
    task: int | None = None
    init_state: int | None = None
    duration_s: float | None = None
    description: str = ""
    path: Path | None = None
    listen_s: float | None = None   # the episode lasts at least this long after the user's last words (s)

    def for_task(self, instruction: str) -> Scenario:
        """The scenario with every `{task}` replaced by `instruction`."""
        return Scenario(self.name, tuple(e.for_task(instruction) for e in self.events), self.expect, self.suite,
                        self.task, self.init_state, self.duration_s, self.description, self.path, self.listen_s)

    @property
    def last_event_s(self) -> float:
        """When the last scripted event starts (silences: when they end)."""
        return max((e.at_s + e.duration_s for e in self.events), default=0.0)


def instruction_scenario(instruction: str = TASK_PLACEHOLDER, at_s: float = 0.5, name: str = "instruction",
                         typed: bool = False) -> Scenario:
    """The plain LIBERO episode: the instruction is spoken once, and the task should succeed."""
    return Scenario(name, (UserEvent(at_s, "say", instruction, typed=typed),), Expectations(success=True))


# --- YAML with line numbers ---------------------------------------------------------------------

class YamlReader:
    """Reads a YAML file keeping each node's line, so that errors can point at it."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no such file")
        text = self.path.read_text(encoding="utf-8")
        try:
            self.root = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            line = mark.line + 1 if mark is not None else 0
            raise ScenarioError(self.path, line, "yaml", str(getattr(e, "problem", e))) from None
        if self.root is None:
            raise ScenarioError(self.path, 1, "file", "is empty")
        self._constructor = yaml.SafeLoader("")

    def error(self, node: yaml.Node, field_name: str, message: str) -> ScenarioError:
        return ScenarioError(self.path, node.start_mark.line + 1, field_name, message)

    def mapping(self, node: yaml.Node, where: str, allowed: tuple[str, ...]) -> dict[str, yaml.Node]:
        if not isinstance(node, yaml.MappingNode):
            raise self.error(node, where, "expected a mapping of fields")
        out: dict[str, yaml.Node] = {}
        for key, value in node.value:
            name = str(key.value)
            if name not in allowed:
                raise self.error(key, f"{where}.{name}" if where else name,
                                 f"unknown field; valid fields: {', '.join(allowed)}")
            if name in out:
                raise self.error(key, f"{where}.{name}" if where else name, "given twice")
            out[name] = value
        return out

    def sequence(self, node: yaml.Node, where: str) -> list[yaml.Node]:
        if not isinstance(node, yaml.SequenceNode):
            raise self.error(node, where, "expected a list")
        return list(node.value)

    def scalar(self, node: yaml.Node, where: str) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            raise self.error(node, where, "expected a single value")
        return self._constructor.construct_object(node, deep=True)

    def text(self, node: yaml.Node, where: str) -> str:
        value = self.scalar(node, where)
        if not isinstance(value, str) or not value.strip():
            raise self.error(node, where, f"expected non-empty text, got {value!r}")
        return value.strip()

    def number(self, node: yaml.Node, where: str, low: float = 0.0) -> float:
        value = self.scalar(node, where)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= low:
            raise self.error(node, where, f"expected a number >= {low}, got {value!r}")
        return float(value)

    def index(self, node: yaml.Node, where: str) -> int:
        value = self.scalar(node, where)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise self.error(node, where, f"expected an index >= 0, got {value!r}")
        return value

    def flag(self, node: yaml.Node, where: str) -> bool:
        value = self.scalar(node, where)
        if not isinstance(value, bool):
            raise self.error(node, where, f"expected true or false, got {value!r}")
        return value

    def words(self, node: yaml.Node, where: str) -> tuple[str, ...]:
        if isinstance(node, yaml.ScalarNode):
            return (self.text(node, where),)
        return tuple(self.text(n, f"{where}[{i}]") for i, n in enumerate(self.sequence(node, where)))

    def wav(self, node: yaml.Node, where: str) -> Path:
        path = Path(self.text(node, where))
        if not path.is_absolute():
            path = self.path.parent / path
        if not path.is_file():
            raise self.error(node, where, f"WAV file not found: {path}")
        return path


def load_scenario(path: str | Path) -> Scenario:
    """Reads and checks a scenario file; raises ScenarioError (file:line: field: problem)."""
    r = YamlReader(path)
    top = r.mapping(r.root, "", SCENARIO_FIELDS)
    if "events" not in top:
        raise r.error(r.root, "events", "missing: a scenario needs at least one event")
    events = tuple(sorted((_event(r, n, f"events[{i}]") for i, n in enumerate(r.sequence(top["events"], "events"))),
                          key=lambda e: e.at_s))
    if not events:
        raise r.error(top["events"], "events", "is empty: a scenario needs at least one event")
    _check_silences(r, events)
    expect = _expectations(r, top["expect"]) if "expect" in top else Expectations()
    if expect.answer_contains and not any(e.kind == "ask" for e in events):
        raise r.error(top["expect"], "expect.answer_contains", "the scenario asks no question (no `ask` event)")
    if (expect.halted is not None or expect.halt_within_s is not None) and not any(e.kind == "stop" for e in events):
        raise r.error(top["expect"], "expect.halted", "the scenario never says stop (no `stop` event)")
    suite = r.text(top["suite"], "suite") if "suite" in top else None
    if suite is not None:
        from ellsa_ros.sim.suites import suite_names
        if suite not in suite_names():
            raise r.error(top["suite"], "suite", f"unknown suite {suite!r}; valid suites: {', '.join(suite_names())}")
    duration = r.number(top["duration_s"], "duration_s", 0.05) if "duration_s" in top else None
    if duration is not None and duration < events[-1].at_s:
        raise r.error(top["duration_s"], "duration_s",
                      f"{duration} s ends before the last event at {events[-1].at_s} s")
    return Scenario(
        name=r.text(top["name"], "name") if "name" in top else r.path.stem,
        events=events, expect=expect, suite=suite,
        task=r.index(top["task"], "task") if "task" in top else None,
        init_state=r.index(top["init_state"], "init_state") if "init_state" in top else None,
        duration_s=duration,
        description=r.text(top["description"], "description") if "description" in top else "",
        path=r.path)


def _event(r: YamlReader, node: yaml.Node, where: str) -> UserEvent:
    f = r.mapping(node, where, EVENT_FIELDS)
    kinds = [k for k in EVENT_KINDS if k in f]
    if len(kinds) != 1:
        raise r.error(node, where, f"needs exactly one of {', '.join(EVENT_KINDS)}; got {kinds or 'none'}")
    if "at" not in f:
        raise r.error(node, f"{where}.at", "missing: when the event happens, in seconds")
    kind = kinds[0]
    at_s = r.number(f["at"], f"{where}.at")
    line = node.start_mark.line + 1
    if kind == "silence":
        for extra in ("wav", "typed"):
            if extra in f:
                raise r.error(f[extra], f"{where}.{extra}", "a silence has nothing to play or type")
        return UserEvent(at_s, kind, duration_s=r.number(f["silence"], f"{where}.silence", 0.05), line=line)
    value = f[kind]
    if kind == "stop" and isinstance(value, yaml.ScalarNode) and r.scalar(value, f"{where}.stop") in (True, None):
        text = "stop"
    else:
        text = r.text(value, f"{where}.{kind}")
    wav = r.wav(f["wav"], f"{where}.wav") if "wav" in f else None
    typed = r.flag(f["typed"], f"{where}.typed") if "typed" in f else False
    if typed and wav is not None:
        raise r.error(f["typed"], f"{where}.typed", "an event is either typed or played from a WAV, not both")
    return UserEvent(at_s, kind, text, wav, typed, line=line)


def _check_silences(r: YamlReader, events: tuple[UserEvent, ...]) -> None:
    for quiet in (e for e in events if e.kind == "silence"):
        for e in events:
            if e.kind != "silence" and quiet.at_s <= e.at_s < quiet.at_s + quiet.duration_s:
                raise ScenarioError(r.path, e.line, "at", f"{e.kind} at {e.at_s} s falls inside the silence "
                                    f"of line {quiet.line} ({quiet.at_s}-{quiet.at_s + quiet.duration_s} s)")


def _expectations(r: YamlReader, node: yaml.Node) -> Expectations:
    f = r.mapping(node, "expect", EXPECT_FIELDS)

    def flag(name: str) -> bool | None:
        return r.flag(f[name], f"expect.{name}") if name in f else None
    return Expectations(
        success=flag("success"), rejected=flag("rejected"), halted=flag("halted"),
        halt_within_s=r.number(f["halt_within_s"], "expect.halt_within_s", 0.0) if "halt_within_s" in f else None,
        answer_contains=r.words(f["answer_contains"], "expect.answer_contains") if "answer_contains" in f else (),
        speech_overlaps_action=flag("speech_overlaps_action"))
