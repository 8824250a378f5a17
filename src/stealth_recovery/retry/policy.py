"""Retry policies: validation, one active per organization, and the default."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.orm import Session

from stealth_recovery.core.errors import InvalidInput, NotFound
from stealth_recovery.notifications.models import Channel
from stealth_recovery.organizations.repository import new_policy_stamp
from stealth_recovery.recovery.models import window_values
from stealth_recovery.recovery.schedule import (
    MAX_BACKOFF_MULTIPLIER,
    MAX_DELAY_MINUTES,
    EffectivePolicy,
    Schedule,
)
from stealth_recovery.recovery.windows import ALL_DAYS, SendWindow, day_set, parse_clock
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


def validate_window(
    *,
    window_start: str | None,
    window_end: str | None,
    window_days: Sequence[str] | None = None,
    window_skip_holidays: bool = False,
) -> SendWindow | None:
    """The send window of a policy's fields, or None without one; raises PolicyInvalid naming
    the field and the rule.

    `window_start` / `window_end`: local times "HH:MM" (end may be "24:00"), both or neither;
    start before end: a window never crosses midnight (a window is the customer's day; the
    days it opens are then plain dates). `window_days`: day names ("mon" … "sun"), at least
    one; omitted, every day. `window_skip_holidays`: also closed on the national public
    holidays of the customer's country (the `holidays` package).
    """
    if window_start is None and window_end is None:
        if window_days is not None:
            raise PolicyInvalid("window_start", "required when window_days is given")
        if window_skip_holidays:
            raise PolicyInvalid("window_start", "required when window_skip_holidays is true")
        return None
    if window_start is None:
        raise PolicyInvalid("window_start", "required when window_end is given")
    if window_end is None:
        raise PolicyInvalid("window_end", "required when window_start is given")
    try:
        start = parse_clock(window_start)
    except ValueError as exc:
        raise PolicyInvalid("window_start", str(exc)) from None
    try:
        end = parse_clock(window_end)
    except ValueError as exc:
        raise PolicyInvalid("window_end", str(exc)) from None
    if start >= end:
        raise PolicyInvalid(
            "window_end", "must be after window_start (a window cannot cross midnight)"
        )
    try:
        days = ALL_DAYS if window_days is None else day_set(list(window_days))
    except ValueError as exc:
        raise PolicyInvalid("window_days", str(exc)) from None
    return SendWindow(
        start_minute=start, end_minute=end, days=days, skip_holidays=window_skip_holidays
    )


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
    window: SendWindow | None = None,
) -> RetryPolicy:
    """Create a policy and make it the organization's active one (the others are deactivated).

    `window`: when its reminders may go out in the customer's time (`validate_window`).
    """
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
        **window_values(window),
    )
    session.add(policy)
    session.flush()
    new_policy_stamp(session, organization_id=organization_id)
    return policy


def update_policy(
    session: Session,
    *,
    organization_id: int,
    policy_id: int,
    name: str,
    max_retries: int,
    initial_delay_minutes: int,
    backoff_multiplier: float,
    max_delay_minutes: int,
    enabled_channels: Sequence[str],
    window: SendWindow | None = None,
) -> RetryPolicy:
    """Replace a policy's numbers, channels and window; it stays active or not as it was.

    Attempts already open keep what they copied when they opened; attempts opening after the
    commit get the new values (the organization's `policy_stamp` is drawn again). Raises
    PolicyNotFound, PolicyInvalid naming the field and the rule.
    """
    policy = get_policy(session, organization_id=organization_id, policy_id=policy_id)
    channels = validate(
        name=name,
        max_retries=max_retries,
        initial_delay_minutes=initial_delay_minutes,
        backoff_multiplier=backoff_multiplier,
        max_delay_minutes=max_delay_minutes,
        enabled_channels=enabled_channels,
    )
    policy.name = name.strip()
    policy.max_retries = max_retries
    policy.initial_delay_minutes = initial_delay_minutes
    policy.backoff_multiplier = float(backoff_multiplier)
    policy.max_delay_minutes = max_delay_minutes
    policy.enabled_channels = channels
    for column, value in window_values(window).items():
        setattr(policy, column, value)
    session.flush()
    new_policy_stamp(session, organization_id=organization_id)
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
        new_policy_stamp(session, organization_id=organization_id)
    return policy


def deactivate_policy(session: Session, *, organization_id: int, policy_id: int) -> RetryPolicy:
    """Deactivate (the row is kept). Without an active policy the default applies."""
    policy = get_policy(session, organization_id=organization_id, policy_id=policy_id)
    if policy.is_active:
        policy.is_active = False
        session.flush()
        new_policy_stamp(session, organization_id=organization_id)
    return policy


@dataclass(frozen=True)
class _Cached:
    stamp: int
    policy: EffectivePolicy


# The effective policy per organization, with the `policy_stamp` it was read with. Entries
# are whole objects replaced at once (no lock needed); one per organization that ingested.
_cache: dict[int, _Cached] = {}


def effective_policy(
    session: Session, *, organization_id: int, stamp: int | None = None
) -> EffectivePolicy:
    """The policy a new attempt of the organization copies: the active one, else the default.

    Cached per organization in the process. `stamp`: the organization's `policy_stamp` as the
    caller read it in this unit of work (the API's authentication reads it with the caller):
    when the cache holds the policy read under that stamp, no statement runs. Otherwise (or
    with None) one statement reads the stamp and the active policy together and the cache
    keeps them. Every change of a policy draws a new stamp in the change's own unit of work
    (`create_policy`, `activate_policy`, `deactivate_policy`), so a change committed by any
    process is used by the next request that reads the stamp after the commit.
    """
    if stamp is not None:
        cached = _cache.get(organization_id)
        if cached is not None and cached.stamp == stamp:
            return cached.policy
    read_stamp, active = repository.get_active_with_stamp(session, organization_id=organization_id)
    policy = _effective(active)
    _cache[organization_id] = _Cached(read_stamp, policy)
    return policy


def _effective(active: RetryPolicy | None) -> EffectivePolicy:
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
        window=row.send_window,
    )
