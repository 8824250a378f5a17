"""Answers of the delivery-status webhooks."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class CallbackAck(BaseModel):
    """What a status callback did: one result per status it carried."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"results": ["updated"]}]})

    # "updated", "unchanged", "held" (message not recorded yet) or "ignored", in order received
    results: list[str]
