"""Transaction and failure-event queries."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session

from stealth_recovery.core.database import returned_row, upsert_into, upsert_into_where
from stealth_recovery.payments.models import FailureEvent, Transaction


def get_transaction_by_ref(
    session: Session, *, organization_id: int, external_ref: str
) -> Transaction | None:
    stmt = select(Transaction).where(
        Transaction.organization_id == organization_id, Transaction.external_ref == external_ref
    )
    return session.scalar(stmt)


def get_failure_by_key(
    session: Session, *, organization_id: int, idempotency_key: str
) -> FailureEvent | None:
    stmt = select(FailureEvent).where(
        FailureEvent.organization_id == organization_id,
        FailureEvent.idempotency_key == idempotency_key,
    )
    return session.scalar(stmt)


def upsert_transaction(
    session: Session,
    *,
    organization_id: int,
    external_ref: str,
    values: Mapping[str, Any],
    unless_failure_key: str,
    now: datetime,
) -> Transaction | None:
    """Insert the transaction, or update the organization's one with this reference; one
    statement, the row returned (no second read).

    `values` are the report's columns (amount, currency, contact, provider ids): the newest
    report is the best knowledge of them, but a None keeps what is stored. Nothing is written
    and None is returned when a failure with the idempotency key `unless_failure_key` is
    already recorded: a replayed report changes nothing. Concurrent reports of one reference
    settle on the unique `(organization_id, external_ref)`: the second updates the first's row
    (on PostgreSQL after waiting for its commit).
    """
    key_used = exists().where(
        FailureEvent.organization_id == organization_id,
        FailureEvent.idempotency_key == unless_failure_key,
    )
    row = {
        "organization_id": organization_id,
        "external_ref": external_ref,
        **values,
        "created_at": now,
        "updated_at": now,
    }
    statement = upsert_into_where(session, Transaction, row, ~key_used)
    table = Transaction.__table__.c
    kept_unless_given = {
        name: func.coalesce(statement.excluded[name], table[name]) for name in values
    }
    statement = statement.on_conflict_do_update(
        index_elements=["organization_id", "external_ref"],
        set_={**kept_unless_given, "updated_at": now},
        where=~key_used,
    )
    return returned_row(session, Transaction, statement)


def insert_failure(session: Session, *, values: Mapping[str, Any]) -> FailureEvent | None:
    """Record a failure once per `(organization_id, idempotency_key)`; one statement, the row
    returned. None when the key is already recorded (a concurrent report of the same failure
    committed first; on PostgreSQL this waits for its commit).
    """
    statement = (
        upsert_into(session, FailureEvent)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["organization_id", "idempotency_key"])
    )
    return returned_row(session, FailureEvent, statement)
