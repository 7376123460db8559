"""Bookkeeping of dropped inputs: each kind is logged once, then only its running count.

A node that drops malformed messages must neither flood its log (a misconfigured camera
sends 30 bad frames a second) nor hide the problem: the first drop of each stream is
logged with its reason, later ones as a count at most every `period_s`.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field


@dataclass
class DropLog:
    period_s: float = 5.0
    counts: dict[str, int] = field(default_factory=dict)
    _last_log: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def drop(self, stream: str, reason: str) -> str | None:
        """Called once per dropped message of `stream`. Returns the line to log now, or None."""
        now = time.monotonic()
        with self._lock:
            n = self.counts.get(stream, 0) + 1
            self.counts[stream] = n
            last = self._last_log.get(stream)
            if last is not None and now - last < self.period_s:
                return None
            self._last_log[stream] = now
        if n == 1:
            return f"dropped an input on {stream}: {reason}"
        return f"dropped {n} inputs on {stream} so far; the latest: {reason}"
