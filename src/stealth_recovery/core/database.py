"""Engine, sessions and the column types every model shares.

Only the edges commit: the request dependency (`get_session`) and `session_scope()` used by tasks.
Services and repositories flush.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from anyio import CancelScope
from fastapi import Depends, Request
from sqlalchemy import (
    JSON,
    DateTime,
    Engine,
    Integer,
    MetaData,
    any_,
    bindparam,
    create_engine,
    event,
    select,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.dialects.postgresql import Insert as PgInsert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import Insert as SqliteInsert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.sql.elements import BindParameter, ColumnElement
from sqlalchemy.sql.selectable import ExecutableReturnsRows
from sqlalchemy.types import TypeDecorator
from starlette.concurrency import run_in_threadpool

from stealth_recovery.core.jobs import has_jobs
from stealth_recovery.core.settings import get_settings

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on every backend.

    PostgreSQL stores `timestamptz`; SQLite has no time zones, so the value is stored as naive UTC
    and made aware again on the way out. Naive datetimes are refused on the way in.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


JSONType = JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" event issue BEGIN IMMEDIATE (below) instead of pysqlite.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


WRITE_OPTION = "sr_write"


def _sqlite_begin(connection: Any) -> None:
    # SQLite's single-writer path: a unit of work that will write takes the write lock when it
    # starts (BEGIN IMMEDIATE), so concurrent writers wait their turn (busy_timeout) instead of
    # failing when a read transaction tries to become a write one. Readers stay deferred.
    if connection.get_execution_options().get(WRITE_OPTION):
        connection.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        connection.exec_driver_sql("BEGIN")


def make_engine(url: str, **kwargs: Any) -> Engine:
    # Statement parameters (addresses, tokens) stay out of error messages and so out of logs.
    kwargs.setdefault("hide_parameters", True)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False}, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    size = connections_per_process()
    # Every connection kept once opened: with an overflow, each request past the pool's size
    # opened a connection (a server process) and closed it again.
    kwargs.setdefault("pool_size", size)
    kwargs.setdefault("max_overflow", 0)
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


# Connections `pool_size_for` leaves to everything but the web processes: Celery workers and
# Beat (their pools are sized on their hosts), migrations, the CLI, an operator's psql.
RESERVED_CONNECTIONS = 10
MAX_POOL_SIZE = 30  # per web process: more connections than this buy no throughput on one host


def connections_per_process() -> int:
    """The most database connections this process opens (its pool with the overflow)."""
    return get_settings().database_pool_size or MAX_POOL_SIZE


def pool_size_for(*, processes: int, max_connections: int, superuser_reserved: int) -> int:
    """Connections per web process so that `processes` of them fit the server.

    The rule: (max_connections − superuser_reserved_connections − RESERVED_CONNECTIONS) shared
    evenly by the processes, at most MAX_POOL_SIZE each. 0 when they do not fit.
    """
    available = max_connections - superuser_reserved - RESERVED_CONNECTIONS
    return max(0, min(MAX_POOL_SIZE, available // processes))


def server_connection_limits(engine: Engine) -> tuple[int, int]:
    """PostgreSQL's (max_connections, superuser_reserved_connections)."""
    with engine.connect() as connection:
        limit = connection.exec_driver_sql("SHOW max_connections").scalar_one()
        reserved = connection.exec_driver_sql("SHOW superuser_reserved_connections").scalar_one()
    return int(limit), int(reserved)


_engine: Engine | None = None
_session_factory: sessionmaker[Session] | None = None
# (engine, that engine with WRITE_OPTION): made once per engine, not per request.
_write_engine: tuple[Engine, Engine] | None = None


def get_engine() -> Engine:
    global _engine
    if _engine is None:
        _engine = make_engine(get_settings().sqlalchemy_url)
    return _engine


