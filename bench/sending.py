"""Sending cost: worker CPU per delivery and deliveries per second, a reference commit vs this
checkout, in one run.

    .venv/bin/python -m bench.sending --redis-url redis://127.0.0.1:6379/7
    .venv/bin/python -m bench.sending --quick --redis-url redis://127.0.0.1:6379/7

The reference (`--reference`, a commit of this repository) is checked out in a temporary git
worktree and run with this environment's packages, its own `src/` first on PYTHONPATH. Each
engine delivers the same freshly filled due attempts through the same SMTP sink in three ways:
embedded on SQLite, embedded on PostgreSQL (`run_due_now()` in a process of its own, what
`serve` runs), and a Celery worker. See bench/README.md for how to read the figures.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import typer
from sqlalchemy import CursorResult, Engine, MetaData, create_engine, text

from bench import fill as filling
from bench.machine import CpuMeter, describe
from bench.report import log, publish
from bench.smtp_process import SinkProcess
from bench.throughput import run_celery

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DEFAULT_OUTPUT = HERE / "results" / "sending.json"
QUICK_OUTPUT = HERE / "results" / "sending.quick.json"
RESULTS_START = "<!-- sending:start -->"
RESULTS_END = "<!-- sending:end -->"
# The commit this work started from: the engine before the sending changes.
REFERENCE = "9d2636a"
TARGET_CPU_RATIO = 0.5

app = typer.Typer(add_completion=False)


@contextlib.contextmanager
def reference_checkout(commit: str) -> Iterator[Path]:
    """`commit` in a temporary worktree (removed afterwards); yields its `src/`."""
    folder = Path(tempfile.mkdtemp(prefix="sr-bench-reference-"))
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(folder), commit],
        check=True,
        capture_output=True,
    )
    try:
        yield folder / "src"
    finally:
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(folder)],
            check=False,
            capture_output=True,
        )


def _env(src: Path, extra: dict[str, str]) -> dict[str, str]:
    """The environment of a process running the engine of `src` (bench/ from this checkout)."""
    env = {k: v for k, v in os.environ.items() if k not in ("SMTP_USER", "SMTP_PASSWORD")}
    env.update(extra)
    env["PYTHONPATH"] = os.pathsep.join([str(src), str(ROOT)])
    return env


def migrate(src: Path, url: str) -> None:
    """Migrate `url` with the migrations of the engine in `src`."""
    code = (
        "import sys; from sqlalchemy import create_engine; "
        "from stealth_recovery.core.migrate import upgrade_to_head; "
        "upgrade_to_head(create_engine(sys.argv[1]))"
    )
    subprocess.run([sys.executable, "-c", code, url], env=_env(src, {}), check=True)


def fill_portable(engine: Engine, *, rows: int) -> None:
    """`rows` due attempts at step 0, as `bench.fill.fill` makes them, on any database.

    Written into the tables as the engine under test migrated them (reflected), not as this
    checkout's models declare them: a column added since the reference is left out (its
    server default fills it in a newer schema).
    """
    now = datetime.now(UTC)
    with engine.begin() as connection:
        tables = MetaData()
        tables.reflect(connection, only=["organizations", "transactions", "recovery_attempts"])

        def insert(name: str, values: list[dict[str, Any]]) -> CursorResult[Any]:
            table = tables.tables[name]
            stamped = [{"created_at": now, "updated_at": now, **row} for row in values]
            return connection.execute(
                table.insert(), [{k: v for k, v in row.items() if k in table.c} for row in stamped]
            )

        insert("organizations", [{"name": "Bench Merchant", "slug": "bench"}])
        org = connection.execute(text("SELECT max(id) FROM organizations")).scalar_one()
        insert(
            "transactions",
            [
                {
                    "organization_id": org,
                    "external_ref": f"bench-{i}",
                    "amount_minor": 1000 + i % 9000,
                    "currency": "EUR",
                    "customer_email": f"customer{i}@example.com",
                    "customer_name": f"Customer {i}",
                    "customer_locale": "en",
                    "customer_timezone": "UTC",
                }
                for i in range(1, rows + 1)
            ],
        )
        ids = [row[0] for row in connection.execute(text("SELECT id FROM transactions"))]
        insert(
            "recovery_attempts",
            [
                {
                    "organization_id": org,
                    "transaction_id": transaction_id,
                    "token": secrets.token_hex(32),
                    "status": "created",
                    "expires_at": now + timedelta(days=6),
                    "retry_count": 0,
                    "next_retry_at": now - timedelta(seconds=i % 3600),
                    "max_retries": filling.MAX_RETRIES,
                    "initial_delay_minutes": filling.INITIAL_DELAY_MINUTES,
                    "backoff_multiplier": filling.BACKOFF_MULTIPLIER,
                    "max_delay_minutes": filling.MAX_DELAY_MINUTES,
                    "enabled_channels": ["email"],
                    "decline_category": "soft",
                }
                for i, transaction_id in enumerate(ids)
            ],
        )


def outcome(engine: Engine) -> dict[str, int]:
    """Attempts advanced and log rows by status (portable SQL)."""
    with engine.connect() as connection:
        advanced = connection.execute(
            text("SELECT count(*) FROM recovery_attempts WHERE retry_count = 1")
        ).scalar_one()
        logs = dict(
            connection.execute(
                text("SELECT status, count(*) FROM notification_logs GROUP BY status")
            ).all()
        )
    return {"advanced": int(advanced), "logs_sent": int(logs.get("sent", 0))}


def run_embedded(
    *, src: Path, url: str, engine: Engine, sink: SinkProcess, attempts: int
) -> dict[str, Any]:
    """`bench.sending_worker` (the engine of `src`) until every due step is done."""
    env = _env(
        src,
        {
            "DATABASE_URL": url,
            "SMTP_HOST": sink.host,
            "SMTP_PORT": str(sink.port),
            "SMTP_SECURITY": "none",
            "LOG_LEVEL": "WARNING",
        },
    )
    sink_before = sink.stats().messages
    meter = CpuMeter({"smtp_sink": sink.pid}).start()
    finished = subprocess.run(
        [sys.executable, "-m", "bench.sending_worker"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    cpu = meter.stop()
    report = json.loads(finished.stdout.strip().splitlines()[-1])
    if not report["engine_from"].startswith(str(src)):
        raise RuntimeError(f"the worker ran {report['engine_from']}, not the engine in {src}")
    stats = sink.stats(since=sink_before)
    done = outcome(engine)
    return {
        "elapsed_s": round(report["elapsed_s"], 3),
        "worker_cpu_s": round(report["worker_cpu_s"], 3),
        "complete": done["advanced"] == attempts,
        **done,
        "messages_received": stats.messages - sink_before,
        "duplicates": stats.messages - sink_before - stats.recipients,
        "machine": cpu,
    }


def run_worker_command(
    *,
    src: Path,
    url: str,
    engine: Engine,
    sink: SinkProcess,
    attempts: int,
    redis_url: str,
    processes: int,
) -> dict[str, Any]:
    """`bench.throughput.run_celery` with the worker command running the engine of `src`."""
    result = run_celery(
        url=url,
        engine=engine,
        sink=sink,
        attempts=attempts,
        redis_url=redis_url,
        concurrency=processes,
        overrides={},
        timeout=max(120.0, attempts / 20),
        worker_env={"PYTHONPATH": _env(src, {})["PYTHONPATH"]},
    )
    cpu = result["cpu"]
    return {
        "elapsed_s": result["elapsed_s"],
        "worker_cpu_s": cpu["celery_worker_cpu_s"],
        "dispatcher_cpu_s": cpu["bench_dispatcher_cpu_s"],
        "complete": result["complete"],
        "advanced": result["advanced"],
        "logs_sent": result["logs_sent"],
        "messages_received": result["messages_received"],
        "duplicates": result["messages_received"] - result["distinct_recipients"],
        "machine": {k: v for k, v in cpu.items() if not k.startswith(("celery_", "bench_"))},
    }


def _figures(run: dict[str, Any], attempts: int) -> dict[str, Any]:
    elapsed = run["elapsed_s"]
    run["deliveries_per_s"] = round(run["advanced"] / elapsed, 1) if elapsed else 0.0
    run["cpu_ms_per_delivery"] = round(1000 * run["worker_cpu_s"] / max(1, run["advanced"]), 3)
    run["load_average"] = [round(x, 2) for x in os.getloadavg()]
    return run


def measure_mode(
    mode: str,
    *,
    engines: dict[str, Path],
    rounds: int,
    attempts: int,
    admin_url: str,
    sink: SinkProcess,
    redis_url: str,
) -> dict[str, Any]:
    """Every engine `rounds` times on one path, the order swapped every round."""
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in engines}
    for round_number in range(rounds):
        order = list(engines) if round_number % 2 == 0 else list(reversed(engines))
        for name in order:
            src = engines[name]
            with _database(mode, admin_url, src) as (url, engine):
                if mode == "embedded, SQLite":
                    fill_portable(engine, rows=attempts)
                else:
                    filling.fill(engine, rows=attempts, due=attempts)
                if mode.startswith("embedded"):
                    run = run_embedded(
                        src=src, url=url, engine=engine, sink=sink, attempts=attempts
                    )
                else:
                    processes = int(mode.split()[1])
                    run = run_worker_command(
                        src=src,
                        url=url,
                        engine=engine,
                        sink=sink,
                        attempts=attempts,
                        redis_url=redis_url,
                        processes=processes,
                    )
            run = _figures(run, attempts)
            runs[name].append(run)
            log(
                f"{mode}, {name}: {run['deliveries_per_s']:.0f} deliveries/s, "
                f"{run['cpu_ms_per_delivery']:.3f} CPU ms per delivery"
            )
    summary = {
        name: {
            "deliveries_per_s": round(statistics.median(r["deliveries_per_s"] for r in rs), 1),
            "cpu_ms_per_delivery": round(
                statistics.median(r["cpu_ms_per_delivery"] for r in rs), 3
            ),
            "complete": all(r["complete"] for r in rs),
            "duplicates": sum(r["duplicates"] for r in rs),
        }
        for name, rs in runs.items()
    }
    base, new = summary["reference"], summary["this checkout"]
    return {
        "runs": runs,
        "summary": summary,
        "cpu_ratio": round(new["cpu_ms_per_delivery"] / base["cpu_ms_per_delivery"], 2),
        "throughput_ratio": round(new["deliveries_per_s"] / base["deliveries_per_s"], 2),
    }


@contextlib.contextmanager
def _database(mode: str, admin_url: str, src: Path) -> Iterator[tuple[str, Engine]]:
    """A fresh database for one run, migrated by the engine under test, dropped afterwards."""
    if mode == "embedded, SQLite":
        with tempfile.TemporaryDirectory(prefix="sr-bench-sqlite-") as folder:
            url = f"sqlite:///{folder}/bench.db"
            migrate(src, url)
            engine = create_engine(url)
            try:
                yield url, engine
            finally:
                engine.dispose()
        return
    url = filling.create_database(admin_url, "sending")
    engine = create_engine(url)
    try:
        migrate(src, url)
        yield url, engine
    finally:
        engine.dispose()
        filling.drop_database(admin_url, url)


def render_table(data: dict[str, Any]) -> str:
    """The Markdown results block for bench/README.md."""
    p, m = data["parameters"], data["machine"]
    lines = [
        f"Run of {data['generated_at']} on {m['cores']} cores ({m['cpu_model']}), "
        f"Python {m['python']}, PostgreSQL {m['postgresql']}; load average at start "
        f"{', '.join(str(x) for x in m['load_average_at_start'])}. {p['attempts']:,} due "
        f"attempts per run, SMTP latency {p['latency_ms']:.0f} ms, medians of "
        f"{p['rounds']} runs; reference `{p['reference']}` vs this checkout "
        f"(`{p['checkout']}`). Goal: CPU per delivery ≤ {TARGET_CPU_RATIO}× the reference's.",
        "",
        "| path | CPU ms / delivery (ref → new) | ratio | deliveries/s (ref → new) | ratio "
        "| all advanced | duplicates | load average (last run) |",
        "| --- | ---: | ---: | ---: | ---: | :---: | ---: | --- |",
    ]
    for mode, result in data["modes"].items():
        ref, new = result["summary"]["reference"], result["summary"]["this checkout"]
        complete = ref["complete"] and new["complete"]
        last = result["runs"]["this checkout"][-1]["load_average"]
        lines.append(
            f"| {mode} | {ref['cpu_ms_per_delivery']:.3f} → **{new['cpu_ms_per_delivery']:.3f}**"
            f" | **{result['cpu_ratio']:.2f}×** | {ref['deliveries_per_s']:,.0f} → "
            f"{new['deliveries_per_s']:,.0f} | {result['throughput_ratio']:.2f}× | "
            f"{'yes' if complete else 'NO'} | {ref['duplicates'] + new['duplicates']} | "
            f"{', '.join(str(x) for x in last)} |"
        )
    return "\n".join(lines)


@app.command()
def main(
    attempts: int = typer.Option(10_000, min=1, help="due attempts delivered per run"),
    latency_ms: float = typer.Option(100.0, min=0, help="SMTP sink hold per message (ms)"),
    rounds: int = typer.Option(2, min=1, help="runs of each engine per path (order alternates)"),
    reference: str = typer.Option(REFERENCE, help="the commit to compare with"),
    celery_processes: int = typer.Option(4, min=1, help="processes of the Celery run"),
    sqlite: bool = typer.Option(True, help="measure embedded on SQLite"),
    postgresql: bool = typer.Option(True, help="measure embedded on PostgreSQL"),
    celery: bool = typer.Option(True, help="measure the Celery worker over Redis"),
    postgres_url: str = typer.Option(
        os.environ.get(
            "BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
        ),
        help="a database on the server where the benchmark makes (and drops) its own",
    ),
    redis_url: str = typer.Option("redis://127.0.0.1:6379/14", help="broker (flushed!)"),
    quick: bool = typer.Option(False, help="smoke run: 500 attempts, one round"),
    output: Path | None = typer.Option(None, help="results JSON (default bench/results/)"),
    readme: bool | None = typer.Option(
        None, help="write the table into bench/README.md (default: yes, unless --quick)"
    ),
) -> None:
    """Deliver the same due attempts with the reference engine and this one; write results."""
    if quick:
        attempts, rounds = min(attempts, 500), 1
    os.environ.setdefault("ENVIRONMENT", "local")
    os.environ["LOG_LEVEL"] = "WARNING"
    os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(32))
    admin = create_engine(postgres_url)
    try:
        machine = describe(admin)
    finally:
        admin.dispose()
    checkout = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    modes = [
        *(["embedded, SQLite"] if sqlite else []),
        *(["embedded, PostgreSQL"] if postgresql else []),
        *([f"celery {celery_processes} processes"] if celery else []),
    ]
    data: dict[str, Any] = {
        "generated_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine,
        "parameters": {
            "attempts": attempts,
            "latency_ms": latency_ms,
            "rounds": rounds,
            "reference": reference,
            "checkout": checkout,
            "quick": quick,
        },
        "modes": {},
    }
    started = time.perf_counter()
    with (
        reference_checkout(reference) as reference_src,
        SinkProcess(latency=latency_ms / 1000) as sink,
    ):
        engines = {"reference": reference_src, "this checkout": ROOT / "src"}
        for mode in modes:
            data["modes"][mode] = measure_mode(
                mode,
                engines=engines,
                rounds=rounds,
                attempts=attempts,
                admin_url=postgres_url,
                sink=sink,
                redis_url=redis_url,
            )
    data["total_s"] = round(time.perf_counter() - started, 1)
    publish(
        data,
        path=output or (QUICK_OUTPUT if quick else DEFAULT_OUTPUT),
        block=render_table(data),
        markers=(RESULTS_START, RESULTS_END)
        if (readme if readme is not None else not quick)
        else None,
    )


if __name__ == "__main__":
    app()
