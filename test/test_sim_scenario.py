"""Scenario and instruction files: what they say, and errors that point at file, line and field."""
from __future__ import annotations

from pathlib import Path

import pytest

from ellsa_ros.sim.instructions import load_instructions
from ellsa_ros.sim.scenario import ScenarioError, load_scenario

REPO = Path(__file__).resolve().parents[1]
SCENARIOS = sorted((REPO / "sim" / "scenarios").glob("*.yaml"))
INSTRUCTIONS = sorted((REPO / "sim" / "instructions").glob("*.yaml"))


def write(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_shipped_scenarios_parse(path):
    s = load_scenario(path)
    assert s.events and s.name == path.stem
    assert [e.at_s for e in s.events] == sorted(e.at_s for e in s.events)


def test_shipped_scenarios_cover_the_four_cases():
    kinds = {p.stem: {e.kind for e in load_scenario(p).events} for p in SCENARIOS}
    assert {"instruction", "stop_mid_task", "question_mid_task", "defective_instruction"} <= set(kinds)
    assert "stop" in kinds["stop_mid_task"] and "silence" in kinds["stop_mid_task"]
    assert "ask" in kinds["question_mid_task"]
    assert load_scenario(REPO / "sim/scenarios/defective_instruction.yaml").expect.rejected is True


def test_task_placeholder_becomes_the_task_instruction():
    s = load_scenario(REPO / "sim/scenarios/stop_mid_task.yaml").for_task("pick up the bowl")
    assert s.events[0].text == "pick up the bowl"
    assert s.events[1].text == "stop" and s.events[1].at_s == 8.0
    assert s.expect.halted is True and s.expect.halt_within_s == 1.5


def test_full_scenario_fields(tmp_path):
    wav = tmp_path / "put_it_down.wav"
    wav.write_bytes(b"RIFF")   # existence is what parsing checks; reading happens when played
    path = write(tmp_path, """
name: mine
suite: libero_object
task: 3
init_state: 7
duration_s: 9.5
events:
  - {at: 4, stop: true}
  - {at: 0.5, say: "hello there", typed: true}
  - {at: 2.0, ask: "what now?", wav: put_it_down.wav}
  - {at: 6.0, silence: 1.5}
expect:
  success: false
  halted: true
  answer_contains: [bowl, plate]
  speech_overlaps_action: true
""")
    s = load_scenario(path)
    assert (s.name, s.suite, s.task, s.init_state, s.duration_s) == ("mine", "libero_object", 3, 7, 9.5)
    assert [(e.at_s, e.kind) for e in s.events] == [(0.5, "say"), (2.0, "ask"), (4.0, "stop"), (6.0, "silence")]
    assert s.events[0].typed and s.events[1].wav == wav and s.events[2].text == "stop"
    assert s.events[3].duration_s == 1.5 and s.last_event_s == 7.5
    assert s.expect.answer_contains == ("bowl", "plate") and s.expect.speech_overlaps_action is True


@pytest.mark.parametrize("text, line, field, words", [
    ("events:\n  - at: 1.0\n    sya: hello\n", 3, "events[0].sya", "unknown field"),
    ("events:\n  - at: soon\n    say: hello\n", 2, "events[0].at", "expected a number"),
    ("events:\n  - at: 1.0\n    say: hi\n    ask: what?\n", 2, "events[0]", "exactly one of"),
    ("events:\n  - say: hi\n", 2, "events[0].at", "missing"),
    ("events:\n  - {at: 1.0, say: hi}\nexpect:\n  success: maybe\n", 4, "expect.success", "true or false"),
    ("events:\n  - {at: 1.0, say: hi}\nexpect:\n  answer_contains: [bowl]\n", 4, "expect.answer_contains",
     "asks no question"),
    ("events:\n  - {at: 1.0, say: hi}\nexpect:\n  halted: true\n", 4, "expect.halted", "never says stop"),
    ("suite: libero_nope\nevents:\n  - {at: 1.0, say: hi}\n", 1, "suite", "libero_spatial"),
    ("events:\n  - {at: 1.0, say: hi}\n  - {at: 0.5, silence: 2.0}\n", 2, "at", "inside the silence"),
    ("duration_s: 2.0\nevents:\n  - {at: 3.0, say: hi}\n", 1, "duration_s", "before the last event"),
    ("events: []\n", 1, "events", "is empty"),
    ("events:\n  - {at: 1.0, say: hi\n", 3, "yaml", ""),
    ("events:\n  - {at: -1.0, say: hi}\n", 2, "events[0].at", ">= 0"),
])
def test_parse_errors_name_file_line_and_field(tmp_path, text, line, field, words):
    path = write(tmp_path, text)
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    assert err.value.line == line and err.value.field_name == field
    assert str(err.value).startswith(f"{path}:{line}: {field}: ")
    assert words in str(err.value)


def test_missing_wav_is_named(tmp_path):
    path = write(tmp_path, "events:\n  - at: 1.0\n    say: hi\n    wav: recordings/nothing_here.wav\n")
    with pytest.raises(ScenarioError) as err:
        load_scenario(path)
    assert err.value.line == 4 and err.value.field_name == "events[0].wav"
    assert str(tmp_path / "recordings" / "nothing_here.wav") in str(err.value)


def test_missing_scenario_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_scenario(tmp_path / "nope.yaml")


@pytest.mark.parametrize("path", INSTRUCTIONS, ids=lambda p: p.stem)
def test_shipped_instruction_lists_parse(path):
    items = load_instructions(path)
    assert {i.expect for i in items.instructions} == {"act", "reject", "answer"}
    first = items.scenario(0)
    assert first.events[0].text == items.instructions[0].text and first.listen_s == items.listen_s
    assert (first.suite, first.task, first.init_state) == (items.suite, items.task, items.init_state)


@pytest.mark.parametrize("text, line, field, words", [
    ("suite: libero_spatial\ntask: 0\ninstructions:\n  - say: hi\n    expect: dance\n", 5,
     "instructions[0].expect", "act, reject, answer"),
    ("suite: libero_spatial\ntask: 10\ninstructions:\n  - {say: hi, expect: act}\n", 2, "task", "0-9"),
    ("suite: libero_spatial\ntask: 0\ninstructions:\n  - {expect: act}\n", 4, "instructions[0]", "`say`"),
    ("suite: libero_spatial\ntask: 0\ninstructions:\n  - {say: hi, expect: act, contains: [x]}\n", 4,
     "instructions[0].contains", "expecting an answer"),
    ("suite: libero_spatial\ninstructions:\n  - {say: hi, expect: act}\n", 1, "task", "missing"),
])
def test_instruction_list_errors(tmp_path, text, line, field, words):
    path = write(tmp_path, text, "i.yaml")
    with pytest.raises(ScenarioError) as err:
        load_instructions(path)
    assert (err.value.line, err.value.field_name) == (line, field)
    assert words in str(err.value)


def test_instruction_list_names_a_missing_recording(tmp_path):
    path = write(tmp_path, "suite: libero_spatial\ntask: 0\ninstructions:\n  - {wav: me.wav, expect: reject}\n")
    with pytest.raises(ScenarioError, match=f"WAV file not found: {tmp_path / 'me.wav'}"):
        load_instructions(path)
