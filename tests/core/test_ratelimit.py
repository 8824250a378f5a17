"""Pay-link lookups per client address: one limit across every API process sharing Redis."""

from __future__ import annotations

import uuid

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from stealth_recovery.app import create_app
from stealth_recovery.core.ratelimit import RedisSlidingWindowLimiter, SlidingWindowLimiter
from stealth_recovery.core.settings import get_settings
from tests.factories import make_account, make_attempt


class TestInMemory:
    def test_allows_the_limit_then_says_how_long_to_wait(self) -> None:
        limiter = SlidingWindowLimiter(limit=2, window_seconds=60)
        assert limiter.hit("1.2.3.4") is None
        assert limiter.hit("1.2.3.4") is None
        wait = limiter.hit("1.2.3.4")
        assert wait is not None and 59 < wait <= 60
        assert limiter.hit("5.6.7.8") is None


class TestRedis:
    def test_two_processes_share_one_count(self, redis_url: str) -> None:
        # Given two API processes' limiters on the same Redis
        prefix = f"test:{uuid.uuid4().hex}:"
        first, second = (
            RedisSlidingWindowLimiter(
                client=redis.Redis.from_url(redis_url), limit=3, prefix=prefix
            )
            for _ in range(2)
        )
        # When one address spreads its lookups over both
        results = [first.hit("9.9.9.9"), second.hit("9.9.9.9"), first.hit("9.9.9.9")]
        refused = second.hit("9.9.9.9")
        # Then the fourth is refused wherever it lands, and other addresses are unaffected
        assert results == [None, None, None]
        assert refused is not None and 59 < refused <= 60
        assert second.hit("8.8.8.8") is None

    def test_redis_away_lets_customers_through(self) -> None:
        unreachable = redis.Redis(host="127.0.0.1", port=1, socket_timeout=0.2)
        limiter = RedisSlidingWindowLimiter(client=unreachable, limit=1)
        assert [limiter.hit("1.1.1.1") for _ in range(3)] == [None, None, None]

    def test_the_pay_page_limit_holds_across_app_instances(
        self, db: Session, redis_url: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # Given two app instances configured with the same Redis and a limit of 4 a minute
        redis.Redis.from_url(redis_url).delete("sr:ratelimit:paylink:testclient")
        monkeypatch.setenv("REDIS_URL", redis_url)
        monkeypatch.setenv("TOKEN_RATE_LIMIT_PER_MINUTE", "4")
        get_settings.cache_clear()
        token = make_attempt(db, make_account(db).organization).token
        apps = [TestClient(create_app()), TestClient(create_app())]
        # When the same address opens the link twice on each, then once more
        codes = [apps[i % 2].get(f"/pay/{token}").status_code for i in range(5)]
        # Then the fifth is refused
        assert codes == [200, 200, 200, 200, 429]
        redis.Redis.from_url(redis_url).delete("sr:ratelimit:paylink:testclient")
