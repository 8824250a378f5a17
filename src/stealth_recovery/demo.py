"""`stealth-recovery demo`: a demo organization with weeks of realistic history.

The failures go through the real ingestion path (`ingestion.service.record_failure`, so decline
classification and the policy copy are the product's own), each at its moment in the past on a
shifted clock. What happened next — reminders, delivery statuses, payments, cancellations — is
then written as the engine and the providers would have recorded it. No message is sent: the
demo customers live at example.com and on fictional 555-01xx numbers.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import delete
from sqlalchemy.orm import Session

from stealth_recovery.auth import service as auth_service
from stealth_recovery.auth.models import Role
from stealth_recovery.core.database import get_engine, session_scope
from stealth_recovery.core.migrate import upgrade_to_head
from stealth_recovery.core.settings import get_settings
from stealth_recovery.core.time import shifted_clock, utc_now
from stealth_recovery.ingestion.service import (
    FailureInput,
    Ingested,
    IngestionResult,
    record_failure,
)
from stealth_recovery.notifications.models import Channel, NotificationLog
from stealth_recovery.organizations import repository as org_repository
from stealth_recovery.organizations.models import Organization
from stealth_recovery.recovery import repository as recovery_repository
from stealth_recovery.recovery.models import AttemptStatus, RecoveryAttempt
from stealth_recovery.recovery.schedule import next_due
from stealth_recovery.recovery.service import PaidVia, schedule_of
from stealth_recovery.retry import policy as policy_service

DEMO_SLUG = "demo"
DEMO_ORGANIZATION = "Northwind Subscriptions (demo)"
DEMO_EMAIL = "admin@demo.stealth-recovery.dev"
DEMO_ANALYST_EMAIL = "analyst@demo.stealth-recovery.dev"

_FIRST = [
    "Ada",
    "Ben",
    "Chloé",
    "Daniel",
    "Elena",
    "Farid",
    "Grace",
    "Hugo",
    "Inés",
    "Jonas",
    "Keiko",
    "Lena",
    "Marco",
    "Nadia",
    "Oliver",
    "Priya",
    "Quentin",
    "Rosa",
    "Sven",
    "Tariq",
    "Uma",
    "Victor",
    "Wen",
    "Yusuf",
    "Zoe",
]
_LAST = [
    "Lovelace",
    "Okafor",
    "Martin",
    "Schmidt",
    "García",
    "Haddad",
    "Hopper",
    "Dubois",
    "Rossi",
    "Novak",
    "Tanaka",
    "Fischer",
    "Costa",
    "Karimi",
    "Brown",
    "Patel",
    "Moreau",
    "Silva",
    "Larsen",
    "Khan",
]
_LOCALES = [
    ("en", "Europe/London", "GBP", 0.2),
    ("de_DE", "Europe/Berlin", "EUR", 0.25),
    ("fr_FR", "Europe/Paris", "EUR", 0.15),
    ("es_ES", "Europe/Madrid", "EUR", 0.15),
    ("en_US", "America/New_York", "USD", 0.25),
]
_PRICES = [900, 1500, 2900, 4900, 9900, 19900]
_SOFT = [
    "insufficient_funds",
    "do_not_honor",
    "generic_decline",
    "try_again_later",
    "processing_error",
    "card_velocity_exceeded",
]
_ACTION = ["expired_card", "incorrect_cvc", "authentication_required", "incorrect_zip"]
_HARD = ["stolen_card", "lost_card", "fraudulent"]
_REASONS = {
    "insufficient_funds": "Your card has insufficient funds.",
    "do_not_honor": "The card was declined by the issuer.",
    "generic_decline": "Your card was declined.",
    "try_again_later": "The issuer could not be reached; try again later.",
    "processing_error": "An error occurred while processing the card.",
    "card_velocity_exceeded": "The card has exceeded its spending limit.",
    "expired_card": "Your card has expired.",
    "incorrect_cvc": "Your card's security code is incorrect.",
    "authentication_required": "The payment requires authentication.",
    "incorrect_zip": "The postal code failed validation.",
    "stolen_card": "Your card was declined.",
    "lost_card": "Your card was declined.",
    "fraudulent": "Your card was declined.",
}
# Chance that the customer pays before the first reminder (index 0) or after reminder k.
_PAY_CHANCE = [0.07, 0.24, 0.17, 0.12, 0.09, 0.07, 0.05]
_PROVIDERS = {Channel.email: "smtp", Channel.sms: "twilio", Channel.whatsapp: "whatsapp"}


class DemoError(RuntimeError):
    """The demo cannot be created here (it exists already, or this is production)."""


@dataclass(frozen=True)
class DemoResult:
    organization_id: int
    email: str
    analyst_email: str
    password: str
    attempts: int
    messages: int


@dataclass(frozen=True)
class _Customer:
    name: str
    email: str | None
    phone: str | None
    locale: str
    timezone: str
    currency: str


@contextmanager
def _clock_at(moment: datetime) -> Iterator[None]:
    """Run the block as if it were `moment` (the service reads time through utc_now())."""
    with shifted_clock(moment - utc_now()):
        yield


def _customer(rng: random.Random, n: int) -> _Customer:
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    locale, timezone, currency, _ = rng.choices(_LOCALES, weights=[w for *_, w in _LOCALES])[0]
    has_email = rng.random() < 0.9
    has_phone = rng.random() < 0.55 or not has_email
    slug = f"{first}.{last}".lower().encode("ascii", "ignore").decode()
    return _Customer(
        name=f"{first} {last}",
        email=f"{slug}.{n}@example.com" if has_email else None,
        phone=f"+1202555{rng.randint(100, 199):04d}" if has_phone else None,
        locale=locale,
        timezone=timezone,
        currency=currency,
    )


def _message(
    rng: random.Random, attempt: RecoveryAttempt, step: int, channel: str, to: str, at: datetime
) -> NotificationLog:
    """One message as the engine and the provider callbacks would have left it."""
    roll = rng.random()
    if channel == Channel.email:
        outcome = (
            "delivered"
            if roll < 0.72
            else "sent"
            if roll < 0.9
            else ("bounced" if roll < 0.95 else "failed")
        )
    else:
        outcome = "delivered" if roll < 0.8 else "sent" if roll < 0.92 else "failed"
    provider = _PROVIDERS[Channel(channel)]
    log = NotificationLog(
        organization_id=attempt.organization_id,
        attempt_id=attempt.id,
        retry_number=step,
        channel=channel,
        recipient=to,
        provider=provider,
        send_attempts=1,
        created_at=at,
    )
    sent_at = at + timedelta(seconds=rng.uniform(0.5, 6))
    if outcome in ("sent", "delivered"):
        log.sent_at = sent_at
        log.provider_message_id = (
            f"{rng.getrandbits(40):010X}"  # a mail server's queue id, as Postfix writes it
            if provider == "smtp"
            else f"SM{rng.getrandbits(128):032x}"
        )
        if outcome == "delivered":
            log.delivered_at = sent_at + timedelta(seconds=rng.uniform(2, 900))
    elif outcome == "bounced":
        log.sent_at = sent_at
        log.failed_at = sent_at + timedelta(minutes=rng.uniform(1, 30))
        log.error_message = "550 5.1.1 recipient mailbox unavailable"
    else:
        log.failed_at = sent_at
        log.error_message = (
            "21610: the recipient has unsubscribed (STOP)"
            if provider == "twilio"
            else "421 4.7.0 try again later; gave up after 3 tries"
        )
    log.status = outcome
    log.updated_at = log.delivered_at or log.failed_at or log.sent_at or at
    return log


def _play_out(
    session: Session, rng: random.Random, attempt: RecoveryAttempt, customer: _Customer
) -> int:
    """Advance a freshly opened attempt through its reminders up to now; returns messages made."""
    now = utc_now()
    schedule = schedule_of(attempt)
    contacts = {
        Channel.email: customer.email,
        Channel.sms: customer.phone,
        Channel.whatsapp: customer.phone,
    }
    messages = 0
    last = attempt.created_at

    def pays(stage: int) -> bool:
        return rng.random() < _PAY_CHANCE[min(stage, len(_PAY_CHANCE) - 1)]

    for step in range(schedule.max_retries + 1):
        # Before reminder `step` goes out (or before the grace period ends), the customer may pay.
        due = next_due(schedule, steps_done=step, last_at=last)
        gap = due - last
        if pays(step):
            paid_at = last + gap * rng.uniform(0.05, 0.9)
            if paid_at <= now:
                attempt.opened_at = paid_at - timedelta(minutes=rng.uniform(1, 20))
                attempt.updated_at = attempt.opened_at
                session.flush()
                recovery_repository.finish(
                    session,
                    attempt_id=attempt.id,
                    status=AttemptStatus.completed,
                    at=paid_at,
                    paid_via=PaidVia.DEMO,
                )
                return messages
        if step == schedule.max_retries:
            if due <= now and due < attempt.expires_at:
                recovery_repository.finish(
                    session,
                    attempt_id=attempt.id,
                    status=AttemptStatus.cancelled,
                    at=due,
                    reason="retries exhausted",
                )
            break
        if due > now or due >= attempt.expires_at:
            break
        any_sent = False
        for channel in attempt.enabled_channels:
            to = contacts.get(Channel(channel))
            if not to:
                continue
            log = _message(rng, attempt, step, channel, to, due)
            session.add(log)
            messages += 1
            any_sent = any_sent or log.sent_at is not None
        attempt.retry_count = step + 1
        attempt.last_retry_at = due
        attempt.next_retry_at = next_due(schedule, steps_done=step + 1, last_at=due)
        attempt.updated_at = due
        if any_sent and attempt.status == AttemptStatus.created:
            attempt.status = AttemptStatus.sent
        if attempt.status == AttemptStatus.sent and rng.random() < 0.12:
            attempt.status = AttemptStatus.opened
            attempt.opened_at = due + timedelta(minutes=rng.uniform(2, 120))
        last = due
        session.flush()
    session.refresh(attempt)
    if attempt.is_open and attempt.expires_at <= now:
        # What the daily cleanup does with a link that ran out.
        attempt.status = AttemptStatus.expired
        attempt.next_retry_at = None
        attempt.updated_at = attempt.expires_at
        session.flush()
    return messages


def _remove_existing(session: Session) -> None:
    existing = org_repository.get_by_slug(session, DEMO_SLUG)
    if existing is not None:
        # Foreign keys cascade from the organization to everything it owns.
        session.execute(delete(Organization).where(Organization.id == existing.id))
        session.flush()


@dataclass(frozen=True)
class DemoLogin:
    email: str
    analyst_email: str
    password: str


def reset_demo_login(*, password: str | None = None) -> DemoLogin:
    """Give the demo admin and analyst a new password (the data stays); returns the login.

    Passwords are stored hashed, so the old one cannot be shown again. Raises DemoError when
    there is no demo organization, or with ENVIRONMENT=production.
    """
    from sqlalchemy import select

    from stealth_recovery.auth.models import User
    from stealth_recovery.core.security import hash_password

    if get_settings().environment == "production":
        raise DemoError("refusing to touch demo logins with ENVIRONMENT=production")
    upgrade_to_head(get_engine())
    password = password or f"demo-{secrets.token_urlsafe(9)}"
    with session_scope() as session:
        organization = org_repository.get_by_slug(session, DEMO_SLUG)
        if organization is None:
            raise DemoError("there is no demo organization yet: run `stealth-recovery demo`")
        users = session.scalars(
            select(User).where(
                User.organization_id == organization.id,
                User.email.in_([DEMO_EMAIL, DEMO_ANALYST_EMAIL]),
            )
        ).all()
        if not users:
            raise DemoError("the demo organization has no demo users: run with --reset")
        for user in users:
            user.password_hash = hash_password(password)
            user.is_active = True
    return DemoLogin(email=DEMO_EMAIL, analyst_email=DEMO_ANALYST_EMAIL, password=password)


def _create_organization(session: Session, *, password: str, at: datetime) -> Organization:
    """The demo organization, its admin and analyst, and the policy of the first weeks, at `at`."""
    with _clock_at(at):
        organization, _admin = auth_service.register(
            session,
            organization_name=DEMO_ORGANIZATION,
            organization_slug=DEMO_SLUG,
            email=DEMO_EMAIL,
            password=password,
            full_name="Demo Admin",
        )
        # Its pay page records test payments: the demo works without a payment provider.
        organization.is_test = True
        auth_service.create_user(
            session,
            organization_id=organization.id,
            email=DEMO_ANALYST_EMAIL,
            password=password,
            role=Role.analyst,
            full_name="Demo Analyst",
        )
        # The policy of the first weeks: patient, email only (its tail outlives the link).
        policy_service.create_policy(
            session,
            organization_id=organization.id,
            name="Patient, email only",
            max_retries=6,
            initial_delay_minutes=240,
            backoff_multiplier=2.0,
            max_delay_minutes=2880,
            enabled_channels=[Channel.email],
        )
    return organization


def _record_demo_failure(
    session: Session,
    rng: random.Random,
    *,
    organization_id: int,
    n: int,
    moment: datetime,
    customer: _Customer,
) -> IngestionResult:
    """Report the demo's n-th failed payment at `moment`: 6 % hard, 24 % action, 70 % soft."""
    category = rng.random()
    code = (
        rng.choice(_HARD)
        if category < 0.06
        else rng.choice(_ACTION)
        if category < 0.3
        else rng.choice(_SOFT)
    )
    with _clock_at(moment):
        return record_failure(
            session,
            organization_id=organization_id,
            data=FailureInput(
                external_ref=f"inv_{moment:%Y%m%d}_{n:05d}",
                amount_minor=rng.choice(_PRICES),
                currency=customer.currency,
                customer_email=customer.email,
                customer_phone=customer.phone,
                customer_name=customer.name,
                customer_locale=customer.locale,
                customer_timezone=customer.timezone,
                gateway="stripe",
                reason=_REASONS[code],
                decline_code=code,
                occurred_at=moment - timedelta(seconds=rng.uniform(1, 30)),
                idempotency_key=None,
                psp_customer_id=f"cus_demo{n:05d}",
                psp_payment_id=f"pi_demo{n:05d}",
                raw_metadata={"demo": True},
            ),
        )


