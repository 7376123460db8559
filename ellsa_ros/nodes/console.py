"""`ellsa talk`: the teleoperator console, a terminal UI over the policy node's topics.

Type an instruction and press Enter. F5 stops the arm, F6 starts a new episode, F7 mutes
the robot's voice, F8 streams this machine's microphone to the robot (spoken instructions).
The conversation (what you said, as typed or as the robot heard it, and what it said), the
arm's state and every event are shown live.
"""
from __future__ import annotations

import argparse
import threading


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--policy-node", default="policy", help="name of the policy node (its services)")
    parser.add_argument("--mic-device", default="", help="microphone for F8 (name or index; '' default)")


def run(args: argparse.Namespace) -> int:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from textual.app import App, ComposeResult
    from textual.binding import Binding
    from textual.containers import Horizontal
    from textual.widgets import Footer, Input, Log, Static

    from ellsa_ros.nodes.console_link import ConsoleLink
    from ellsa_ros.nodes.dds import configure_dds

    class Console(App):
        CSS = "Log { width: 1fr; border: round $accent; } #status { height: 1; } Input { dock: bottom; }"
        BINDINGS = [Binding("f5", "stop", "stop arm"), Binding("f6", "reset", "new episode"),
                    Binding("f7", "mute", "mute"), Binding("f8", "listen", "microphone"),
                    Binding("ctrl+q", "quit", "quit")]

        def __init__(self, link: ConsoleLink) -> None:
            super().__init__()
            self.link = link
            self._seen = {"conversation": 0, "events": 0}

        def compose(self) -> ComposeResult:
            yield Static(self.link.state.status, id="status")
            with Horizontal():
                yield Log(id="conversation")
                yield Log(id="events")
            yield Input(placeholder="instruction for the robot (Enter sends)")
            yield Footer()

        def refresh_state(self) -> None:
            """Called on the UI thread whenever the link saw something new."""
            s = self.link.state
            self.query_one("#status", Static).update(s.status)
            for pane in ("conversation", "events"):
                written = s.written[pane]
                self.query_one(f"#{pane}", Log).write_lines(s.unseen(pane, self._seen[pane]))
                self._seen[pane] = written

        def on_input_submitted(self, event: Input.Submitted) -> None:
            self.link.send(event.value)
            event.input.value = ""

        def action_stop(self) -> None:
            self.link.stop()

        def action_reset(self) -> None:
            self.link.reset()

        def action_mute(self) -> None:
            self.link.mute(not self.link.state.muted)
            self.refresh_state()

        def action_listen(self) -> None:
            try:
                self.link.listen(not self.link.state.listening, args.mic_device)
            except OSError as e:
                self.link.state.add("events", f"(microphone: {e})")
            self.refresh_state()

    configure_dds()
    rclpy.init()
    link = ConsoleLink(args.policy_node)
    app = Console(link)
    link.on_change = lambda: app.call_from_thread(app.refresh_state) if app.is_running else None
    executor = SingleThreadedExecutor()
    executor.add_node(link)
    spinner = threading.Thread(target=executor.spin, daemon=True, name="ellsa-console-ros")
    spinner.start()
    try:
        app.run()
    finally:
        executor.shutdown()
        spinner.join(timeout=5.0)   # rclpy must not be torn down under a spinning thread
        link.destroy_node()
        rclpy.try_shutdown()
    return 0
