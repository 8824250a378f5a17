"""The attempts listing's cursor: read from its index, exact when attempts share one instant."""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import Engine, event, insert, inspect, select, text, update
from sqlalchemy.orm import Session

from stealth_recovery.organizations.models import Organization
from stealth_recovery.recovery.models import AttemptStatus, RecoveryAttempt
from stealth_recovery.recovery.repository import AttemptFilters, list_attempts
from tests.support.builders import make_account, make_attempt

INSTANT = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def _copies_at_one_instant(db: Session, organization: Organization, count: int) -> list[int]:
    """`count` ended attempts like a real one, all created at INSTANT; their ids, ascending."""
    model = make_attempt(db, organization)
    columns = [c.key for c in inspect(RecoveryAttempt).column_attrs if c.key != "id"]
    row: dict[str, Any] = {key: getattr(model, key) for key in columns}
    rows = [
        {**row, "token": secrets.token_urlsafe(24), "status": AttemptStatus.cancelled}
        for _ in range(count)
    ]
    db.execute(insert(RecoveryAttempt), rows)
    mine = RecoveryAttempt.organization_id == organization.id
    db.execute(update(RecoveryAttempt).where(mine).values(created_at=INSTANT))
    db.commit()
    return sorted(db.scalars(select(RecoveryAttempt.id).where(mine)))


class TestCursorIndex:
    def test_a_page_after_a_cursor_is_read_from_the_index_without_sorting(
        self, db: Session, engine: Engine, postgres_only: None
    ) -> None:
        # Given thousands of attempts created in one instant, and another organization's
        admin = make_account(db)
        other = make_account(db)
        ids = _copies_at_one_instant(db, admin.organization, 3000)
        make_attempt(db, other.organization)
        with engine.begin() as connection:
            connection.execute(text("ANALYZE recovery_attempts"))
        # When the listing asks for the page after a cursor in the middle of that instant
        statements: list[tuple[str, Any]] = []

        def capture(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
            if "FROM recovery_attempts" in statement:
                statements.append((statement, parameters))

        event.listen(engine, "before_cursor_execute", capture)
        try:
            page = list_attempts(
                db,
                organization_id=admin.organization.id,
                filters=AttemptFilters(),
                after=(INSTANT, ids[1500]),
                limit=51,
            )
        finally:
            event.remove(engine, "before_cursor_execute", capture)
        assert [a.id for a, _ in page] == list(reversed(ids[1449:1500]))
        # Then PostgreSQL walks the (organization, created_at, id) index from the cursor on,
        # with no sort and no rows read only to be thrown away
        statement, parameters = statements[-1]
        with engine.connect() as connection:
            raw = connection.exec_driver_sql("EXPLAIN (FORMAT JSON) " + statement, parameters)
            plan = raw.scalar_one()
        plan_text = json.dumps(plan)
        nodes = _nodes(plan[0]["Plan"])
        attempts_scan = [n for n in nodes if n.get("Relation Name") == "recovery_attempts"]
        assert [n.get("Index Name") for n in attempts_scan] == [
            "ix_recovery_attempts_org_created_id"
        ], plan_text
        assert "Filter" not in attempts_scan[0], plan_text
        assert not [n for n in nodes if "Sort" in n["Node Type"]], plan_text


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [plan] + [node for child in plan.get("Plans", []) for node in _nodes(child)]


class TestEqualTimestamps:
    def test_pages_walk_every_attempt_once_in_id_order(
        self, client: TestClient, db: Session
    ) -> None:
        # Given eight attempts created in the same instant
        admin = make_account(db)
        ids = _copies_at_one_instant(db, admin.organization, 7)
        # When paged through three at a time
        seen: list[int] = []
        cursor = None
        while True:
            params: dict[str, str | int] = {"limit": 3}
            if cursor:
                params["cursor"] = cursor
            page = client.get("/v1/attempts", params=params, headers=admin.headers).json()
            assert len(page["items"]) <= 3
            seen += [item["id"] for item in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        # Then each shows up exactly once, the newest id first
        assert seen == list(reversed(ids))
        assert len(seen) == 8
