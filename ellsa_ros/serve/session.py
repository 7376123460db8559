"""One robot's session on the policy server: its own Policy instance, inbox and thread.

A session is created by a HELLO and owns a fresh Policy from the server's factory (so the
model state, the KV cache, belongs to that robot alone; a factory such as
`ModelPolicy.new_session` shares the weights, so a session costs its state only). It is
bound to the peer that opened it (`peer`: CURVE key or routing identity) and to the
connection it came on (`conn`), whose end closes it. Its thread builds the policy, answers WELCOME, then takes STEP
and RESET requests from its inbox in order; different robots' sessions run side by side.
Answers go back to the server's socket thread through the session's own PUSH socket (a
ZeroMQ socket belongs to one thread).
"""
from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass
from typing import Any, Callable

import zmq

from ..runtime.blocks import Block
from ..runtime.policy import Decision, Policy
from .codec import PolicySpec, decision_to_body
from .protocol import Envelope, ErrorCode, Kind, encode

log = logging.getLogger("ellsa.serve")


@dataclass
class Request:
    kind: Kind          # STEP or RESET
    id: int | None
    t_recv: float       # server clock when the request arrived
    block: Block | None = None


class Session:
    """Created by the server's socket thread on HELLO; `close()` ends it after the current request."""

    def __init__(self, ctx: zmq.Context, reply_endpoint: str, routing_id: bytes, robot: str, token: str,
                 make_policy: Callable[[], Policy], spec: PolicySpec, server_id: str,
                 clock: Callable[[], float], hello: Request, max_queued: int,
                 peer: bytes = b"", conn: int | None = None) -> None:
        self.routing_id, self.robot, self.token = routing_id, robot, token
        self.peer, self.conn = peer, conn
        self.last_seen = hello.t_recv
        self._ctx, self._reply_endpoint = ctx, reply_endpoint
        self._make_policy, self._spec, self._server_id, self._clock = make_policy, spec, server_id, clock
        self._inbox: queue.Queue[Request | None] = queue.Queue(maxsize=max_queued)
        self._hello = hello
        self.thread = threading.Thread(target=self._run, name=f"ellsa-session-{robot}", daemon=True)
        self.thread.start()

    def offer(self, request: Request) -> bool:
        """Queues a request; False when `max_queued` are already waiting (the caller answers BUSY)."""
        try:
            self._inbox.put_nowait(request)
            return True
        except queue.Full:
            return False

    def close(self) -> None:
        # The sentinel must get in even when the inbox is full: drop waiting requests first.
        while True:
            try:
                self._inbox.put_nowait(None)
                return
            except queue.Full:
                try:
                    self._inbox.get_nowait()
                except queue.Empty:
                    pass

    def _run(self) -> None:
        try:
            push = self._ctx.socket(zmq.PUSH)
        except zmq.ContextTerminated:
            return   # the server stopped before this session began
        push.linger = 0
        push.connect(self._reply_endpoint)
        try:
            try:
                policy = self._make_policy()
                policy.reset()
            except Exception as e:  # noqa: BLE001 - answered to the robot, logged here
                log.exception("session %s: the policy could not be created", self.robot)
                self._send(push, Kind.ERROR, self._hello, {"code": ErrorCode.POLICY.value,
                                                            "message": f"policy not created: {type(e).__name__}: {e}"})
                return
            self._send(push, Kind.WELCOME, self._hello, {"spec": self._spec.to_body(), "server": self._server_id,
                                                          "robot": self.robot})
            while (req := self._inbox.get()) is not None:
                self._answer(push, policy, req)
        except zmq.ContextTerminated:
            pass   # the server stopped while this request was running: nobody to answer
        finally:
            push.close()

    def _answer(self, push: zmq.Socket, policy: Policy, req: Request) -> None:
        t0 = self._clock()
        try:
            if req.kind is Kind.RESET:
                policy.reset()
                self._send(push, Kind.RESET_OK, req, {})
                return
            decision = policy.step(req.block)
            if not isinstance(decision, Decision):
                raise TypeError(f"policy returned {type(decision).__name__}, not Decision")
            body = decision_to_body(decision)
            body["infer_s"] = self._clock() - t0
            self._send(push, Kind.DECISION, req, body)
        except zmq.ContextTerminated:
            raise
        except Exception as e:  # noqa: BLE001 - the robot holds on this error; the server serves on
            log.warning("session %s: request %s failed: %s: %s", self.robot, req.id, type(e).__name__, e)
            self._send(push, Kind.ERROR, req, {"code": ErrorCode.POLICY.value, "message": f"{type(e).__name__}: {e}"})

    def _send(self, push: zmq.Socket, kind: Kind, req: Request, body: dict[str, Any]) -> None:
        body["t_recv"] = req.t_recv
        env = Envelope(kind, body, req.id, self.token, 0.0)
        try:
            env.t = self._clock()
            frames = encode(env)
        except (TypeError, ValueError, OverflowError) as e:
            env = Envelope(Kind.ERROR, {"code": ErrorCode.POLICY.value, "t_recv": req.t_recv,
                                        "message": f"answer could not be encoded: {e}"}, req.id, self.token,
                           self._clock())
            frames = encode(env)
        push.send_multipart([self.routing_id, *frames])
