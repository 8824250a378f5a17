"""Errors about recovery attempts and their pay links; `type` is the error body's stable name."""

from __future__ import annotations

from stealth_recovery.core.errors import Conflict, Gone, NotFound


class AttemptNotFound(NotFound):
    type = "attempt_not_found"


class AttemptNotOpen(Conflict):
    """The attempt is final (completed, cancelled, expired): this action needs an open one."""

    type = "attempt_not_open"


class PayLinkNotFound(NotFound):
    type = "pay_link_not_found"


class PayLinkPaid(Gone):
    type = "pay_link_paid"


class PayLinkCancelled(Gone):
    type = "pay_link_cancelled"


class PayLinkExpired(Gone):
    type = "pay_link_expired"
