"""Imports every model so that `Base.metadata` is complete (Alembic, tests)."""

from stealth_recovery.auth.idempotency import IdempotencyKey
from stealth_recovery.auth.models import ApiKey, PasswordReset, RegistrationInvite, User
from stealth_recovery.core.database import Base
from stealth_recovery.counters.models import DailyCount
from stealth_recovery.integrations.models import StripeConnection
from stealth_recovery.notifications.models import NotificationLog, OutboxMessage
from stealth_recovery.organizations.models import Organization
from stealth_recovery.payments.models import FailureEvent, PspEvent, Transaction
from stealth_recovery.recovery.models import RecoveryAttempt
from stealth_recovery.retry.models import RetryPolicy
from stealth_recovery.webhooks.models import (
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)

__all__ = [
    "ApiKey",
    "Base",
    "DailyCount",
    "FailureEvent",
    "IdempotencyKey",
    "NotificationLog",
    "Organization",
    "OutboxMessage",
    "PasswordReset",
    "PspEvent",
    "RecoveryAttempt",
    "RegistrationInvite",
    "RetryPolicy",
    "StripeConnection",
    "Transaction",
    "User",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookEndpoint",
    "WebhookEvent",
]
