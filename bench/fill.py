"""Fresh PostgreSQL databases for the benchmarks, migrated and filled in SQL.

Rows are made with `INSERT … SELECT generate_series(...)` in the database, not through the ORM:
a million attempts take seconds instead of many minutes. Every column the models require is set
the way `recovery.service.open_attempt` would set it (policy copied onto the attempt, a 64-char
random token, one open attempt per transaction).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.engine import make_url

# The policy copied onto every attempt: the default policy (3 reminders, 60 min, ×2, 24 h).
MAX_RETRIES = 3
INITIAL_DELAY_MINUTES = 60
BACKOFF_MULTIPLIER = 2.0
MAX_DELAY_MINUTES = 1440


@dataclass(frozen=True)
class FillReport:
    rows: int
    due: int
    seconds: float


def create_database(admin_url: str, label: str) -> str:
    """Create an empty database next to `admin_url`'s and return its URL."""
    name = f"sr_bench_{label}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def drop_database(admin_url: str, url: str) -> None:
    name = make_url(url).database
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


def migrate(engine: Engine) -> None:
    from stealth_recovery.core.migrate import upgrade_to_head

    upgrade_to_head(engine)


_ORGANIZATION = """
INSERT INTO organizations (name, slug, created_at, updated_at)
VALUES ('Bench Merchant', :slug, now(), now())
RETURNING id
"""

_TRANSACTIONS = """
INSERT INTO transactions (
    organization_id, external_ref, amount_minor, currency, customer_email, customer_name,
    customer_locale, customer_timezone, created_at, updated_at
)
SELECT :org, 'bench-' || i, 1000 + (i % 9000), 'EUR', 'customer' || i || '@example.com',
       'Customer ' || i, 'en', 'UTC', now(), now()
FROM generate_series(1, :rows) AS i
"""

# Each transaction gets one attempt. Row i is due when floor(i·due/rows) steps up at i, which
# spreads exactly `due` due rows evenly over the table (and so over its pages). Due rows are
# open, at step 0, and came due within the last hour. The others alternate between open attempts
# due later (up to a day ahead) and final ones (completed, expired, cancelled: no next_retry_at).
_ATTEMPTS = """
INSERT INTO recovery_attempts (
    organization_id, transaction_id, token, status, expires_at, opened_at, completed_at,
    cancelled_at, cancel_reason, retry_count, last_retry_at, next_retry_at, max_retries,
    initial_delay_minutes, backoff_multiplier, max_delay_minutes, enabled_channels,
    decline_category, created_at, updated_at
)
SELECT
    :org, s.id,
    replace(gen_random_uuid()::text, '-', '') || replace(gen_random_uuid()::text, '-', ''),
    CASE WHEN s.due OR s.kind < 2 THEN 'created'
         WHEN s.kind = 2 THEN 'completed'
         WHEN s.kind = 3 THEN 'expired'
         ELSE 'cancelled' END,
    CASE WHEN s.due OR s.kind < 2 THEN now() + interval '6 days'
         ELSE now() - interval '1 day' END,
    NULL,
    CASE WHEN NOT s.due AND s.kind = 2 THEN now() - interval '2 days' END,
    CASE WHEN NOT s.due AND s.kind = 4 THEN now() - interval '2 days' END,
    CASE WHEN NOT s.due AND s.kind = 4 THEN 'retries exhausted' END,
    CASE WHEN s.due THEN 0 WHEN s.kind < 2 THEN s.n % 3 ELSE :max_retries END,
    CASE WHEN s.due THEN NULL ELSE now() - interval '3 days' END,
    CASE WHEN s.due THEN now() - (random() * interval '1 hour')
         WHEN s.kind < 2 THEN now() + interval '1 minute' + (random() * interval '1 day')
         ELSE NULL END,
    :max_retries, :initial, :multiplier, :max_delay, CAST('["email"]' AS jsonb),
    'soft', now() - interval '1 day' * (1 + (s.n / 5) % :spread_days),
    now() - interval '1 day' * (1 + (s.n / 5) % :spread_days)
FROM (
    SELECT t.id, t.n,
           (t.n * CAST(:due AS bigint)) / :rows > ((t.n - 1) * CAST(:due AS bigint)) / :rows AS due,
           t.n % 5 AS kind
    FROM (SELECT id, row_number() OVER (ORDER BY id) AS n
          FROM transactions WHERE organization_id = :org) AS t
) AS s
"""


