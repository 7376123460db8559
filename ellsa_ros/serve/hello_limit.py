"""`HelloLimit`: a token bucket per peer, so that no peer can churn sessions.

A HELLO builds a policy session (a thread, model state): a peer looping on HELLO would spend
the server on that. Each peer may send `burst` HELLOs at once and `per_s` a second after
that; one more is answered `rate_limited`. A peer is what the server binds sessions to (a
CURVE public key, or a ZeroMQ routing identity); peers whose bucket is full again are
forgotten, so the table holds only peers that said hello recently.
"""
from __future__ import annotations


class HelloLimit:
    """Called from the server's socket thread only."""

    def __init__(self, per_s: float, burst: int) -> None:
        if not per_s > 0 or burst < 1:
            raise ValueError(f"hello rate {per_s}/s must be > 0 and burst {burst} >= 1")
        self.per_s, self.burst = per_s, burst
        self._buckets: dict[bytes, tuple[float, float]] = {}   # peer -> (tokens, time of that count)

    def allow(self, peer: bytes, now: float) -> bool:
        """Takes one token for `peer`; False when it has none left (nothing is taken then)."""
        tokens = self._tokens(peer, now)
        if tokens < 1.0:
            self._buckets[peer] = (tokens, now)
            return False
        self._buckets[peer] = (tokens - 1.0, now)
        return True

    def forget_idle(self, now: float) -> None:
        """Drops peers whose bucket has refilled: they would be allowed a full burst anyway."""
        for peer in [p for p in self._buckets if self._tokens(p, now) >= self.burst]:
            del self._buckets[peer]

    def __len__(self) -> int:
        return len(self._buckets)

    def _tokens(self, peer: bytes, now: float) -> float:
        tokens, then = self._buckets.get(peer, (float(self.burst), now))
        return min(float(self.burst), tokens + max(0.0, now - then) * self.per_s)
