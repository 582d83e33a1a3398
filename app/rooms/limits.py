"""Per-address rate limits and display-name rules."""

from __future__ import annotations

import time
import unicodedata
from typing import Callable

NAME_MAX = 24


class RateLimiter:
    """A token bucket per key (client address): ``per_minute`` refill, burst of the same size."""

    def __init__(self, per_minute: float, clock: Callable[[], float] = time.monotonic, max_keys: int = 10000):
        self.per_minute = per_minute
        self.rate = per_minute / 60.0
        self.burst = max(1.0, per_minute)
        self.clock = clock
        self.max_keys = max_keys
        self.buckets: dict[str, tuple[float, float]] = {}

    def take(self, key: str) -> float:
        """0 if allowed (one token taken), else the seconds until the next token."""
        now = self.clock()
        tokens, t = self.buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - t) * self.rate)
        if tokens < 1:
            self.buckets[key] = (tokens, now)
            return (1 - tokens) / self.rate
        if len(self.buckets) >= self.max_keys and key not in self.buckets:
            self._prune(now)
        self.buckets[key] = (tokens - 1, now)
        return 0.0

    def _prune(self, now: float) -> None:
        """Forget keys whose bucket has refilled (they are as new)."""
        full = [k for k, (tok, t) in self.buckets.items() if tok + (now - t) * self.rate >= self.burst]
        for k in full:
            del self.buckets[k]


def clean_name(name: object) -> str:
    """Trimmed display name without control characters; '' if none. Raises ValueError with a
    message naming the limit. HTML is kept verbatim: it is data, rendered as text."""
    if name is None:
        return ""
    if not isinstance(name, str):
        raise ValueError(f"name must be a string of at most {NAME_MAX} characters")
    name = "".join(c for c in name if unicodedata.category(c) not in ("Cc", "Cf", "Zl", "Zp")).strip()
    if len(name) > NAME_MAX:
        raise ValueError(f"name must be at most {NAME_MAX} characters, got {len(name)}")
    return name
