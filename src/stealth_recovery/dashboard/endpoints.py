"""The operators' dashboard: server-rendered pages under /dashboard, one router per page area.

What the pages share (the route class, rendering, flashes, who is looking) is `page.py`; each
area's routes are a module of `pages/`.
"""

from __future__ import annotations

from fastapi import APIRouter

from stealth_recovery.dashboard.pages import (
    account,
    attempts,
    login,
    outbox,
    overview,
    policies,
    static,
    team,
    webhooks,
)

PAGE_ROUTERS = tuple(
    area.router
    for area in (static, login, account, overview, attempts, outbox, policies, team, webhooks)
)

router = APIRouter()
for _page_router in PAGE_ROUTERS:
    router.include_router(_page_router)
