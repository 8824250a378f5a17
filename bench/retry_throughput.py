"""Retry engine benchmark: deliveries per second end to end, and the cost of a queue claim.

    .venv/bin/python -m bench.retry_throughput            # the full run (1–3 minutes)
    .venv/bin/python -m bench.retry_throughput --quick    # a smoke run (~20 seconds)

See bench/README.md for what is measured and how to read the figures.
"""

from __future__ import annotations

import math
import os
import secrets
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer

from bench import fill as filling
from bench.claim import measure
from bench.machine import describe
from bench.report import log, publish
from bench.smtp_process import SinkProcess
from bench.throughput import run_celery, run_embedded
from stealth_recovery.core import database
from stealth_recovery.core.database import make_engine
from stealth_recovery.core.logging import configure_logging

HERE = Path(__file__).resolve().parent
DEFAULT_OUTPUT = HERE / "results" / "retry_throughput.json"
QUICK_OUTPUT = HERE / "results" / "retry_throughput.quick.json"
RESULTS_START = "<!-- results:start -->"
RESULTS_END = "<!-- results:end -->"

TARGET_DELIVERIES_PER_S = 1000.0
TARGET_CLAIM_RATIO = 2.0

app = typer.Typer(add_completion=False)


def _overrides(pairs: list[str]) -> dict[str, str]:
    result: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise typer.BadParameter(f"expected NAME=VALUE, got {pair!r}", param_hint="--env")
        result[name.upper()] = value
    return result


def _sizes(value: str) -> list[int]:
    try:
        sizes = [int(part.replace("_", "")) for part in value.split(",") if part.strip()]
    except ValueError:
        raise typer.BadParameter(
            "comma-separated row counts", param_hint="--claim-tables"
        ) from None
    if not sizes or min(sizes) < 1:
        raise typer.BadParameter("at least one positive row count", param_hint="--claim-tables")
    return sorted(sizes)