def get_session_factory() -> sessionmaker[Session]:
    global _session_factory
    if _session_factory is None:
        _session_factory = sessionmaker(bind=get_engine(), expire_on_commit=False)
    return _session_factory


def _get_write_engine() -> Engine:
    global _write_engine
    engine = get_engine()
    if _write_engine is None or _write_engine[0] is not engine:
        _write_engine = (engine, engine.execution_options(**{WRITE_OPTION: True}))
    return _write_engine[1]


def configure_engine(engine: Engine) -> None:
    """Point the process at another engine (tests, CLI overrides)."""
    global _engine, _session_factory
    _engine = engine
    _session_factory = sessionmaker(bind=engine, expire_on_commit=False)


def reset_engine() -> None:
    global _engine, _session_factory
    if _engine is not None:
        _engine.dispose()
    _engine = None
    _session_factory = None


def open_session(*, write: bool) -> Session:
    """A session; a writer's transaction is `BEGIN IMMEDIATE` on SQLite.

    The transaction starts at the session's first statement, not here, so work done before it
    (hashing a password, for one) never holds SQLite's write lock.
    """
    if not write:
        return get_session_factory()()
    return get_session_factory()(bind=_get_write_engine())


_WROTE = "sr_wrote"  # session.info key: the current transaction has written


@event.listens_for(Session, "after_flush")
def _note_flush(session: Session, _context: Any) -> None:
    session.info[_WROTE] = True


@event.listens_for(Session, "do_orm_execute")
def _note_statement(state: Any) -> None:
    if state.is_insert or state.is_update or state.is_delete:
        state.session.info[_WROTE] = True


@event.listens_for(Session, "after_transaction_end")
def _forget_writes(session: Session, transaction: Any) -> None:
    if transaction.parent is None:  # the outermost transaction, not a savepoint
        session.info.pop(_WROTE, None)


def end_idle_transaction(session: Session) -> None:
    """Before slow work (argon2): end the unit of work's transaction if it has only read so far.

    A writer's first statement takes SQLite's write lock (`BEGIN IMMEDIATE`), and a request's
    first statement is usually its authentication. Ending a transaction that has written nothing
    releases the lock without committing any change, so the hashing that follows holds none; the
    next statement begins a new transaction (and takes the lock again). Rows already loaded stay
    loaded. A transaction that has flushed or executed an INSERT/UPDATE/DELETE, has pending
    changes or jobs waiting for its commit is left alone: its changes commit together, at the
    edge, or not at all. Does nothing outside a transaction; harmless on PostgreSQL.
    """
    if not session.in_transaction():
        return
    if session.new or session.dirty or session.deleted or session.info.get(_WROTE):
        return
    if has_jobs(session):
        return
    session.commit()


@contextmanager
def session_scope(*, write: bool = True) -> Iterator[Session]:
    """A unit of work for tasks and CLI commands: commit on success, roll back on error."""
    session = open_session(write=write)
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def _finish(session: Session, *, commit: bool) -> None:
    try:
        if commit:
            session.commit()
        else:
            session.rollback()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


@asynccontextmanager
async def _request_session(*, write: bool) -> AsyncIterator[Session]:
    """One session per request, committed when the handler returns, rolled back if it raises.

    Async, so that opening the session (no I/O: its transaction begins at its first statement)
    costs no hand-off to a worker thread; the commit or rollback runs in one, shielded from the
    request's cancellation so that the connection always goes back to the pool.
    """
    session = open_session(write=write)
    try:
        yield session
    except BaseException:
        with CancelScope(shield=True):
            await run_in_threadpool(_finish, session, commit=False)
        raise
    with CancelScope(shield=True):
        await run_in_threadpool(_finish, session, commit=True)


async def get_session(request: Request) -> AsyncIterator[Session]:
    """FastAPI dependency: one session per request, committed when the handler returns; a
    writer's unless the method is GET, HEAD or OPTIONS."""
    async with _request_session(write=request.method not in _READ_METHODS) as session:
        yield session


