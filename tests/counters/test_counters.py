"""The daily counters stay equal to a recount of the rows, whatever writes them and however
writers race; the repair recounts them; shards keep writers of one organization apart."""

from __future__ import annotations

import os
import random
import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from stealth_recovery.core.database import session_scope
from stealth_recovery.core.time import shifted_clock, utc_now
from stealth_recovery.counters import repository as counters
from stealth_recovery.counters.models import DailyCount
from stealth_recovery.notifications import repository as logs_repository
from stealth_recovery.notifications.models import NotificationLog, NotificationStatus
from stealth_recovery.organizations.models import Organization
from stealth_recovery.payments.models import Transaction
from stealth_recovery.recovery import service as recovery_service
from stealth_recovery.recovery.errors import AttemptNotOpen
from stealth_recovery.recovery.models import OPEN_STATUSES, RecoveryAttempt
from stealth_recovery.retry.queue import cleanup_expired_attempts
from stealth_recovery.retry.runtime import run_due_now
from tests.counters.recount import counted, expected_counts
from tests.support.builders import add_log, make_account, make_attempt
from tests.support.processes import run_cli
from tests.support.smtp import SmtpSink


def _attempts(db: Session, *, statuses: tuple[str, ...]) -> list[RecoveryAttempt]:
    db.expire_all()
    return list(
        db.scalars(
            select(RecoveryAttempt)
            .where(RecoveryAttempt.status.in_(statuses))
            .order_by(RecoveryAttempt.id)
        )
    )


class _Workload:
    """A seeded random mix of every write that moves a counter, committed one by one."""

    def __init__(self, db: Session, sink: SmtpSink, organizations: list[Organization], seed: int):
        self.db = db
        self.sink = sink
        self.organizations = organizations
        self.rng = random.Random(seed)
        self.customers = 0

    def run(self, steps: int) -> None:
        operations: list[Callable[[], None]] = [
            self.ingest,
            self.ingest,
            self.ingest,
            self.send,
            self.send,
            self.pay,
            self.test_pay,
            self.cancel,
            self.open_link,
            self.expire_when_due,
            self.expire_daily,
            self.exhaust,
            self.pay_after_end,
            self.callback,
            self.log_elsewhere,
            self.edit_retry_count,
            self.report_again,
        ]
        for _ in range(steps):
            self.rng.choice(operations)()
        self.db.commit()

    def _pick(self, *statuses: str) -> RecoveryAttempt | None:
        candidates = _attempts(self.db, statuses=statuses)
        return self.rng.choice(candidates) if candidates else None

    def ingest(self) -> None:
        self.customers += 1
        email = f"c{self.customers}@example.com"
        roll = self.rng.random()
        if roll < 0.15:
            self.sink.reject(email, 550, "5.1.1 no such user")
        elif roll < 0.25:
            self.sink.reject(email, 451, "4.3.0 try again later", times=1)
        make_attempt(
            self.db,
            self.rng.choice(self.organizations),
            email=email,
            currency=self.rng.choice(["EUR", "USD"]),
            amount_minor=self.rng.randint(100, 90_000),
            opened_at=utc_now() - timedelta(days=self.rng.randint(0, 3), hours=self.rng.random()),
            due=self.rng.random() < 0.7,
        )

    def send(self) -> None:
        self.db.commit()
        with shifted_clock(timedelta(hours=self.rng.choice([0, 0, 2, 5]))):
            run_due_now()

    def pay(self) -> None:
        if attempt := self._pick(*OPEN_STATUSES):
            recovery_service.record_payment(self.db, attempt=attempt, paid_via="api")
            self.db.commit()

    def test_pay(self) -> None:
        if attempt := self._pick(*OPEN_STATUSES):
            recovery_service.complete_attempt(
                self.db, attempt=attempt, paid_via="test", test_payment=True
            )
            self.db.commit()

    def cancel(self) -> None:
        if attempt := self._pick(*OPEN_STATUSES):
            recovery_service.cancel_attempt(self.db, attempt=attempt, reason="operator")
            self.db.commit()

    def open_link(self) -> None:
        if attempt := self._pick("created", "sent"):
            recovery_service.mark_opened(self.db, attempt=attempt)
            self.db.commit()

    def expire_when_due(self) -> None:
        # The link runs out and the step is due: the next queue pass expires it (expire_due).
        if attempt := self._pick(*OPEN_STATUSES):
            attempt.expires_at = utc_now() - timedelta(minutes=1)
            attempt.next_retry_at = utc_now() - timedelta(minutes=1)
            self.db.commit()

    def expire_daily(self) -> None:
        # The link runs out before the next step: the daily cleanup expires it.
        if attempt := self._pick(*OPEN_STATUSES):
            attempt.expires_at = utc_now() - timedelta(minutes=1)
            attempt.next_retry_at = utc_now() + timedelta(hours=3)
            self.db.commit()
            cleanup_expired_attempts(self.db, now=utc_now())
            self.db.commit()

    def exhaust(self) -> None:
        # Every reminder out and the grace period over: the next queue pass cancels it.
        if attempt := self._pick(*OPEN_STATUSES):
            attempt.retry_count = attempt.max_retries
            attempt.next_retry_at = utc_now() - timedelta(minutes=1)
            self.db.commit()

    def pay_after_end(self) -> None:
        if attempt := self._pick("cancelled", "expired", "completed"):
            recovery_service.record_payment(
                self.db, attempt=attempt, paid_via=f"late-{self.rng.randint(1, 3)}"
            )
            self.db.commit()

    def callback(self) -> None:
        self.db.expire_all()
        sent = self.db.scalars(
            select(NotificationLog.id).where(NotificationLog.status == NotificationStatus.sent)
        ).all()
        if sent:
            logs_repository.advance_status(
                self.db,
                log_id=self.rng.choice(sent),
                status=self.rng.choice([NotificationStatus.delivered, NotificationStatus.bounced]),
                at=utc_now(),
            )
            self.db.commit()

    def log_elsewhere(self) -> None:
        # Messages of other channels and of the local outbox, written on other days.
        if attempt := self._pick("created", "sent", "opened", "completed"):
            channel = self.rng.choice(["sms", "whatsapp", "email"])
            add_log(
                self.db,
                attempt,
                retry_number=100 + self.rng.randint(0, 10_000),
                channel=channel,
                status=self.rng.choice(["sent", "delivered", "failed", "unconfirmed"]),
                provider="outbox" if channel == "email" else None,
                at=utc_now() - timedelta(days=self.rng.randint(0, 2)),
            )

    def report_again(self) -> None:
        # A new failure of a paid payment: a new attempt, and the newest report's amount and
        # currency on the transaction (the paid attempt's recovered amount moves with it).
        if attempt := self._pick("completed", "cancelled"):
            transaction = self.db.get(Transaction, attempt.transaction_id)
            assert transaction is not None
            make_attempt(
                self.db,
                next(o for o in self.organizations if o.id == attempt.organization_id),
                ref=transaction.external_ref,
                currency=self.rng.choice(["EUR", "USD"]),
                amount_minor=self.rng.randint(100, 90_000),
            )

    def edit_retry_count(self) -> None:
        # An ORM flush of a counted column (what a data fix or a test builder does).
        if attempt := self._pick(*OPEN_STATUSES):
            attempt.retry_count = self.rng.randint(0, attempt.max_retries)
            self.db.commit()


