"""Typed events: everything the engine does is announced here.

ROS topics, the console, the recorder and the evaluation harness all subscribe to the same
`EventBus`. Every event carries `t`, the engine clock time in seconds at which it happened
(wall time on a robot, simulation time in the simulator and in tests).
"""
from __future__ import annotations

import dataclasses
import json
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar


@dataclass(frozen=True)
class Event:
    t: float
    kind: ClassVar[str] = "event"

    def to_dict(self) -> dict[str, Any]:
        d = {"kind": self.kind}
        d.update(dataclasses.asdict(self))
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), default=_json_default)


def _json_default(x: Any) -> Any:
    if hasattr(x, "tolist"):
        return x.tolist()
    return str(x)


# --- the user -------------------------------------------------------------------------------

@dataclass(frozen=True)
class UserSpeechStart(Event):
    kind: ClassVar[str] = "user_speech_start"


@dataclass(frozen=True)
class UserSpeechEnd(Event):
    duration_s: float = 0.0
    kind: ClassVar[str] = "user_speech_end"


@dataclass(frozen=True)
class UserTranscript(Event):
    """What the user said, as text (ASR of one utterance, or a typed instruction)."""
    text: str = ""
    source: str = "asr"  # "asr" | "typed"
    kind: ClassVar[str] = "user_transcript"


@dataclass(frozen=True)
class UtteranceRefused(Event):
    """An utterance was heard but its transcript is not used (a decoding loop, more words than
    the audio could hold, audio that is no speech): the policy never sees that text."""
    reason: str = ""
    kind: ClassVar[str] = "utterance_refused"


@dataclass(frozen=True)
class KeywordHeard(Event):
    word: str = ""
    kind: ClassVar[str] = "keyword_heard"


# --- the robot's voice ----------------------------------------------------------------------

@dataclass(frozen=True)
class RobotSpeechStart(Event):
    text: str = ""
    kind: ClassVar[str] = "robot_speech_start"


@dataclass(frozen=True)
class RobotSpeechDuck(Event):
    gain: float = 0.0
    kind: ClassVar[str] = "robot_speech_duck"


@dataclass(frozen=True)
class RobotSpeechUnduck(Event):
    kind: ClassVar[str] = "robot_speech_unduck"


@dataclass(frozen=True)
class RobotSpeechPause(Event):
    """The user kept talking past a backchannel's length: the robot's voice is silent, keeping
    its place, until the user's speech turns out a backchannel (resume) or an interruption (cut)."""
    kind: ClassVar[str] = "robot_speech_pause"


@dataclass(frozen=True)
class RobotSpeechResume(Event):
    """The user's speech was a backchannel: the paused voice plays on from the start of the word
    it paused in (`replayed_s` of audio said again)."""
    replayed_s: float = 0.0
    kind: ClassVar[str] = "robot_speech_resume"


@dataclass(frozen=True)
class RobotSpeechCut(Event):
    reason: str = ""  # "barge_in" | "stop_word" | "cancel" | "reset"
    kind: ClassVar[str] = "robot_speech_cut"


@dataclass(frozen=True)
class RobotSpeechEnd(Event):
    text: str = ""
    kind: ClassVar[str] = "robot_speech_end"


# --- actions --------------------------------------------------------------------------------

@dataclass(frozen=True)
class ActionChunkStart(Event):
    chunk_id: int = 0
    n_actions: int = 0
    skipped: int = 0  # actions already past when the chunk arrived (inference latency; late: skip)
    shifted: int = 0  # control periods it was moved later to start on arrival (late: shift)
    kind: ClassVar[str] = "action_chunk_start"


@dataclass(frozen=True)
class ActionChunkDone(Event):
    chunk_id: int = 0
    kind: ClassVar[str] = "action_chunk_done"


@dataclass(frozen=True)
class ActionChunkCancelled(Event):
    chunk_id: int = 0
    reason: str = ""
    kind: ClassVar[str] = "action_chunk_cancelled"


