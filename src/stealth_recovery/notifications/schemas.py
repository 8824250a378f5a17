"""Answers of the delivery-status webhooks."""

from __future__ import annotations

from pydantic import BaseModel


class CallbackAck(BaseModel):
    """What a status callback did: one result per status it carried."""

    results: list[str]  # "updated", "unchanged" or "ignored", in the order received
