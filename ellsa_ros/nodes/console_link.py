"""The teleoperator console's side of the graph, apart from its screen.

`ConsoleLink` is a node that sends typed instructions (`instruction`), calls the policy's
`stop`, `reset` and `mute` services, optionally streams the operator's microphone to
`audio`, and turns `transcript` and `events` into `ConsoleState` updates. `ConsoleState`
holds what the screen shows: the conversation, the arm's state and an event log.
"""
from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from rclpy.context import Context
from rclpy.node import Node
from std_msgs.msg import Int16MultiArray, String
from std_srvs.srv import SetBool, Trigger

from ellsa_ros.nodes.audio_io import DeviceInput
from ellsa_ros.nodes.messages import RELIABLE_QOS, SENSOR_QOS, audio_msg

# event kind -> what the arm is doing after it
ARM_STATE = {"action_chunk_start": "acting", "action_chunk_done": "idle", "action_halt": "holding",
             "rejection": "holding (rejected)", "task_done": "done", "policy_failing": "holding (policy failing)"}


@dataclass
class ConsoleState:
    """Fed from the ROS thread; read by the screen. `t` is the engine clock in events."""
    conversation: deque[str] = field(default_factory=lambda: deque(maxlen=500))
    events: deque[str] = field(default_factory=lambda: deque(maxlen=500))
    written: dict[str, int] = field(default_factory=lambda: {"conversation": 0, "events": 0})
    arm: str = "idle"
    stale: set[str] = field(default_factory=set)
    muted: bool = False
    listening: bool = False

    def add(self, pane: str, line: str) -> None:
        """Appends to `pane` ("conversation" or "events"); `written` counts every line ever added."""
        getattr(self, pane).append(line)
        self.written[pane] += 1

    def unseen(self, pane: str, seen: int) -> list[str]:
        """The lines of `pane` added after the first `seen` (those still kept)."""
        lines = list(getattr(self, pane))
        return lines[max(0, len(lines) - (self.written[pane] - seen)):]

    def on_event(self, event: dict) -> None:
        """One decoded event from the `events` topic."""
        kind, t = event.get("kind", "?"), float(event.get("t", 0.0))
        detail = {k: v for k, v in event.items() if k not in ("kind", "t")}
        self.add("events", f"{t:8.2f}  {kind}  {json.dumps(detail) if detail else ''}".rstrip())
        if kind == "user_transcript":
            self.add("conversation", f"you ({event.get('source', 'asr')}): {event.get('text', '')}")
        elif kind == "robot_speech_cut":
            self.add("conversation", f"robot: (cut: {event.get('reason', '')})")
        elif kind == "stale_input":
            self.stale.add(event.get("stream", "?"))
        elif kind == "input_recovered":
            self.stale.discard(event.get("stream", "?"))
        elif kind == "policy_failing":
            self.add("conversation", f"(the policy has failed {event.get('failures', '?')} blocks in a row: "
                                     f"{event.get('error', '')})")
        if kind == "action_halt":
            self.arm = f"holding ({event.get('reason', '')})"
        elif kind in ARM_STATE:
            self.arm = ARM_STATE[kind]

    def on_robot_said(self, text: str) -> None:
        self.add("conversation", f"robot: {text}")

    @property
    def status(self) -> str:
        stale = f"   stale: {', '.join(sorted(self.stale))}" if self.stale else ""
        flags = ("   muted" if self.muted else "") + ("   listening" if self.listening else "")
        return f"arm: {self.arm}{stale}{flags}"


class ConsoleLink(Node):
    def __init__(self, policy_node: str = "policy", on_change: Callable[[], None] | None = None,
                 context: Context | None = None) -> None:
        super().__init__("console", context=context)
        self.state = ConsoleState()
        self.on_change = on_change or (lambda: None)
        self.instruction_pub = self.create_publisher(String, "instruction", RELIABLE_QOS)
        self.audio_pub = self.create_publisher(Int16MultiArray, "audio", SENSOR_QOS)
        self.create_subscription(String, "transcript", self.transcript_callback, RELIABLE_QOS)
        self.create_subscription(String, "events", self.events_callback, RELIABLE_QOS)
        self.stop_client = self.create_client(Trigger, f"{policy_node}/stop")
        self.reset_client = self.create_client(Trigger, f"{policy_node}/reset")
        self.mute_client = self.create_client(SetBool, f"{policy_node}/mute")
        self.microphone: DeviceInput | None = None

    def transcript_callback(self, msg: String) -> None:
        self.state.on_robot_said(msg.data)
        self.on_change()

    def events_callback(self, msg: String) -> None:
        try:
            self.state.on_event(json.loads(msg.data))
        except (ValueError, AttributeError):
            self.state.add("events", f"(not an event: {msg.data[:80]!r})")
        self.on_change()

    def send(self, text: str) -> None:
        """A typed instruction."""
        text = text.strip()
        if text:
            self.instruction_pub.publish(String(data=text))

    def stop(self) -> None:
        self._call(self.stop_client, Trigger.Request())

    def reset(self) -> None:
        self._call(self.reset_client, Trigger.Request())

    def mute(self, on: bool) -> None:
        self.state.muted = on
        self._call(self.mute_client, SetBool.Request(data=on))

    def listen(self, on: bool, device: str = "", sample_rate: int = 16000) -> None:
        """Streams the operator's microphone to `audio` (spoken instructions) while on."""
        if on and self.microphone is None:
            self.microphone = DeviceInput(device, sample_rate, sample_rate // 50, 1, self._frame)
            self.microphone.start()
        elif not on and self.microphone is not None:
            self.microphone.close()
            self.microphone = None
        self.state.listening = self.microphone is not None

    def _frame(self, frame: np.ndarray) -> None:
        self.audio_pub.publish(audio_msg(frame))

    def _call(self, client, request) -> None:
        if not client.service_is_ready():
            self.state.add("events", f"(service {client.srv_name} is not available)")
            self.on_change()
            return
        client.call_async(request)

    def destroy_node(self) -> None:
        self.listen(False)
        super().destroy_node()
