"""Login throttling, shared by `POST /v1/auth/login` and the dashboard's login form.

Two budgets, both sliding windows (`core.ratelimit`, in Redis when configured so every process
counts together): attempts per client address (`LOGIN_ATTEMPTS_PER_MINUTE`), which stops one
address spraying passwords over many accounts; and failures per account
(`LOGIN_FAILURES_PER_ACCOUNT` within `LOGIN_FAILURE_WINDOW_MINUTES`), which stops a guessing
run spread over many addresses. An account over its budget is refused before its password is
checked, so a refusal costs no hashing and says nothing about the password.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import TypeVar

from starlette.requests import Request

from stealth_recovery.core.errors import RateLimited, Unauthorized
from stealth_recovery.core.ratelimit import Limiter, app_limiter, client_address
from stealth_recovery.core.settings import get_settings

T = TypeVar("T")


def _address_limiter(request: Request) -> Limiter:
    settings = get_settings()
    return app_limiter(
        request, "login-address", limit=settings.login_attempts_per_minute, window_seconds=60.0
    )


def _account_limiter(request: Request) -> Limiter:
    settings = get_settings()
    return app_limiter(
        request,
        "login-account",
        limit=settings.login_failures_per_account,
        window_seconds=settings.login_failure_window_minutes * 60.0,
    )


def _account_key(email: str) -> str:
    # Hashed: rate-limit keys (and Redis) never hold a customer's address in clear.
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()


def _refuse(wait: float) -> RateLimited:
    seconds = max(1, round(wait))
    return RateLimited(f"too many login attempts; try again in {seconds} seconds", wait)


def throttled_login(request: Request, email: str, check: Callable[[], T]) -> T:
    """Run `check` (the password check) unless a budget is spent; count a failure.

    Raises `RateLimited` (429, with the wait) before `check` runs when the client address or
    the account is over its budget; re-raises `Unauthorized` from `check` after counting it
    against the account.
    """
    wait = _address_limiter(request).hit(client_address(request))
    if wait is not None:
        raise _refuse(wait)
    account = _account_key(email)
    accounts = _account_limiter(request)
    wait = accounts.wait(account)
    if wait is not None:
        raise _refuse(wait)
    try:
        return check()
    except Unauthorized:
        accounts.hit(account)
        raise
