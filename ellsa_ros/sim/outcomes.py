"""What came of an episode: measured outcomes, and the scenario's expectations checked.

All times are simulation seconds. Definitions (the evaluation report uses these words):
- halt latency: from the onset of the user's stop word (the first sample of its audio) to
  the engine's first ActionHalt after it (a stop-word reflex or the model's cancel);
- halted: there was such a halt and the arm sent no motion after it until the user's next
  instruction (or the end of the episode);
- answer: everything the robot began to say after the onset of the question and before the
  user's next utterance; it "contains" a word when the word appears in it, case-insensitive;
- outcome: "reject" if the robot rejected an instruction, else "act" if it started an action
  chunk after the first user event, else "answer" if it spoke, else "none";
- speech overlapping action: seconds in which the robot's voice was audible while the
  command of that control period was a motion (not a hold).
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Any

from ellsa_ros.runtime import events as ev
from ellsa_ros.sim.microphone import Utterance
from ellsa_ros.sim.scenario import Scenario

OUTCOME_NAMES = ("act", "reject", "answer", "none")


@dataclass
class EpisodeTrace:
    """What the bridge recorded, in simulation time."""
    user: list[Utterance]                    # what the user said or typed, with its span
    events: list[ev.Event]                   # every engine event, in order
    motion: list[tuple[float, bool]]         # (tick time, True when the command moved the arm)
    voice: list[tuple[float, float]]         # spans in which the robot's voice was audible
    success_t: float | None                  # first time the task was achieved, if it was
    period_s: float                          # control period


def measure(trace: EpisodeTrace) -> dict[str, Any]:
    """The outcome metrics of one episode (see the module docstring)."""
    first_user = min((u.t_start for u in trace.user), default=0.0)
    rejected = any(isinstance(e, ev.Rejection) for e in trace.events)
    acted = any(isinstance(e, ev.ActionChunkStart) and e.t >= first_user for e in trace.events)
    spoke = any(isinstance(e, ev.RobotSpeechStart) and e.t >= first_user for e in trace.events)
    outcome = "reject" if rejected else "act" if acted else "answer" if spoke else "none"
    out: dict[str, Any] = {
        "success": trace.success_t is not None, "success_t_s": trace.success_t,
        "rejected": rejected, "outcome": outcome,
        "speech_action_overlap_s": round(_overlap(trace), 4),
    }
    stop = next((u for u in trace.user if u.kind == "stop"), None)
    if stop is not None:
        out.update(_halt(trace, stop))
    ask = next((u for u in trace.user if u.kind == "ask"), None)
    if ask is not None:
        out["answer"] = _answer(trace, ask)
    return out


def check(scenario: Scenario, metrics: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each expectation of the scenario: {"expected", "observed", "ok"}."""
    x = scenario.expect
    checks: dict[str, dict[str, Any]] = {}

    def put(name: str, expected: Any, observed: Any, ok: bool) -> None:
        checks[name] = {"expected": expected, "observed": observed, "ok": bool(ok)}
    if x.success is not None:
        put("success", x.success, metrics["success"], metrics["success"] == x.success)
    if x.rejected is not None:
        put("rejected", x.rejected, metrics["rejected"], metrics["rejected"] == x.rejected)
    if x.halted is not None:
        halted = bool(metrics.get("halted", False))
        put("halted", x.halted, halted, halted == x.halted)
    if x.halt_within_s is not None:
        latency = metrics.get("halt_latency_s")
        put("halt_within_s", x.halt_within_s, latency, latency is not None and latency <= x.halt_within_s)
    if x.answer_contains:
        answer = str(metrics.get("answer", "")).lower()
        missing = [w for w in x.answer_contains if w.lower() not in answer]
        put("answer_contains", list(x.answer_contains), metrics.get("answer", ""), not missing)
    if x.speech_overlaps_action is not None:
        overlapped = metrics["speech_action_overlap_s"] > 0
        put("speech_overlaps_action", x.speech_overlaps_action, overlapped, overlapped == x.speech_overlaps_action)
    return checks


def unmet(scenario: Scenario) -> dict[str, dict[str, Any]]:
    """The checks of an episode that crashed before it could play: every expectation failed."""
    x = scenario.expect
    expected = {"success": x.success, "rejected": x.rejected, "halted": x.halted, "halt_within_s": x.halt_within_s,
                "answer_contains": list(x.answer_contains) or None, "speech_overlaps_action": x.speech_overlaps_action}
    return {name: {"expected": v, "observed": None, "ok": False} for name, v in expected.items() if v is not None}


def _next_user_after(trace: EpisodeTrace, t: float) -> float:
    return min((u.t_start for u in trace.user if u.t_start > t and u.kind != "stop"), default=float("inf"))


def _halt(trace: EpisodeTrace, stop: Utterance) -> dict[str, Any]:
    halt = next((e for e in trace.events if isinstance(e, ev.ActionHalt) and e.t >= stop.t_start), None)
    if halt is None:
        return {"halted": False, "halt_latency_s": None, "halt_reason": ""}
    until = _next_user_after(trace, stop.t_start)
    moved_after = any(moving for t, moving in trace.motion if halt.t <= t < until)
    return {"halted": not moved_after, "halt_latency_s": round(halt.t - stop.t_start, 4), "halt_reason": halt.reason}


def _answer(trace: EpisodeTrace, ask: Utterance) -> str:
    until = _next_user_after(trace, ask.t_start)
    said = [e.text for e in trace.events if isinstance(e, ev.RobotSpeechStart) and ask.t_start <= e.t < until]
    return " ".join(said)


def _overlap(trace: EpisodeTrace) -> float:
    spans = sorted(trace.voice)
    starts = [a for a, _ in spans]
    total = 0.0
    for t, moving in trace.motion:
        if not moving:
            continue
        t_end = t + trace.period_s
        # Voice spans are single audio frames (tens of ms): only those starting a frame before
        # this period can reach into it.
        i = bisect.bisect_left(starts, t - 1.0)
        while i < len(spans) and spans[i][0] < t_end:
            a, b = spans[i]
            total += max(0.0, min(t_end, b) - max(t, a))
            i += 1
    return total
