"""Retry policies: validation, one active per organization, and the default."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.orm import Session

from stealth_recovery.core.errors import InvalidInput, NotFound
from stealth_recovery.notifications.models import Channel
from stealth_recovery.recovery.schedule import (
    MAX_BACKOFF_MULTIPLIER,
    MAX_DELAY_MINUTES,
    EffectivePolicy,
    Schedule,
)
from stealth_recovery.retry import repository
from stealth_recovery.retry.models import RetryPolicy


class PolicyNotFound(NotFound):
    type = "policy_not_found"


class PolicyInvalid(InvalidInput):
    """A policy that breaks a rule (`validate`); names the field."""

    type = "policy_invalid"


DEFAULT_SCHEDULE = Schedule(
    max_retries=3, initial_delay_minutes=60, backoff_multiplier=2.0, max_delay_minutes=1440
)
DEFAULT_CHANNELS: tuple[str, ...] = (Channel.email,)
DEFAULT_POLICY_NAME = "Default (no active policy)"


def validate(
    *,
    name: str,
    max_retries: int,
    initial_delay_minutes: int,
    backoff_multiplier: float,
    max_delay_minutes: int,
    enabled_channels: Sequence[str],
) -> list[str]:
    """Check every rule of a policy; return the channels normalised (order kept, no repeats)."""
    if not 1 <= len(name.strip()) <= 128:
        raise PolicyInvalid("name", "must be 1 to 128 characters")
    if not 1 <= max_retries <= 10:
        raise PolicyInvalid("max_retries", "must be between 1 and 10")
    if not 1 <= initial_delay_minutes <= MAX_DELAY_MINUTES:
        raise PolicyInvalid("initial_delay_minutes", f"must be between 1 and {MAX_DELAY_MINUTES}")
    if not 1 <= backoff_multiplier <= MAX_BACKOFF_MULTIPLIER:
        raise PolicyInvalid(
            "backoff_multiplier", f"must be between 1 and {MAX_BACKOFF_MULTIPLIER:g}"
        )
    if max_delay_minutes < initial_delay_minutes:
        raise PolicyInvalid("max_delay_minutes", "must be at least initial_delay_minutes")
    if max_delay_minutes > MAX_DELAY_MINUTES:
        raise PolicyInvalid("max_delay_minutes", f"must be at most {MAX_DELAY_MINUTES}")
    allowed = {c.value for c in Channel}
    channels: list[str] = []
    for channel in enabled_channels:
        if channel not in allowed:
            raise PolicyInvalid(
                "enabled_channels", f"unknown channel {channel!r}; use email, sms or whatsapp"
            )
        if channel not in channels:
            channels.append(channel)
    if not channels:
        raise PolicyInvalid("enabled_channels", "must name at least one channel")
    return channels


def create_policy(
    session: Session,
    *,
    organization_id: int,
    name: str,
    max_retries: int,
    initial_delay_minutes: int,
    backoff_multiplier: float,
    max_delay_minutes: int,
    enabled_channels: Sequence[str],
) -> RetryPolicy:
    """Create a policy and make it the organization's active one (the others are deactivated)."""
    channels = validate(
        name=name,
        max_retries=max_retries,
        initial_delay_minutes=initial_delay_minutes,
        backoff_multiplier=backoff_multiplier,
        max_delay_minutes=max_delay_minutes,
        enabled_channels=enabled_channels,
    )
    repository.deactivate_all(session, organization_id=organization_id)
    policy = RetryPolicy(
        organization_id=organization_id,
        name=name.strip(),
        max_retries=max_retries,
        initial_delay_minutes=initial_delay_minutes,
        backoff_multiplier=float(backoff_multiplier),
        max_delay_minutes=max_delay_minutes,
        enabled_channels=channels,
        is_active=True,
    )
    session.add(policy)
    session.flush()
    return policy


def get_policy(session: Session, *, organization_id: int, policy_id: int) -> RetryPolicy:
    policy = session.get(RetryPolicy, policy_id)
    if policy is None or policy.organization_id != organization_id:
        raise PolicyNotFound("retry policy not found")
    return policy


def activate_policy(session: Session, *, organization_id: int, policy_id: int) -> RetryPolicy:
    policy = get_policy(session, organization_id=organization_id, policy_id=policy_id)
    if not policy.is_active:
        repository.deactivate_all(session, organization_id=organization_id)
        session.flush()
        policy.is_active = True
        session.flush()
    return policy


def deactivate_policy(session: Session, *, organization_id: int, policy_id: int) -> RetryPolicy:
    """Deactivate (the row is kept). Without an active policy the default applies."""
    policy = get_policy(session, organization_id=organization_id, policy_id=policy_id)
    policy.is_active = False
    session.flush()
    return policy


def effective_policy(session: Session, *, organization_id: int) -> EffectivePolicy:
    active = repository.get_active(session, organization_id=organization_id)
    if active is None:
        return EffectivePolicy(
            policy_id=None,
            name=DEFAULT_POLICY_NAME,
            schedule=DEFAULT_SCHEDULE,
            enabled_channels=DEFAULT_CHANNELS,
        )
    return EffectivePolicy(
        policy_id=active.id,
        name=active.name,
        schedule=schedule_of(active),
        enabled_channels=tuple(active.enabled_channels),
    )


def schedule_of(row: RetryPolicy) -> Schedule:
    return Schedule(
        max_retries=row.max_retries,
        initial_delay_minutes=row.initial_delay_minutes,
        backoff_multiplier=row.backoff_multiplier,
        max_delay_minutes=row.max_delay_minutes,
    )