class TestCountersMatchARecount:
    @pytest.mark.parametrize("seed", [1, 2])
    def test_after_a_random_workload(self, db: Session, smtp_sink: SmtpSink, seed: int) -> None:
        # Given two organizations
        organizations = [make_account(db).organization for _ in range(2)]
        # When a seeded mix of ingestion, sends through the engine, payments, test payments,
        # cancellations, openings, expiries (queue and daily), exhaustion, late payments,
        # delivery callbacks and direct edits runs
        _Workload(db, smtp_sink, organizations, seed).run(steps=90)
        # Then every counter equals the recount of the rows
        expected = expected_counts(db)
        assert {key[2].split(":")[0] for key in expected} == {"a", "m"}
        assert counted(db) == expected

    def test_while_writers_race_on_the_same_rows(
        self, db: Session, smtp_sink: SmtpSink, postgres_only: None
    ) -> None:
        # Given one organization with attempts opened today, all due
        organization = make_account(db).organization
        attempts = [make_attempt(db, organization, email=f"r{n}@example.com") for n in range(24)]
        ids = [a.id for a in attempts]
        failures: list[BaseException] = []
        start = threading.Barrier(8)

        def racer(seed: int) -> None:
            rng = random.Random(seed)
            start.wait()
            for _ in range(12):
                try:
                    with session_scope() as session:
                        attempt = session.get(RecoveryAttempt, rng.choice(ids))
                        assert attempt is not None
                        action = rng.randrange(6)
                        if action == 0:
                            recovery_service.record_payment(
                                session, attempt=attempt, paid_via=f"p{rng.randint(1, 2)}"
                            )
                        elif action == 1:
                            recovery_service.stop_attempt(session, attempt=attempt, reason="race")
                        elif action in (2, 5):
                            recovery_service.mark_opened(session, attempt=attempt)
                        elif action == 3:
                            make_attempt(session, organization, email=f"n{seed}@example.com")
                        else:
                            attempt.expires_at = utc_now() - timedelta(seconds=1)
                            session.flush()
                            cleanup_expired_attempts(session, now=utc_now())
                except AttemptNotOpen:
                    pass
                except DBAPIError:
                    pass  # a deadlock victim rolls back: its counters with it
                except BaseException as exc:
                    failures.append(exc)

        def sender() -> None:
            start.wait()
            for _ in range(4):
                run_due_now()

        # When six threads pay, cancel, open, ingest and expire the same attempts while two
        # run the queue, all in the same organization and day
        threads = [threading.Thread(target=racer, args=(n,)) for n in range(6)]
        threads += [threading.Thread(target=sender) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        # Then nothing failed for a reason other than the race itself
        assert not failures
        assert not any(thread.is_alive() for thread in threads)
        # And every counter equals the recount of the rows
        db.expire_all()
        import collections

        print(
            "PEEK",
            sorted(
                collections.Counter(a.status for a in db.scalars(select(RecoveryAttempt))).items()
            ),
        )
        assert counted(db) == expected_counts(db)


class TestRecount:
    def test_repairs_damaged_counters(self, db: Session, smtp_sink: SmtpSink) -> None:
        # Given counters kept through a workload, then damaged
        organizations = [make_account(db).organization for _ in range(2)]
        _Workload(db, smtp_sink, organizations, seed=7).run(steps=40)
        db.execute(update(DailyCount).values(n=DailyCount.n + 3))
        db.add(
            DailyCount(
                organization_id=organizations[0].id,
                day=utc_now().date(),
                metric="a:s:created",
                shard=5,
                n=11,
            )
        )
        db.commit()
        assert counted(db) != expected_counts(db)
        # When they are recounted
        written = counters.recount(db)
        db.commit()
        # Then they match the rows again
        assert written > 0
        assert counted(db) == expected_counts(db)

    def test_one_organization_leaves_the_others_alone(self, db: Session) -> None:
        # Given two organizations whose counters are both off by one
        mine, theirs = (make_account(db).organization for _ in range(2))
        for organization in (mine, theirs):
            make_attempt(db, organization)
        db.execute(update(DailyCount).values(n=DailyCount.n + 1))
        db.commit()
        # When only mine is recounted
        counters.recount(db, organization_id=mine.id)
        db.commit()
        # Then mine is right and theirs still off
        expected, now = expected_counts(db), counted(db)
        assert {k: n for k, n in now.items() if k[0] == mine.id} == {
            k: n for k, n in expected.items() if k[0] == mine.id
        }
        assert {k: n for k, n in now.items() if k[0] == theirs.id} != {
            k: n for k, n in expected.items() if k[0] == theirs.id
        }

    def test_the_command_recounts_one_organization(
        self, db: Session, database_url: str, tmp_path: Path
    ) -> None:
        # Given an organization whose counters are off
        organization = make_account(db).organization
        make_attempt(db, organization)
        db.execute(update(DailyCount).values(n=DailyCount.n + 2))
        db.commit()
        # When an operator runs the repair command for it
        env = {**os.environ, "DATABASE_URL": database_url, "LOG_LEVEL": "WARNING"}
        result = run_cli(
            "recount-counters", "--organization", str(organization.id), env=env, cwd=tmp_path
        )
        # Then it says what it did, and the counters match the rows
        assert result.returncode == 0, result.stderr
        assert f"organization {organization.id}" in result.stdout
        db.expire_all()
        assert counted(db) == expected_counts(db)


class TestShards:
    def test_a_second_writer_of_one_organization_does_not_wait(
        self, db: Session, postgres_only: None
    ) -> None:
        # Given two attempts of one organization, and a transaction that paid the first and
        # has not committed (it holds its counter rows)
        organization = make_account(db).organization
        first, second = make_attempt(db, organization), make_attempt(db, organization)
        with session_scope() as holder:
            held = holder.get(RecoveryAttempt, first.id)
            assert held is not None
            recovery_service.complete_attempt(holder, attempt=held, paid_via="api")
            # When another transaction pays the second, refusing to wait for any lock
            with session_scope() as other:
                other.execute(text("SET LOCAL lock_timeout = '1s'"))
                paid = other.get(RecoveryAttempt, second.id)
                assert paid is not None
                recovery_service.complete_attempt(other, attempt=paid, paid_via="api")
            # Then it committed, its counters in a shard of its own
        shards = set(
            db.scalars(select(DailyCount.shard).where(DailyCount.metric == "a:s:completed"))
        )
        assert shards == {0, 1}
        assert counted(db) == expected_counts(db)

    def test_folding_past_days_keeps_the_sums(self, db: Session, postgres_only: None) -> None:
        # Given yesterday's counters written in two shards
        organization = make_account(db).organization
        yesterday = utc_now() - timedelta(days=1)
        first = make_attempt(db, organization, opened_at=yesterday)
        second = make_attempt(db, organization, opened_at=yesterday)
        with session_scope() as holder:
            held = holder.get(RecoveryAttempt, first.id)
            assert held is not None
            recovery_service.complete_attempt(holder, attempt=held, paid_via="api")
            with session_scope() as other:
                paid = other.get(RecoveryAttempt, second.id)
                assert paid is not None
                recovery_service.complete_attempt(other, attempt=paid, paid_via="api")
        before = counted(db)
        assert set(db.scalars(select(DailyCount.shard))) == {0, 1}
        # When the daily cleanup runs
        cleanup_expired_attempts(db, now=utc_now())
        db.commit()
        # Then every past day is in shard 0, with the same sums
        assert set(db.scalars(select(DailyCount.shard))) == {0}
        assert counted(db) == before == expected_counts(db)