def run_demo(
    *,
    attempts: int = 300,
    days: int = 28,
    seed: int | None = None,
    password: str | None = None,
    reset: bool = False,
    console: Console | None = None,
) -> DemoResult:
    """Migrate, then create the demo organization, its users, policies and history."""
    settings = get_settings()
    if settings.environment == "production":
        raise DemoError("refusing to create demo data with ENVIRONMENT=production")
    if attempts < 1 or days < 1:
        raise DemoError("attempts and days must be at least 1")
    console = console or Console()
    upgrade_to_head(get_engine())
    rng = random.Random(seed)
    password = password or f"demo-{secrets.token_urlsafe(9)}"
    now = utc_now()
    start = now - timedelta(days=days)
    moments = sorted(
        start + timedelta(seconds=rng.uniform(0, days * 86400)) for _ in range(attempts)
    )
    switch_at = start + timedelta(days=days / 2)
    messages = 0

    with session_scope() as session:
        if org_repository.get_by_slug(session, DEMO_SLUG) is not None:
            if not reset:
                raise DemoError(
                    f"the demo organization exists already (log in as {DEMO_EMAIL}); "
                    "run with --login to get a new password, or --reset to recreate it"
                )
            _remove_existing(session)
        organization = _create_organization(
            session, password=password, at=start - timedelta(days=1)
        )
        switched = False
        progress = Progress(
            TextColumn("[bold]Demo history"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        with progress:
            task = progress.add_task("attempts", total=attempts)
            for n, moment in enumerate(moments, start=1):
                if not switched and moment >= switch_at:
                    with _clock_at(switch_at):
                        policy_service.create_policy(
                            session,
                            organization_id=organization.id,
                            name="Standard: email and SMS",
                            max_retries=4,
                            initial_delay_minutes=60,
                            backoff_multiplier=3.0,
                            max_delay_minutes=1440,
                            enabled_channels=[Channel.email, Channel.sms],
                        )
                    switched = True
                customer = _customer(rng, n)
                recorded = _record_demo_failure(
                    session,
                    rng,
                    organization_id=organization.id,
                    n=n,
                    moment=moment,
                    customer=customer,
                )
                if recorded.outcome is Ingested.opened:
                    messages += _play_out(session, rng, recorded.attempt, customer)
                progress.advance(task)
        organization_id = organization.id
    return DemoResult(
        organization_id=organization_id,
        email=DEMO_EMAIL,
        analyst_email=DEMO_ANALYST_EMAIL,
        password=password,
        attempts=attempts,
        messages=messages,
    )
