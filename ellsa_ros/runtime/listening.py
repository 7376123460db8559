"""A policy wrapper that listens: it transcribes the block's finished utterances (on the
worker thread, never on the control loop) and hands the text to the policy it wraps as
`block.heard`. Wrappers are policies too, as in openpi's runtime.
"""
from __future__ import annotations

from typing import Any

from .blocks import Block
from .hearing import Transcriber
from .policy import Decision, Policy


class ListeningPolicy:
    def __init__(self, inner: Policy, transcriber: Transcriber, prompt: str = "") -> None:
        self.inner = inner
        self.transcriber = transcriber
        self.prompt = prompt   # vocabulary hints for ASR, e.g. the scene's object names

    def reset(self) -> None:
        self.inner.reset()

    def step(self, block: Block) -> Decision:
        texts = [self.transcriber.transcribe(u, self.prompt).strip() for u in block.utterances]
        heard = " ".join(t for t in texts if t)
        if heard:
            block.heard = f"{block.heard} {heard}".strip()
        decision = self.inner.step(block)
        if heard and not decision.heard:
            decision.heard = heard
        return decision

    def __getattr__(self, name: str) -> Any:
        # Pass through what the inner policy declares (latency_s, metadata).
        return getattr(self.inner, name)