_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


async def get_read_session() -> AsyncIterator[Session]:
    """FastAPI dependency for a POST that only reads (a login: it must not hold the write lock
    of SQLite while the password is hashed)."""
    async with _request_session(write=False) as session:
        yield session


async def get_write_session() -> AsyncIterator[Session]:
    """FastAPI dependency for a GET that writes (the pay page records its first opening)."""
    async with _request_session(write=True) as session:
        yield session


# The request's session, as a route parameter. scope="function": the unit of work commits
# before the response is sent, so a client never reads ahead of its own write and a failed
# commit is an error response, not a false success.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
WriteSessionDep = Annotated[Session, Depends(get_write_session, scope="function")]
ReadSessionDep = Annotated[Session, Depends(get_read_session, scope="function")]


# ---------------------------------------------------------------------------------------------
# Writes in one statement: INSERT … ON CONFLICT … RETURNING (PostgreSQL, and SQLite ≥ 3.35)

Upsert = PgInsert | SqliteInsert
_M = TypeVar("_M", bound=Base)


def dialect_of(session: Session) -> str:
    """The name of the session's database dialect: "postgresql" or "sqlite"."""
    return session.get_bind().dialect.name


def insert_for(dialect: str, model: type[Base]) -> Upsert:
    """`INSERT INTO model` in `dialect`, so `.on_conflict_do_…` is available."""
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    return insert(model)


def upsert_into(session: Session, model: type[Base]) -> Upsert:
    """`INSERT INTO model` in the session's dialect, so `.on_conflict_do_…` is available."""
    return insert_for(dialect_of(session), model)


def typed_params(model: type[Base], names: Iterable[str]) -> dict[str, BindParameter[Any]]:
    """A bind parameter per column name, named after the column and typed as it is."""
    columns = model.__table__.c
    return {name: bindparam(name, type_=columns[name].type) for name in names}


def one_of_ids(column: ColumnElement[int], name: str, dialect: str) -> ColumnElement[bool]:
    """`column` is one of the ids bound as `name` (a list of int), for a statement built once
    and run with any number of ids: `= ANY(:name)` on PostgreSQL (one statement text whatever
    the count, so the server prepares it once), an expanding `IN` elsewhere."""
    if dialect == "postgresql":
        return column == any_(bindparam(name, type_=ARRAY(Integer)))
    return column.in_(bindparam(name, expanding=True))


def insert_select_where(
    dialect: str, model: type[Base], names: Sequence[str], where: ColumnElement[bool]
) -> Upsert:
    """`INSERT INTO model (names) SELECT :names WHERE <where>`: the row is written only while
    the condition holds, checked in the same statement (so `.on_conflict_do_…` still applies).

    Every value is a bind parameter named after its column (`typed_params`), so the statement
    is built once and run with a dict of values; `where` may use bind parameters of its own.
    """
    source = select(*typed_params(model, names).values()).where(where)
    return insert_for(dialect, model).from_select(list(names), source)


def loading_returned(model: type[Base], statement: Upsert) -> ExecutableReturnsRows:
    """`statement RETURNING` every column of `model`, run through the ORM so that the row it
    returns is loaded as the session's object: no second read of what was written."""
    return select(model).from_statement(statement.returning(*model.__table__.c))


def returned_row(
    session: Session,
    model: type[_M],
    statement: ExecutableReturnsRows,
    params: Mapping[str, Any],
) -> _M | None:
    """Run a `loading_returned(model, …)` statement with `params`; the `model` object written,
    or None when it wrote nothing.

    Statements are built once per shape and dialect and kept (`functools.cache`): SQLAlchemy
    then reuses their cache key and compiled form, where building the statement again for each
    report cost more CPU than running it (issue #20's profile of ingestion).
    """
    loaded = session.scalars(statement, params, execution_options={"populate_existing": True})
    row: _M | None = loaded.one_or_none()
    return row
