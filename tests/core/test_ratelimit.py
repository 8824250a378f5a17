"""Rate limits per real client address: one limit across every API process sharing Redis, and
an address behind a proxy only as `TRUSTED_PROXIES` allows."""

from __future__ import annotations

import uuid

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session
from starlette.requests import Request

from stealth_recovery.app import create_app
from stealth_recovery.core.ratelimit import (
    RedisSlidingWindowLimiter,
    SlidingWindowLimiter,
    client_address,
)
from stealth_recovery.core.settings import SettingsError, get_settings, load_settings
from tests.support.builders import make_account, make_attempt


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


def _request(peer: str, forwarded: list[str] | None = None) -> Request:
    headers = [(b"x-forwarded-for", value.encode()) for value in forwarded or []]
    return Request({"type": "http", "client": (peer, 50000), "headers": headers})


class TestClientAddress:
    def test_without_trusted_proxies_the_peer_is_the_client_whatever_the_header(self) -> None:
        assert client_address(_request("203.0.113.9", ["198.51.100.1"])) == "203.0.113.9"

    def test_behind_a_trusted_proxy_the_address_it_saw_is_the_client(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1")
        get_settings.cache_clear()
        # A client forging its own X-Forwarded-For: the proxy appends the real address on the
        # right, and only that one counts.
        request = _request("10.0.0.2", ["6.6.6.6, 198.51.100.7"])
        assert client_address(request) == "198.51.100.7"
        # Two trusted hops (a CDN edge inside 10/8, then the local proxy)
        request = _request("127.0.0.1", ["198.51.100.8, 10.1.2.3"])
        assert client_address(request) == "198.51.100.8"
        # Headers repeated on separate lines are one list
        request = _request("127.0.0.1", ["6.6.6.6", "198.51.100.9"])
        assert client_address(request) == "198.51.100.9"

    def test_a_peer_that_is_not_a_trusted_proxy_cannot_choose_its_address(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("TRUSTED_PROXIES", "10.0.0.0/8")
        get_settings.cache_clear()
        assert client_address(_request("203.0.113.9", ["198.51.100.1"])) == "203.0.113.9"

    def test_garbage_in_the_chain_stops_at_the_last_real_hop(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("TRUSTED_PROXIES", "10.0.0.1")
        get_settings.cache_clear()
        assert client_address(_request("10.0.0.1", ["not-an-ip"])) == "10.0.0.1"
        assert client_address(_request("10.0.0.1", ["[2001:db8::5]:443"])) == "2001:db8::5"

    def test_a_bad_setting_is_refused_at_start(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("TRUSTED_PROXIES", "10.0.0.0/8,proxy.internal")
        with pytest.raises(SettingsError, match="TRUSTED_PROXIES"):
            load_settings()


class TestBudgetsPerRealClient:
    def test_behind_a_proxy_one_customer_cannot_spend_anothers_budget(
        self, db: Session, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # Given the service behind a trusted proxy, 3 pay-link lookups a minute per client
        monkeypatch.setenv("TRUSTED_PROXIES", "127.0.0.1")
        monkeypatch.setenv("TOKEN_RATE_LIMIT_PER_MINUTE", "3")
        get_settings.cache_clear()
        token = make_attempt(db, make_account(db).organization).token
        client = TestClient(create_app(), client=("127.0.0.1", 40000))

        def open_as(address: str, forged: str = "") -> int:
            chain = f"{forged}, {address}" if forged else address
            return client.get(f"/pay/{token}", headers={"X-Forwarded-For": chain}).status_code

        # When one customer spends its budget, then forges other addresses to the left
        spent = [open_as("198.51.100.1") for _ in range(3)]
        forged = [open_as("198.51.100.1", forged=f"192.0.2.{n}") for n in range(3)]
        # Then it stays refused, and another customer behind the same proxy is not affected
        assert spent == [200, 200, 200]
        assert forged == [429, 429, 429]
        assert open_as("198.51.100.2") == 200

    def test_without_the_setting_a_forged_header_moves_no_budget(
        self, db: Session, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("TOKEN_RATE_LIMIT_PER_MINUTE", "2")
        get_settings.cache_clear()
        token = make_attempt(db, make_account(db).organization).token
        client = TestClient(create_app())
        codes = [
            client.get(f"/pay/{token}", headers={"X-Forwarded-For": f"192.0.2.{n}"}).status_code
            for n in range(3)
        ]
        assert codes == [200, 200, 429]