@dataclass(frozen=True)
class ActionHalt(Event):
    """The action queue stopped emitting and holds (stop word, cancel, reject, stale input)."""
    reason: str = ""
    kind: ClassVar[str] = "action_halt"


@dataclass(frozen=True)
class ActionRelease(Event):
    """A stop-word hold was released: the utterance was heard as other words (`heard`), and the
    plan goes on where it stopped, `held_s` after the hold began."""
    reason: str = ""
    held_s: float = 0.0
    heard: str = ""
    kind: ClassVar[str] = "action_release"


@dataclass(frozen=True)
class Rejection(Event):
    reason: str = ""
    instruction: str = ""
    kind: ClassVar[str] = "rejection"


@dataclass(frozen=True)
class TaskDone(Event):
    kind: ClassVar[str] = "task_done"


# --- the loop's health ----------------------------------------------------------------------

@dataclass(frozen=True)
class Decided(Event):
    """The policy answered a block. `latency_s` is from block end to the answer being applied."""
    block_index: int = 0
    latency_s: float = 0.0
    say: str = ""
    n_actions: int = 0
    control: str = ""  # "", "reject", "cancel", "done"
    kind: ClassVar[str] = "decided"


@dataclass(frozen=True)
class Overrun(Event):
    loop: str = ""  # "control" | "policy"
    late_ms: float = 0.0
    missed: int = 0
    kind: ClassVar[str] = "overrun"


@dataclass(frozen=True)
class StaleInput(Event):
    stream: str = ""
    age_s: float = 0.0
    kind: ClassVar[str] = "stale_input"


@dataclass(frozen=True)
class InputRecovered(Event):
    stream: str = ""
    kind: ClassVar[str] = "input_recovered"


@dataclass(frozen=True)
class InvalidInput(Event):
    """A sample was dropped: what was wrong with it, and how many have been dropped so far."""
    stream: str = ""
    reason: str = ""
    count: int = 1
    kind: ClassVar[str] = "invalid_input"


@dataclass(frozen=True)
class PolicyError(Event):
    """A block got no decision; `consecutive` counts the failures since the last decision."""
    error: str = ""
    consecutive: int = 1
    kind: ClassVar[str] = "policy_error"


@dataclass(frozen=True)
class PolicyFailing(Event):
    """The policy has failed `failures` blocks in a row (once per run of failures): the arm
    holds until it decides again."""
    error: str = ""
    failures: int = 0
    kind: ClassVar[str] = "policy_failing"


@dataclass(frozen=True)
class CommandsArmed(Event):
    """The command outputs were armed (`armed`) or disarmed; while disarmed only zero motion
    commands are sent. `reason`: "start", "enable_service", "shutdown"."""
    armed: bool = False
    reason: str = ""
    kind: ClassVar[str] = "commands_armed"


Subscriber = Callable[[Event], None]


@dataclass
class EventBus:
    """Fan-out of events to any number of subscribers, from any thread.

    A subscriber that raises is reported once on stderr and kept: one broken console must not
    take the control loop down with it.
    """
    _subscribers: list[Subscriber] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def subscribe(self, fn: Subscriber) -> Callable[[], None]:
        """Adds `fn`; returns a function that removes it again."""
        with self._lock:
            self._subscribers.append(fn)

        def unsubscribe() -> None:
            with self._lock:
                if fn in self._subscribers:
                    self._subscribers.remove(fn)
        return unsubscribe

    def publish(self, event: Event) -> None:
        with self._lock:
            subs = list(self._subscribers)
        for fn in subs:
            try:
                fn(event)
            except Exception as e:  # noqa: BLE001 - a subscriber's bug is not the robot's
                import sys
                print(f"[ellsa] event subscriber {fn!r} failed on {event.kind}: {e!r}", file=sys.stderr)


class EventLog:
    """A subscriber that keeps every event, for tests, evaluation and the recorder."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        with self._lock:
            self.events.append(event)

    def of(self, *types: type[Event]) -> list[Event]:
        with self._lock:
            return [e for e in self.events if isinstance(e, types)]

    def first(self, etype: type[Event]) -> Event | None:
        found = self.of(etype)
        return found[0] if found else None
