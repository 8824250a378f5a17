"""Per-client sliding-window rate limits: in Redis when configured, else in process memory.

They stop anyone enumerating pay-link tokens from one address. With `REDIS_URL` every API
process counts in the same Redis sorted set per address, so the limit holds however many
processes serve; without it (the embedded default, one process) the count is kept in memory.
Behind a proxy, run uvicorn with `--proxy-headers` (and `--forwarded-allow-ips`) so the client
address is the real one.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

import redis
import structlog
from starlette.requests import Request

from stealth_recovery.core.settings import get_settings

log = structlog.get_logger(__name__)


class Limiter(Protocol):
    def hit(self, key: str) -> float | None:
        """Count one hit; None when allowed, else the seconds until the next hit is allowed."""
        ...


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

    def _forget_idle(self, now: float) -> None:
        # Keys whose last hit left the window hold no information; drop them to bound memory.
        idle = [k for k, v in self._hits.items() if not v or v[-1] <= now - self.window_seconds]
        for key in idle:
            del self._hits[key]


# Drop hits older than the window, then count; add this hit only when under the limit. Redis
# runs a script atomically, and its own clock (TIME) keeps every API host on one time line.
_SLIDING_WINDOW_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local window = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return tostring(tonumber(oldest[2]) + window - now)
end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('PEXPIRE', KEYS[1], math.ceil(window * 1000))
return false
"""


@dataclass
class RedisSlidingWindowLimiter:
    """The same sliding window, shared by every process that uses the same Redis."""

    client: redis.Redis
    limit: int
    window_seconds: float = 60.0
    prefix: str = "sr:ratelimit:"

    def __post_init__(self) -> None:
        self._script = self.client.register_script(_SLIDING_WINDOW_LUA)

    def hit(self, key: str) -> float | None:
        try:
            wait = self._script(
                keys=[self.prefix + key],
                args=[self.window_seconds, self.limit, uuid.uuid4().hex],
            )
        except redis.RedisError as exc:
            # Fail open: a customer must still be able to pay while Redis is away.
            log.warning("rate_limit_unavailable", error=type(exc).__name__)
            return None
        return None if wait is None else max(float(wait), 0.0)


def token_limiter(request: Request) -> Limiter:
    """The application's pay-link lookup limiter (one per app, so tests start from zero)."""
    state = request.app.state
    limiter: Limiter | None = getattr(state, "token_limiter", None)
    if limiter is None:
        settings = get_settings()
        if settings.redis_url:
            limiter = RedisSlidingWindowLimiter(
                client=redis.Redis.from_url(settings.redis_url, socket_timeout=1),
                limit=settings.token_rate_limit_per_minute,
            )
        else:
            limiter = SlidingWindowLimiter(limit=settings.token_rate_limit_per_minute)
        state.token_limiter = limiter
    return limiter


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"
