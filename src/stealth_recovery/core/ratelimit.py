"""Per-client sliding-window rate limits, kept in the memory of each process.

Good enough to stop enumerating pay-link tokens from one address: each API process counts on
its own, so N processes allow up to N × the limit. Behind a proxy, run uvicorn with
`--proxy-headers` (and `--forwarded-allow-ips`) so the client address is the real one.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from starlette.requests import Request

from stealth_recovery.core.settings import get_settings


@dataclass
class SlidingWindowLimiter:
    """At most `limit` hits per key within any `window_seconds` span."""

    limit: int
    window_seconds: float = 60.0
    _hits: dict[str, deque[float]] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _calls: int = field(default=0, repr=False)

    def hit(self, key: str) -> float | None:
        """Count one hit; None when allowed, else the seconds until the next hit is allowed."""
        # Elapsed time, not a timestamp: a monotonic clock never jumps with wall-clock changes.
        now = time.monotonic()
        with self._lock:
            self._calls += 1
            if self._calls % 1024 == 0:
                self._forget_idle(now)
            hits = self._hits.setdefault(key, deque())
            while hits and hits[0] <= now - self.window_seconds:
                hits.popleft()
            if len(hits) >= self.limit:
                return max(hits[0] + self.window_seconds - now, 0.0)
            hits.append(now)
            return None

    def retry_after_header(self, wait: float) -> str:
        return str(max(1, math.ceil(wait)))

    def _forget_idle(self, now: float) -> None:
        # Keys whose last hit left the window hold no information; drop them to bound memory.
        idle = [k for k, v in self._hits.items() if not v or v[-1] <= now - self.window_seconds]
        for key in idle:
            del self._hits[key]


def token_limiter(request: Request) -> SlidingWindowLimiter:
    """The application's pay-link lookup limiter (one per app, so tests start from zero)."""
    state = request.app.state
    limiter: SlidingWindowLimiter | None = getattr(state, "token_limiter", None)
    if limiter is None:
        limiter = SlidingWindowLimiter(limit=get_settings().token_rate_limit_per_minute)
        state.token_limiter = limiter
    return limiter


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"
