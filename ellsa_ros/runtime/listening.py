"""A policy wrapper that listens: it transcribes the block's finished utterances (on the
worker thread, never on the control loop) and hands the text to the policy it wraps as
`block.heard`. Wrappers are policies too, as in openpi's runtime.

An utterance the transcriber refuses (`Unintelligible`: a decoding loop, a transcript longer
than the audio could hold) never reaches the policy as text: the decision carries the reason
(the engine announces it) and, unless the policy speaks or refuses itself, the robot asks the
user to say it again.
"""
from __future__ import annotations

from typing import Any

from .blocks import Block
from .hearing import Transcriber, Unintelligible
from .policy import Decision, Policy

ASK_AGAIN = "Sorry, I did not catch that. Could you say it again?"


class ListeningPolicy:
    def __init__(self, inner: Policy, transcriber: Transcriber, prompt: str = "") -> None:
        self.inner = inner
        self.transcriber = transcriber
        self.prompt = prompt   # vocabulary hints for ASR, e.g. the scene's object names

    def listen_for(self, vocabulary: tuple[str, ...] | list[str]) -> None:
        """Called when the scene is known (a new task): its object names bias recognition."""
        self.prompt = ", ".join(dict.fromkeys(w.strip() for w in vocabulary if w.strip()))

    def reset(self) -> None:
        self.inner.reset()

    def step(self, block: Block) -> Decision:
        texts, refused = [], []
        for u in block.utterances:
            try:
                texts.append(self.transcriber.transcribe(u, self.prompt).strip())
            except Unintelligible as e:
                refused.append(e.reason)
        heard = " ".join(t for t in texts if t)
        if heard:
            block.heard = f"{block.heard} {heard}".strip()
        decision = self.inner.step(block)
        if heard and not decision.heard:
            decision.heard = heard
        if refused:
            decision.refused = (*decision.refused, *refused)
            if not heard and not decision.say and decision.reject is None:
                decision.say = ASK_AGAIN
        return decision

    def __getattr__(self, name: str) -> Any:
        # Pass through what the inner policy declares (latency_s, metadata).
        return getattr(self.inner, name)
