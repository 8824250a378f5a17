"""What each counter counts, and the SQL that keeps the counters: triggers and the recount.

A counter is one `daily_counts` row: an organization, a UTC day (the day the attempt opened, or
the day the message was written), a metric name and a shard, holding `n`. A metric is defined
once here, as a value counted for every row of its table that meets a condition; the triggers
(written by the migrations with `trigger_ddl`) and the recount (`recount_sql`) are both built
from these definitions, so they cannot disagree.

Triggers rather than increments in the repositories: every write that changes a counted column
is caught, whatever issues it — the named claims, bulk statements, ORM flushes of attributes
(`lease_step`, `make_due`, the tests' builders), the ingestion path — and no write adds a
database round trip. An update that changes nothing counted (a claim, a lease renewal) is
filtered out by the trigger's `WHEN` clause before any function runs.

Shards (PostgreSQL): a transaction writes the counters of one organization into the first of
`SHARDS` slots whose advisory lock it can take without waiting (`sr_counter_shard`); it keeps
that lock, and so that slot's rows, to its commit. Two transactions of one organization never
wait for each other's counter rows, however long their transactions last; readers sum the
shards. With more than `SHARDS` transactions of one organization writing at once, the next one
waits for a slot (its counter rows would otherwise be shared). SQLite has one writer: shard 0.
"""

from __future__ import annotations

from dataclasses import dataclass

SHARDS = 32
# The advisory lock namespace of the counter slots (MESSAGE_LOCK_NAMESPACE is 0x5352_0011).
SLOT_LOCK_NAMESPACE = 0x5352_0012

_OPEN = "('created', 'sent', 'opened')"
_WON = "{r}.status = 'completed' AND NOT {r}.test_payment"


@dataclass(frozen=True)
class Metric:
    """`value` counted under the name `name` for each row where `condition` holds.

    `{r}` stands for the row (NEW, OLD, or the table's alias in the recount); `t` is the
    attempt's transaction when `joins_transaction`.
    """

    name: str
    value: str = "1"
    condition: str = "TRUE"
    joins_transaction: bool = False


# recovery_attempts, by the UTC day the attempt opened.
ATTEMPT_METRICS: tuple[Metric, ...] = (
    # a:s:<status>: attempts by status now (their sum is every attempt)
    Metric("'a:s:' || {r}.status"),
    # a:test:<status>: test payments by status (a test payment is never a recovery)
    Metric("'a:test:' || {r}.status", condition="{r}.test_payment"),
    # a:pending: open with a reminder still to come (after the last, `next_retry_at` only
    # marks the end of the grace period)
    Metric(
        "'a:pending'",
        condition="{r}.status IN " + _OPEN + " AND {r}.next_retry_at IS NOT NULL"
        " AND {r}.retry_count < {r}.max_retries",
    ),
    # a:late: paid after the attempt had ended
    Metric("'a:late'", condition="{r}.status = 'completed' AND {r}.paid_after_end"),
    # a:retries: the sum of retry_count (the average's numerator)
    Metric("'a:retries'", value="{r}.retry_count", condition="{r}.retry_count <> 0"),
    # a:step:<k>: recoveries by the reminders out before the payment
    Metric("'a:step:' || COALESCE({r}.completed_after_step, 0)", condition=_WON),
    # a:rev:<currency>: recovered amount in minor units, at the transaction's amount now (a
    # trigger on transactions moves it when a newer report changes amount or currency)
    Metric(
        "'a:rev:' || t.currency",
        value="t.amount_minor",
        condition=_WON + " AND t.id = {r}.transaction_id",
        joins_transaction=True,
    ),
)
# Columns whose change can move an attempt's counters (an UPDATE of nothing else is ignored).
ATTEMPT_COLUMNS = (
    "organization_id",
    "transaction_id",
    "created_at",
    "status",
    "test_payment",
    "next_retry_at",
    "retry_count",
    "max_retries",
    "paid_after_end",
    "completed_after_step",
)
# `next_retry_at` counts only as null or not: a claim or a lease renewal moves it constantly.
_NULLNESS_ONLY = {"next_retry_at"}

# notification_logs, by the UTC day the message was written.
LOG_METRICS: tuple[Metric, ...] = (
    # m:<channel>:<status>: messages by channel and delivery status now
    Metric("'m:' || {r}.channel || ':' || {r}.status"),
    # m:kept: accepted by the local outbox (never reached a customer)
    Metric("'m:kept'", condition="{r}.provider = 'outbox' AND {r}.status IN ('sent', 'delivered')"),
)
LOG_COLUMNS = ("organization_id", "created_at", "channel", "status", "provider")