def _concurrencies(value: str) -> list[int]:
    try:
        given = [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise typer.BadParameter(
            "comma-separated counts", param_hint="--celery-concurrency"
        ) from None
    if not given or min(given) < 0:
        raise typer.BadParameter("counts of 0 or more", param_hint="--celery-concurrency")
    cpus = os.cpu_count() or 1
    # 0 is the worker's own default (two processes per CPU): name it by the count it means.
    return list(dict.fromkeys(n or 2 * cpus for n in given))


def measure_throughput(
    *,
    admin_url: str,
    attempts: int,
    latency: float,
    embedded: bool,
    concurrencies: list[int],
    redis_url: str,
    overrides: dict[str, str],
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    url = filling.create_database(admin_url, "throughput")
    engine = make_engine(url)
    try:
        filling.migrate(engine)
        with SinkProcess(latency=latency) as sink:
            log(f"SMTP sink on 127.0.0.1:{sink.port}, {latency * 1000:.0f} ms per message")
            if embedded:
                report = filling.fill(engine, rows=attempts, due=attempts)
                log(f"embedded: {attempts} due attempts filled in {report.seconds:.1f}s")
                results["embedded"] = run_embedded(
                    url=url, engine=engine, sink=sink, attempts=attempts, overrides=overrides
                )
                log(f"embedded: {results['embedded']['deliveries_per_s']} deliveries/s")
            for processes in concurrencies:
                filling.empty(engine)
                report = filling.fill(engine, rows=attempts, due=attempts)
                name = f"celery, {processes} processes"
                log(f"{name}: {attempts} due attempts filled in {report.seconds:.1f}s")
                results[name] = run_celery(
                    url=url,
                    engine=engine,
                    sink=sink,
                    attempts=attempts,
                    redis_url=redis_url,
                    concurrency=processes,
                    overrides=overrides,
                    timeout=max(120.0, attempts / 20),
                )
                log(f"{name}: {results[name]['deliveries_per_s']} deliveries/s")
    finally:
        database.reset_engine()
        engine.dispose()
        filling.drop_database(admin_url, url)
    return results


def measure_claims(
    *, admin_url: str, sizes: list[int], due_fraction: float, batch: int, repeats: int
) -> dict[str, Any]:
    # Each size at the given due fraction; a size whose due rows would not fill one batch is
    # measured again with exactly one batch due, so the sizes are compared claiming as many rows.
    cases: list[tuple[int, int]] = []
    for size in sizes:
        due = max(1, math.ceil(size * due_fraction))
        cases.append((size, due))
        if due < batch <= size:
            cases.append((size, batch))
    tables: list[dict[str, Any]] = []
    for size, due in cases:
        url = filling.create_database(admin_url, f"claim{size}")
        engine = make_engine(url)
        try:
            filling.migrate(engine)
            report = filling.fill(engine, rows=size, due=due)
            log(f"claim: {size} attempts ({due} due) filled in {report.seconds:.1f}s")
            timing = measure(engine, limit=batch, repeats=repeats)
            tables.append({"rows": size, "due": due, "fill_s": round(report.seconds, 1), **timing})
            log(f"claim: {size} rows: median {timing['claim_due_steps']['median_ms']} ms")
        finally:
            engine.dispose()
            filling.drop_database(admin_url, url)
    full = [t for t in tables if t["claim_due_steps"]["claimed"] == batch]
    ratio = None
    if len(full) >= 2 and full[0]["rows"] != full[-1]["rows"]:
        ratio = round(
            full[-1]["claim_due_steps"]["median_ms"] / full[0]["claim_due_steps"]["median_ms"], 2
        )
    return {"batch": batch, "repeats": repeats, "tables": tables, "ratio_largest_smallest": ratio}


def render_table(data: dict[str, Any]) -> str:
    """The Markdown results block for bench/README.md."""
    p = data["parameters"]
    m = data["machine"]
    lines = [
        f"Run of {data['generated_at']} on {m['cores']} cores ({m['cpu_model']}), "
        f"Python {m['python']}, PostgreSQL {m['postgresql']}; load average at start "
        f"{', '.join(str(x) for x in m['load_average_at_start'])}.",
        "",
    ]
    throughput = data.get("throughput", {})
    if throughput:
        lines += [
            f"**Deliveries** ({p['attempts']:,} due attempts, SMTP latency "
            f"{p['latency_ms']:.0f} ms; target ≥ {TARGET_DELIVERIES_PER_S:,.0f}/s)",
            "",
            "| path | deliveries/s | elapsed | all advanced | messages | duplicates | "
            "machine busy | CPU s (worker / PostgreSQL / sink / other) |",
            "| --- | ---: | ---: | :---: | ---: | ---: | ---: | --- |",
        ]
        for name, r in throughput.items():
            cpu = r["cpu"]
            worker = sum(v for k, v in cpu.items() if k.startswith(("bench_", "celery_")))
            lines.append(
                f"| {name} | **{r['deliveries_per_s']:,.0f}** | {r['elapsed_s']:.1f} s | "
                f"{'yes' if r['complete'] else 'NO'} | {r['messages_received']:,} | "
                f"{r['messages_received'] - r['distinct_recipients']} | "
                f"{cpu['machine_busy_pct']:.0f} % | {worker:.1f} / {cpu['postgresql_cpu_s']:.1f}"
                f" / {cpu['smtp_sink_cpu_s']:.1f} / {cpu['other_cpu_s']:.1f} |"
            )
        lines.append("")
    claims = data.get("claims")
    if claims:
        lines += [
            f"**Claim of a batch of {claims['batch']}** (medians of {claims['repeats']} "
            "rounds, each rolled back; a queue pass is `expire_due` + `cancel_exhausted_due` + "
            "`claim_due_steps` in one transaction)",
            "",
            "| attempts | due | claimed | claim median | claim p90 | expire_due | "
            "cancel_exhausted_due | queue pass |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for t in claims["tables"]:
            c = t["claim_due_steps"]
            lines.append(
                f"| {t['rows']:,} | {t['due']:,} | {c['claimed']:,} | **{c['median_ms']:.2f} ms** "
                f"| {c['p90_ms']:.2f} ms | {t['expire_due']['median_ms']:.2f} ms | "
                f"{t['cancel_exhausted_due']['median_ms']:.2f} ms | "
                f"{t['queue_pass']['median_ms']:.2f} ms |"
            )
        ratio = claims["ratio_largest_smallest"]
        if ratio is not None:
            lines += [
                "",
                f"Largest / smallest table, both claiming a full batch: **{ratio}×** "
                f"(target ≤ {TARGET_CLAIM_RATIO:g}×).",
            ]
    return "\n".join(lines)


@app.command()
def main(
    attempts: int = typer.Option(10_000, min=1, help="due attempts delivered per path"),
    latency_ms: float = typer.Option(100.0, min=0, help="SMTP sink hold per message (ms)"),
    claim_tables: str = typer.Option("10000,1000000", help="table sizes for the claim timing"),
    due_fraction: float = typer.Option(0.01, min=0, max=1, help="share of the table due"),
    claim_batch: int = typer.Option(500, min=1, help="rows per claim"),
    claim_repeats: int = typer.Option(20, min=1, help="claims timed per table"),
    embedded: bool = typer.Option(True, help="measure runtime.run_due_now() in this process"),
    celery: bool = typer.Option(True, help="measure `stealth-recovery worker` over Redis"),
    claims: bool = typer.Option(True, help="measure the claim on each table size"),
    celery_concurrency: str = typer.Option(
        "2,0", help="worker processes, one Celery run per value (0: the default, two per CPU)"
    ),
    env: list[str] = typer.Option(
        [], "--env", help="NAME=VALUE setting for the engine, e.g. SMTP_POOL_SIZE=200"
    ),
    postgres_url: str = typer.Option(
        os.environ.get(
            "BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
        ),
        help="a database on the server where the benchmark makes (and drops) its own",
    ),
    redis_url: str = typer.Option("redis://127.0.0.1:6379/14", help="broker (flushed!)"),
    quick: bool = typer.Option(False, help="smoke run: 300 attempts, tables of 2k and 20k"),
    output: Path | None = typer.Option(None, help="results JSON (default bench/results/)"),
    readme: bool | None = typer.Option(
        None, help="write the table into bench/README.md (default: yes, unless --quick)"
    ),
) -> None:
    """Fill PostgreSQL, deliver through a loopback SMTP sink, time the claims; write results."""
    if quick:
        attempts, claim_tables, claim_repeats = min(attempts, 300), "2000,20000", 5
    overrides = _overrides(env)
    sizes = _sizes(claim_tables)
    concurrencies = _concurrencies(celery_concurrency)
    os.environ.setdefault("ENVIRONMENT", "local")
    os.environ["LOG_LEVEL"] = "WARNING"
    # The benchmark's databases are throwaway: a fresh key per run (PostgreSQL needs one).
    os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(32))

    configure_logging("WARNING")
    admin = make_engine(postgres_url)
    try:
        machine = describe(admin)
    finally:
        admin.dispose()
    started = time.perf_counter()
    data: dict[str, Any] = {
        "generated_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine,
        "parameters": {
            "attempts": attempts,
            "latency_ms": latency_ms,
            "claim_tables": sizes,
            "due_fraction": due_fraction,
            "claim_batch": claim_batch,
            "claim_repeats": claim_repeats,
            "celery_concurrency": concurrencies,
            "overrides": overrides,
            "quick": quick,
        },
        "targets": {
            "deliveries_per_s": TARGET_DELIVERIES_PER_S,
            "claim_ratio_largest_smallest": TARGET_CLAIM_RATIO,
        },
    }
    if embedded or (celery and concurrencies):
        data["throughput"] = measure_throughput(
            admin_url=postgres_url,
            attempts=attempts,
            latency=latency_ms / 1000,
            embedded=embedded,
            concurrencies=concurrencies if celery else [],
            redis_url=redis_url,
            overrides=overrides,
        )
    if claims:
        data["claims"] = measure_claims(
            admin_url=postgres_url,
            sizes=sizes,
            due_fraction=due_fraction,
            batch=claim_batch,
            repeats=claim_repeats,
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
