"""API keys in use: `last_used_at` is written at most once a minute, and never waited for."""

from __future__ import annotations

from datetime import datetime, timedelta

from fastapi.testclient import TestClient
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from stealth_recovery.auth.models import ApiKey
from stealth_recovery.auth.service import create_api_key, resolve_api_key
from stealth_recovery.core.database import get_session_factory
from stealth_recovery.core.time import shifted_clock, utc_now
from tests.support.builders import make_account


def _new_key(db: Session) -> tuple[int, str]:
    account = make_account(db)
    api_key, plain = create_api_key(
        db, organization_id=account.organization.id, name="billing", created_by_id=None
    )
    db.commit()
    return api_key.id, plain


def _last_used(engine: Engine, key_id: int) -> datetime | None:
    with Session(engine) as session:
        return session.scalar(select(ApiKey.last_used_at).where(ApiKey.id == key_id))


class TestLastUsedAt:
    def test_written_on_first_use_then_at_most_once_a_minute(
        self, client: TestClient, db: Session, engine: Engine
    ) -> None:
        # Given a key never used
        key_id, plain = _new_key(db)
        headers = {"X-API-Key": plain}
        assert _last_used(engine, key_id) is None
        # When it is used, then again 30 s later
        before = utc_now()
        assert client.get("/v1/attempts", headers=headers).status_code == 200
        first = _last_used(engine, key_id)
        with shifted_clock(timedelta(seconds=30)):
            assert client.get("/v1/attempts", headers=headers).status_code == 200
        # Then the first use is recorded and the second, inside the minute, writes nothing
        assert first is not None and first >= before
        assert _last_used(engine, key_id) == first
        # And a use more than a minute later is recorded again
        with shifted_clock(timedelta(seconds=61)):
            assert client.get("/v1/attempts", headers=headers).status_code == 200
        later = _last_used(engine, key_id)
        assert later is not None and later >= first + timedelta(seconds=61)

    def test_a_request_never_waits_for_another_writing_the_same_key(
        self, db: Session, engine: Engine, postgres_only: None
    ) -> None:
        # Given a key last used two minutes ago
        key_id, plain = _new_key(db)
        with engine.begin() as connection:
            connection.execute(
                text("UPDATE api_keys SET last_used_at = :at WHERE id = :id"),
                {"at": utc_now() - timedelta(minutes=2), "id": key_id},
            )
        first = get_session_factory()()
        second = get_session_factory()()
        try:
            # When one request records the use and has not committed yet
            resolve_api_key(first, plain)
            first.flush()
            written = utc_now()
            # Then another request with the key resolves it without queueing on the row: a wait
            # of more than 200 ms on a lock would be an error here
            second.execute(text("SET LOCAL lock_timeout = '200ms'"))
            assert resolve_api_key(second, plain).api_key.id == key_id
            second.flush()
            second.commit()
            first.commit()
        finally:
            first.close()
            second.close()
        # And the first request's time is the one stored
        stored = _last_used(engine, key_id)
        assert stored is not None and stored <= written
        assert stored >= written - timedelta(seconds=5)
