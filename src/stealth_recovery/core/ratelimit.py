"""Per-client sliding-window rate limits: in Redis when configured, else in process memory.

They stop anyone enumerating pay-link tokens or guessing passwords from one address. With
`REDIS_URL` every API process counts in the same Redis sorted set per key, so a limit holds
however many processes serve; without it (the embedded default, one process) the count is kept
in memory. The client is the peer address, or behind a proxy listed in `TRUSTED_PROXIES` the
address that proxy saw (`client_address`), so a forged `X-Forwarded-For` moves no budget.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, ip_address
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

    def wait(self, key: str) -> float | None:
        """Without counting: None when a hit would be allowed, else the seconds to wait."""
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
        return self._check(key, count=True)

    def wait(self, key: str) -> float | None:
        """Without counting: None when a hit would be allowed, else the seconds to wait."""
        return self._check(key, count=False)

    def _check(self, key: str, *, count: bool) -> float | None:
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
            if count:
                hits.append(now)
            return None

    def _forget_idle(self, now: float) -> None:
        # Keys whose last hit left the window hold no information; drop them to bound memory.
        idle = [k for k, v in self._hits.items() if not v or v[-1] <= now - self.window_seconds]
        for key in idle:
            del self._hits[key]


# Drop hits older than the window, then count; add this hit only when under the limit (and
# ARGV[4] asks to count). Redis runs a script atomically, and its own clock (TIME) keeps every
# API host on one time line.
_SLIDING_WINDOW_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local window = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return tostring(tonumber(oldest[2]) + window - now)
end
if ARGV[4] == '1' then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], math.ceil(window * 1000))
end
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
        """Count one hit; None when allowed, else the seconds until the next hit is allowed."""
        return self._check(key, count=True)

    def wait(self, key: str) -> float | None:
        """Without counting: None when a hit would be allowed, else the seconds to wait."""
        return self._check(key, count=False)

    def _check(self, key: str, *, count: bool) -> float | None:
        try:
            wait = self._script(
                keys=[self.prefix + key],
                args=[self.window_seconds, self.limit, uuid.uuid4().hex, "1" if count else "0"],
            )
        except redis.RedisError as exc:
            # Fail open: a customer must still be able to pay while Redis is away.
            log.warning("rate_limit_unavailable", error=type(exc).__name__)
            return None
        return None if wait is None else max(float(wait), 0.0)


def app_limiter(request: Request, name: str, *, limit: int, window_seconds: float) -> Limiter:
    """The application's limiter called `name` (one per app, so tests start from zero).

    In Redis when `REDIS_URL` is set (keys `sr:ratelimit:<name>:<key>`), else in memory.
    """
    state = request.app.state
    limiters: dict[str, Limiter] | None = getattr(state, "limiters", None)
    if limiters is None:
        limiters = state.limiters = {}
    limiter = limiters.get(name)
    if limiter is None:
        settings = get_settings()
        if settings.redis_url:
            limiter = RedisSlidingWindowLimiter(
                client=redis.Redis.from_url(settings.redis_url, socket_timeout=1),
                limit=limit,
                window_seconds=window_seconds,
                prefix=f"sr:ratelimit:{name}:",
            )
        else:
            limiter = SlidingWindowLimiter(limit=limit, window_seconds=window_seconds)
        limiters[name] = limiter
    return limiter


def token_limiter(request: Request) -> Limiter:
    """Pay-link lookups: `TOKEN_RATE_LIMIT_PER_MINUTE` per client address."""
    return app_limiter(
        request, "paylink", limit=get_settings().token_rate_limit_per_minute, window_seconds=60.0
    )


def _parse(value: str) -> IPv4Address | IPv6Address | None:
    value = value.strip()
    if value.startswith("[") and "]" in value:  # "[2001:db8::1]:443"
        value = value[1 : value.index("]")]
    elif value.count(":") == 1:  # "203.0.113.7:443"
        value = value.split(":", 1)[0]
    try:
        return ip_address(value)
    except ValueError:
        return None


def client_address(request: Request) -> str:
    """The address of the client that made the request.

    The TCP peer, unless the peer is a proxy listed in `TRUSTED_PROXIES`: then `X-Forwarded-For`
    is read from the right (each proxy appends the address it saw) and the first address that
    is not itself a trusted proxy is the client. Anything to the left of it was written by the
    client and is ignored, so a forged header cannot choose whose budget a request spends.
    """
    peer = request.client.host if request.client else "unknown"
    networks = get_settings().trusted_proxy_networks
    if not networks:
        return peer
    peer_ip = _parse(peer)
    if peer_ip is None or not any(peer_ip in n for n in networks):
        return peer
    hops = [
        hop
        for header in request.headers.getlist("x-forwarded-for")
        for hop in header.split(",")
        if hop.strip()
    ]
    client = peer_ip
    for hop in reversed(hops):
        hop_ip = _parse(hop)
        if hop_ip is None:
            break  # garbage in the chain: the last good hop is the best we know
        client = hop_ip
        if not any(hop_ip in n for n in networks):
            break
    return str(client)