COUNTED_TABLES = {
    "recovery_attempts": (ATTEMPT_METRICS, ATTEMPT_COLUMNS),
    "notification_logs": (LOG_METRICS, LOG_COLUMNS),
}


def day_of(dialect: str, column: str) -> str:
    """The UTC calendar day of a timestamp column, as SQL (SQLite keeps naive UTC text)."""
    if dialect == "postgresql":
        return f"CAST(({column} AT TIME ZONE 'UTC') AS date)"
    return f"date({column})"


def _metric_rows(metrics: tuple[Metric, ...], row: str, sign: str) -> str:
    """The (metric, n) rows of one row state, as a UNION ALL of one SELECT per metric."""
    selects = []
    for metric in metrics:
        source = " FROM transactions AS t" if metric.joins_transaction else ""
        selects.append(
            f"SELECT {metric.name.format(r=row)} AS metric, {sign}({metric.value.format(r=row)})"
            f" AS n{source} WHERE {metric.condition.format(r=row)}"
        )
    return " UNION ALL ".join(selects)


def _upsert(dialect: str, metrics: tuple[Metric, ...], states: list[tuple[str, str]]) -> str:
    """One INSERT … ON CONFLICT adding the signed metrics of each (row, sign) state."""
    parts = [
        f"SELECT {row}.organization_id AS org, {day_of(dialect, row + '.created_at')} AS day,"
        f" x.metric AS metric, x.n AS n FROM ({_metric_rows(metrics, row, sign)}) AS x"
        for row, sign in states
    ]
    shard = "slot_no" if dialect == "postgresql" else "0"
    return (
        "INSERT INTO daily_counts (organization_id, day, metric, shard, n)"
        f" SELECT m.org, m.day, m.metric, {shard}, SUM(m.n) FROM ("
        + " UNION ALL ".join(parts)
        + ") AS m GROUP BY m.org, m.day, m.metric HAVING SUM(m.n) <> 0"
        # One order for every writer of the same slot's rows.
        " ORDER BY m.org, m.day, m.metric"
        " ON CONFLICT (organization_id, day, metric, shard)"
        " DO UPDATE SET n = daily_counts.n + excluded.n"
    )


def _changed(dialect: str, columns: tuple[str, ...]) -> str:
    distinct = "IS DISTINCT FROM" if dialect == "postgresql" else "IS NOT"
    terms = []
    for column in columns:
        if column in _NULLNESS_ONLY:
            terms.append(f"(OLD.{column} IS NULL) <> (NEW.{column} IS NULL)")
        else:
            terms.append(f"OLD.{column} {distinct} NEW.{column}")
    return " OR ".join(terms)


def slot_key(organization: str, slot: str) -> str:
    """The second key of a slot's advisory lock, as SQL over two integer expressions (in 32
    bits whatever the organization id; two organizations sharing a key only probe further)."""
    return f"CAST((CAST({organization} AS bigint) * {SHARDS} + {slot}) % 2147483648 AS integer)"


_SHARD_FUNCTION = f"""
CREATE OR REPLACE FUNCTION sr_counter_shard(org integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    slot integer;
BEGIN
    -- The first slot free or already ours (advisory locks are re-entrant), held to commit.
    FOR slot IN 0..{SHARDS - 1} LOOP
        IF pg_try_advisory_xact_lock({SLOT_LOCK_NAMESPACE}, {slot_key("org", "slot")}) THEN
            RETURN slot;
        END IF;
    END LOOP;
    -- Every slot busy: wait for one.
    slot := pg_backend_pid() % {SHARDS};
    PERFORM pg_advisory_xact_lock({SLOT_LOCK_NAMESPACE}, {slot_key("org", "slot")});
    RETURN slot;
END $$
"""


def trigger_ddl(dialect: str) -> list[str]:
    """The statements creating the counting triggers (and on PostgreSQL their functions)."""
    statements = [_SHARD_FUNCTION] if dialect == "postgresql" else []
    for table, (metrics, columns) in COUNTED_TABLES.items():
        inserted = _upsert(dialect, metrics, [("NEW", "+")])
        updated = _upsert(dialect, metrics, [("NEW", "+"), ("OLD", "-")])
        changed = _changed(dialect, columns)
        for event, body in (("INSERT", inserted), ("UPDATE", updated)):
            name = f"sr_count_{table}_{event.lower()}"
            if dialect == "postgresql":
                statements.append(
                    f"CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$"
                    " DECLARE slot_no integer; BEGIN"
                    " slot_no := sr_counter_shard(NEW.organization_id);"
                    f" {body}; RETURN NULL; END $$"
                )
                of = f" OF {', '.join(columns)}" if event == "UPDATE" else ""
                when = f" WHEN ({changed})" if event == "UPDATE" else ""
                statements.append(
                    f"CREATE TRIGGER {name} AFTER {event}{of} ON {table}"
                    f" FOR EACH ROW{when} EXECUTE FUNCTION {name}()"
                )
            else:
                when = f" WHEN {changed}" if event == "UPDATE" else ""
                statements.append(
                    f"CREATE TRIGGER {name} AFTER {event} ON {table} FOR EACH ROW{when}"
                    f" BEGIN {body}; END"
                )
    return statements + _transaction_trigger(dialect)


