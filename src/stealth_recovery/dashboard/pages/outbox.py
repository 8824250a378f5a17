"""The local outbox: the messages it kept instead of sending."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import HTMLResponse

from stealth_recovery.core.database import SessionDep
from stealth_recovery.core.settings import get_settings
from stealth_recovery.dashboard import repository
from stealth_recovery.dashboard.page import Viewer, page_router, render
from stealth_recovery.notifications.models import Channel
from stealth_recovery.notifications.outbox import outbox_channels

router = page_router()


OUTBOX_PAGE_SIZE = 50


@router.get("/outbox", response_class=HTMLResponse)
def outbox(
    request: Request, session: SessionDep, viewer: Viewer, channel: str = Channel.email.value
) -> HTMLResponse:
    """Messages the local outbox kept instead of sending, per channel, newest first."""
    channel = channel if channel in {c.value for c in Channel} else Channel.email.value
    return render(
        request,
        viewer,
        "outbox.html",
        {
            "active": "outbox",
            "channel": channel,
            "channels": [c.value for c in Channel],
            "counts": repository.outbox_counts(session, organization_id=viewer.organization_id),
            "messages": repository.outbox_messages(
                session,
                organization_id=viewer.organization_id,
                channel=channel,
                limit=OUTBOX_PAGE_SIZE,
            ),
            "routed_here": sorted(outbox_channels(get_settings())),
            "page_size": OUTBOX_PAGE_SIZE,
        },
    )
