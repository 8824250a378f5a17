"""The pay flow's one rate limit: every pay-link lookup spends the client address's budget."""

from __future__ import annotations

from fastapi import Request

from stealth_recovery.core.errors import RateLimited
from stealth_recovery.core.ratelimit import client_address, token_limiter


def limit_token_lookups(request: Request) -> None:
    """Pay-link lookups per client address (429 beyond `TOKEN_RATE_LIMIT_PER_MINUTE`).

    The pay page, its pay action, the Checkout return page and the JSON twin share one window,
    and it is counted before a database session is opened.
    """
    wait = token_limiter(request).hit(client_address(request))
    if wait is not None:
        raise RateLimited(
            f"too many requests; try again in {max(1, round(wait))} seconds", retry_after=wait
        )