def _revenue_moves(dialect: str) -> str:
    """The upsert moving the recovered amount of a transaction's paid attempts from its old
    amount and currency to its new ones (a newer failure report updates them)."""
    won = _WON.format(r="a")
    parts = [
        f"SELECT a.organization_id AS org, {day_of(dialect, 'a.created_at')} AS day,"
        f" 'a:rev:' || {row}.currency AS metric, {sign}({row}.amount_minor) AS n"
        f" FROM recovery_attempts AS a WHERE a.transaction_id = {row}.id AND {won}"
        for row, sign in (("NEW", "+"), ("OLD", "-"))
    ]
    shard = "slot_no" if dialect == "postgresql" else "0"
    return (
        "INSERT INTO daily_counts (organization_id, day, metric, shard, n)"
        f" SELECT m.org, m.day, m.metric, {shard}, SUM(m.n) FROM ("
        + " UNION ALL ".join(parts)
        + ") AS m GROUP BY m.org, m.day, m.metric HAVING SUM(m.n) <> 0"
        " ORDER BY m.org, m.day, m.metric"
        " ON CONFLICT (organization_id, day, metric, shard)"
        " DO UPDATE SET n = daily_counts.n + excluded.n"
    )


def _transaction_trigger(dialect: str) -> list[str]:
    name = "sr_count_transactions_update"
    changed = _changed(dialect, ("amount_minor", "currency"))
    body = _revenue_moves(dialect)
    if dialect == "postgresql":
        return [
            f"CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$"
            " DECLARE slot_no integer; BEGIN"
            " slot_no := sr_counter_shard(NEW.organization_id);"
            f" {body}; RETURN NULL; END $$",
            f"CREATE TRIGGER {name} AFTER UPDATE OF amount_minor, currency ON transactions"
            f" FOR EACH ROW WHEN ({changed}) EXECUTE FUNCTION {name}()",
        ]
    return [
        f"CREATE TRIGGER {name} AFTER UPDATE ON transactions FOR EACH ROW WHEN {changed}"
        f" BEGIN {body}; END"
    ]


def drop_trigger_ddl(dialect: str) -> list[str]:
    """The statements removing what `trigger_ddl` created."""
    statements = []
    for table in COUNTED_TABLES:
        for event in ("insert", "update"):
            name = f"sr_count_{table}_{event}"
            if dialect == "postgresql":
                statements.append(f"DROP TRIGGER IF EXISTS {name} ON {table}")
                statements.append(f"DROP FUNCTION IF EXISTS {name}()")
            else:
                statements.append(f"DROP TRIGGER IF EXISTS {name}")
    if dialect == "postgresql":
        statements.append("DROP TRIGGER IF EXISTS sr_count_transactions_update ON transactions")
        statements.append("DROP FUNCTION IF EXISTS sr_count_transactions_update()")
        statements.append("DROP FUNCTION IF EXISTS sr_counter_shard(integer)")
    else:
        statements.append("DROP TRIGGER IF EXISTS sr_count_transactions_update")
    return statements


def recount_sql(dialect: str, *, one_organization: bool) -> str:
    """INSERT of every counter recounted from the rows (shard 0), for all organizations or the
    one bound as `:organization_id`."""
    selects = []
    for table, (metrics, _columns) in COUNTED_TABLES.items():
        for metric in metrics:
            join = (
                " JOIN transactions AS t ON t.id = r.transaction_id"
                if metric.joins_transaction
                else ""
            )
            scope = " AND r.organization_id = :organization_id" if one_organization else ""
            selects.append(
                f"SELECT r.organization_id AS org, {day_of(dialect, 'r.created_at')} AS day,"
                f" {metric.name.format(r='r')} AS metric, {metric.value.format(r='r')} AS n"
                f" FROM {table} AS r{join} WHERE {metric.condition.format(r='r')}{scope}"
            )
    return (
        "INSERT INTO daily_counts (organization_id, day, metric, shard, n)"
        " SELECT m.org, m.day, m.metric, 0, SUM(m.n) FROM ("
        + " UNION ALL ".join(selects)
        + ") AS m GROUP BY m.org, m.day, m.metric HAVING SUM(m.n) <> 0"
    )
