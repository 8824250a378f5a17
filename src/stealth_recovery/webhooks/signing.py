"""Standard Webhooks signatures (the `standardwebhooks` library) and signing secrets."""

from __future__ import annotations

import base64
import secrets
from datetime import datetime

from standardwebhooks.webhooks import Webhook

SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    """A signing secret in the Standard Webhooks form: `whsec_` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def signature_header(secrets_in_force: list[str], *, msg_id: str, at: datetime, body: str) -> str:
    """The `webhook-signature` value: one `v1,…` per secret in force (two during a rotation's
    overlap), space-separated, so a receiver holding either secret verifies the message."""
    return " ".join(
        Webhook(secret).sign(msg_id=msg_id, timestamp=at, data=body) for secret in secrets_in_force
    )
