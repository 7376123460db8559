"""The evaluation summary: success per task and suite, and the duplex measures.

Computed from the episode records the runners return (see outcomes.py for the definitions):
- success rate per task and over the suite; episodes that crashed count as failures;
- scenario expectations met ("passed");
- rejection accuracy: episodes whose "rejected" expectation held / episodes that had one;
- barge-in halt latency (sim seconds): mean, median and max over episodes with a halt;
- answer accuracy: episodes whose answer contained the expected words / episodes that asked;
- speech overlapping action: share of episodes in which the robot spoke while its arm moved;
- instruction lists: outcome accuracy (act / reject / answer as expected).
"""
from __future__ import annotations

import statistics
from collections import defaultdict
from typing import Any


def summarize(records: list[dict[str, Any]], suite: str) -> dict[str, Any]:
    """The summary of an evaluation's episode records."""
    by_task: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        by_task[r["task_id"]].append(r)
    tasks = {}
    for task_id in sorted(by_task):
        rs = by_task[task_id]
        tasks[str(task_id)] = {
            "task": next((r["task"] for r in rs if r["task"]), ""),
            "episodes": len(rs),
            "success_rate": _rate([r["success"] for r in rs]),
            "passed_rate": _rate([r["passed"] for r in rs]),
            "errors": sum(r["error"] is not None for r in rs),
        }
    out: dict[str, Any] = {
        "suite": suite,
        "episodes": len(records),
        "success_rate": _rate([r["success"] for r in records]),
        "passed_rate": _rate([r["passed"] for r in records]),
        "errors": sum(r["error"] is not None for r in records),
        "tasks": tasks,
    }
    rejection = [r["checks"]["rejected"]["ok"] for r in records if "rejected" in r["checks"]]
    if rejection:
        out["rejection_accuracy"] = _rate(rejection)
    latencies = [r["metrics"]["halt_latency_s"] for r in records if r["metrics"].get("halt_latency_s") is not None]
    stops = [r for r in records if "halted" in r["metrics"]]
    if stops:
        out["halted_rate"] = _rate([r["metrics"]["halted"] for r in stops])
        out["halt_latency_s"] = ({"mean": round(statistics.fmean(latencies), 4),
                                  "median": round(statistics.median(latencies), 4),
                                  "max": round(max(latencies), 4), "n": len(latencies)} if latencies else None)
    answers = [r["checks"]["answer_contains"]["ok"] for r in records if "answer_contains" in r["checks"]]
    if answers:
        out["answer_accuracy"] = _rate(answers)
    ran = [r for r in records if r["error"] is None and r["metrics"]]
    if ran:
        out["speech_overlapped_action_rate"] = _rate([r["metrics"]["speech_action_overlap_s"] > 0 for r in ran])
        out["speech_action_overlap_s_mean"] = round(statistics.fmean(r["metrics"]["speech_action_overlap_s"]
                                                                     for r in ran), 4)
    graded = [r for r in records if r.get("expected_outcome") is not None]
    if graded:
        out["instruction_accuracy"] = _rate([r.get("outcome_ok", False) for r in graded])
        per: dict[str, list[bool]] = defaultdict(list)
        for r in graded:
            per[r["expected_outcome"]].append(r.get("outcome_ok", False))
        out["instruction_accuracy_by_outcome"] = {k: _rate(v) for k, v in sorted(per.items())}
    return out


def table_rows(summary: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """(task, episodes, success, passed, errors) rows; the last row is the suite."""
    rows = [(tid, str(t["episodes"]), _pct(t["success_rate"]), _pct(t["passed_rate"]), str(t["errors"]))
            for tid, t in summary["tasks"].items()]
    rows.append((summary["suite"], str(summary["episodes"]), _pct(summary["success_rate"]),
                 _pct(summary["passed_rate"]), str(summary["errors"])))
    return rows


def duplex_lines(summary: dict[str, Any]) -> list[str]:
    """The duplex measures, one line each, for whichever this evaluation had."""
    lines = []
    if "rejection_accuracy" in summary:
        lines.append(f"rejection accuracy        {_pct(summary['rejection_accuracy'])}")
    if "halted_rate" in summary:
        lines.append(f"halted after stop         {_pct(summary['halted_rate'])}")
        h = summary.get("halt_latency_s")
        if h:
            lines.append(f"halt latency (sim s)      mean {h['mean']:.3f}  median {h['median']:.3f}  "
                         f"max {h['max']:.3f}  (n={h['n']})")
    if "answer_accuracy" in summary:
        lines.append(f"answer accuracy           {_pct(summary['answer_accuracy'])}")
    if "speech_overlapped_action_rate" in summary:
        lines.append(f"spoke while acting        {_pct(summary['speech_overlapped_action_rate'])} of episodes, "
                     f"mean {summary['speech_action_overlap_s_mean']:.2f} s")
    if "instruction_accuracy" in summary:
        per = ", ".join(f"{k} {_pct(v)}" for k, v in summary["instruction_accuracy_by_outcome"].items())
        lines.append(f"instruction accuracy      {_pct(summary['instruction_accuracy'])}  ({per})")
    return lines


def markdown(summary: dict[str, Any]) -> str:
    out = ["| task | episodes | success | passed | errors |", "|---|---|---|---|---|"]
    out += [f"| {' | '.join(row)} |" for row in table_rows(summary)]
    extra = duplex_lines(summary)
    if extra:
        out += ["", "```", *extra, "```"]
    return "\n".join(out) + "\n"


def _rate(flags: list[bool]) -> float:
    return round(sum(bool(f) for f in flags) / len(flags), 4) if flags else 0.0


def _pct(x: float) -> str:
    return f"{100.0 * x:.1f}%"