# One email per attempt (its first reminder), an hour after it opened, in a spread of outcomes.
_LOGS = """
INSERT INTO notification_logs (
    organization_id, attempt_id, retry_number, channel, recipient, provider, status,
    send_attempts, created_at, updated_at
)
SELECT a.organization_id, a.id, 0, 'email', 'customer@example.com', 'smtp',
       (ARRAY['sent', 'delivered', 'delivered', 'failed', 'bounced', 'unconfirmed'])[1 + a.id % 6],
       1, a.created_at + interval '1 hour', a.created_at + interval '1 hour'
FROM recovery_attempts AS a
WHERE a.organization_id = :org
"""
_COUNTED = ("recovery_attempts", "notification_logs")


def _has_counters(connection: Connection) -> bool:
    return bool(connection.execute(text("SELECT to_regclass('daily_counts') IS NOT NULL")).scalar())


def fill(
    engine: Engine, *, rows: int, due: int, spread_days: int = 1, logs: bool = False
) -> FillReport:
    """One organization, `rows` transactions and attempts, `due` of them due now.

    Attempts open 1 to `spread_days` days ago (rows 5k to 5k + 4, one of each kind, on day
    1 + k mod `spread_days`); with `logs`, each has one email log row. The counting triggers
    are off during the bulk insert and the organization's daily counters are recounted at the
    end (the recount the repair command runs): a trigger per row would make a million-row
    fill minutes long.

    Ends with VACUUM ANALYZE, as autovacuum would have done on a table in steady use: the
    planner sees real statistics and index-only paths see an up-to-date visibility map.
    """
    if not 0 <= due <= rows:
        raise ValueError("due must be between 0 and rows")
    if spread_days < 1:
        raise ValueError("spread_days must be at least 1")
    started = time.perf_counter()
    params = {
        "spread_days": spread_days,
        "rows": rows,
        "due": due,
        "max_retries": MAX_RETRIES,
        "initial": INITIAL_DELAY_MINUTES,
        "multiplier": BACKOFF_MULTIPLIER,
        "max_delay": MAX_DELAY_MINUTES,
    }
    with engine.begin() as connection:
        org = connection.execute(text(_ORGANIZATION), {"slug": f"bench-{uuid.uuid4().hex[:8]}"})
        params["org"] = org.scalar_one()
        connection.execute(text("SET LOCAL synchronous_commit = off"))
        counted = _has_counters(connection)
        for table in _COUNTED if counted else ():
            connection.execute(text(f"ALTER TABLE {table} DISABLE TRIGGER USER"))
        connection.execute(text(_TRANSACTIONS), params)
        connection.execute(text(_ATTEMPTS), params)
        if logs:
            connection.execute(text(_LOGS), params)
        for table in _COUNTED if counted else ():
            connection.execute(text(f"ALTER TABLE {table} ENABLE TRIGGER USER"))
        if counted:
            from stealth_recovery.counters.definitions import recount_sql

            connection.execute(
                text(recount_sql("postgresql", one_organization=True)),
                {"organization_id": params["org"]},
            )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(
            text(
                "VACUUM ANALYZE organizations, transactions, recovery_attempts, "
                "notification_logs" + (", daily_counts" if counted else "")
            )
        )
    return FillReport(rows=rows, due=due, seconds=time.perf_counter() - started)


def empty(engine: Engine) -> None:
    """Remove every row the benchmark made (and the logs the engine wrote)."""
    with engine.begin() as connection:
        connection.execute(
            text(
                "TRUNCATE notification_logs, recovery_attempts, failure_events, transactions, "
                "organizations RESTART IDENTITY CASCADE"
            )
        )
