"""Stats and dashboard read time at 10,000 and 1,000,000 attempts, old code beside new.

    .venv/bin/python -m bench.stats                       # this checkout only
    .venv/bin/python -m bench.stats --baseline ../old     # and another checkout, same tables

For each size a fresh PostgreSQL database is migrated (this checkout's migrations) and filled by
`bench.fill`: one organization, attempts opened over `--days` days (1 % due, the rest open or
final), one email log row each, counters recounted. Then each code is timed on the same tables,
each in a process of its own: `retry.stats.compute_stats` (what `GET /v1/retry/stats` runs) and
`dashboard.overview.build_overview` for 30 days (what `/dashboard` runs, charts drawn, the page
template aside), each in a fresh session, median of `--requests` after 3 warm-up calls. The
ratio largest/smallest size and the time at the largest are the figures the goals name
(≤ 1.5×, < 50 ms). It asserts no timing; results go to bench/results/stats.json and the table
in bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "stats.json"
README = ROOT / "bench" / "README.md"
TABLE_START = "<!-- stats table: written by bench.stats -->"
TABLE_END = "<!-- end of stats table -->"
POSTGRES_URL = os.environ.get(
    "BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


def measure(url: str, organization_id: int, requests: int) -> dict[str, list[float]]:
    """Time the two reads with whatever `stealth_recovery` this interpreter imports (ms)."""
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    from stealth_recovery.dashboard.overview import build_overview
    from stealth_recovery.retry.stats import compute_stats

    engine = create_engine(url, pool_size=2)
    reads = {
        "stats": lambda s: compute_stats(s, organization_id=organization_id),
        "dashboard": lambda s: build_overview(s, organization_id=organization_id, period_days=30),
    }
    timings: dict[str, list[float]] = {}
    for name, read in reads.items():
        samples = []
        for n in range(3 + requests):
            with Session(engine) as session:
                started = time.perf_counter()
                read(session)
                elapsed = (time.perf_counter() - started) * 1000
            if n >= 3:
                samples.append(elapsed)
        timings[name] = samples
    engine.dispose()
    return timings


def _measure_in(python: str, source: Path | None, url: str, org: int, requests: int) -> dict:
    env = dict(os.environ)
    if source is not None:
        # The other checkout's package first; `bench` still comes from this one (cwd).
        env["PYTHONPATH"] = str(source / "src")
    result = subprocess.run(
        [python, "-m", "bench.stats", "--measure", url, str(org), str(requests)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def _summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "median_ms": round(statistics.median(ordered), 2),
        "p90_ms": round(ordered[int(0.9 * (len(ordered) - 1))], 2),
    }


def _commit(path: Path) -> str:
    return subprocess.run(
        ["git", "-C", str(path), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()


def run(args: argparse.Namespace) -> dict[str, Any]:
    from sqlalchemy import create_engine, text

    from bench import fill as filling
    from bench.machine import describe

    admin = create_engine(args.postgres_url)
    machine = describe(admin)
    admin.dispose()
    print(f"load average at start: {machine['load_average_at_start']}", flush=True)
    codes: list[tuple[str, str, Path | None]] = [("new", sys.executable, None)]
    if args.baseline:
        baseline = Path(args.baseline).resolve()
        python = str(baseline / ".venv" / "bin" / "python")
        codes.insert(0, ("old", python, baseline))
    rows: list[dict[str, Any]] = []
    for size in args.sizes:
        url = filling.create_database(args.postgres_url, "stats")
        try:
            engine = create_engine(url)
            filling.migrate(engine)
            report = filling.fill(
                engine, rows=size, due=size // 100, spread_days=args.days, logs=True
            )
            with engine.connect() as connection:
                org = connection.execute(text("SELECT min(id) FROM organizations")).scalar_one()
                counters = connection.execute(text("SELECT count(*) FROM daily_counts")).scalar()
            engine.dispose()
            print(f"{size:,} attempts filled in {report.seconds:.1f} s", flush=True)
            for code, python, source in codes:
                timings = _measure_in(python, source, url, org, args.requests)
                row = {
                    "code": code,
                    "commit": _commit(source or ROOT),
                    "attempts": size,
                    "log_rows": size,
                    "counter_rows": counters,
                    "load_average": [round(x, 2) for x in os.getloadavg()],
                    **{name: _summary(samples) for name, samples in timings.items()},
                }
                print(json.dumps(row), flush=True)
                rows.append(row)
        finally:
            filling.drop_database(args.postgres_url, url)
    ratios = {}
    small, large = min(args.sizes), max(args.sizes)
    for code, _python, _source in codes:
        by_size = {r["attempts"]: r for r in rows if r["code"] == code}
        ratios[code] = {
            name: round(by_size[large][name]["median_ms"] / by_size[small][name]["median_ms"], 2)
            for name in ("stats", "dashboard")
        }
    return {
        "run_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine,
        "parameters": {"sizes": args.sizes, "requests": args.requests, "days": args.days},
        "rows": rows,
        "ratios_largest_to_smallest": ratios,
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
    }


def _table(result: dict[str, Any]) -> str:
    small, large = min(result["parameters"]["sizes"]), max(result["parameters"]["sizes"])
    lines = [
        f"Run of {result['run_at']}, load average at start "
        f"{' '.join(str(x) for x in result['machine']['load_average_at_start'])}, at end "
        f"{' '.join(str(x) for x in result['load_average_at_end'])}; "
        f"{result['parameters']['requests']} requests per figure, attempts over "
        f"{result['parameters']['days']} days, one log row each.",
        "",
        "| code | attempts | stats median (p90) | dashboard median (p90) | load average |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    for row in result["rows"]:
        lines.append(
            f"| {row['code']} ({row['commit']}) | {row['attempts']:,} "
            f"| {row['stats']['median_ms']} ms ({row['stats']['p90_ms']}) "
            f"| {row['dashboard']['median_ms']} ms ({row['dashboard']['p90_ms']}) "
            f"| {' '.join(str(x) for x in row['load_average'])} |"
        )
    lines.append("")
    for code, ratio in result["ratios_largest_to_smallest"].items():
        lines.append(
            f"- {code}: {large:,} / {small:,} = **{ratio['stats']}×** (stats), "
            f"**{ratio['dashboard']}×** (dashboard); goal ≤ 1.5× and < 50 ms at {large:,}."
        )
    return "\n".join(lines)


def _write_readme(table: str) -> None:
    text = README.read_text()
    start, end = text.index(TABLE_START), text.index(TABLE_END)
    README.write_text(text[: start + len(TABLE_START)] + "\n" + table + "\n" + text[end:])


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--measure":
        url, org, requests = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
        print(json.dumps(measure(url, org, requests)))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,1000000", help="attempts per table, commas")
    parser.add_argument("--requests", type=int, default=30, help="timed calls per figure")
    parser.add_argument("--days", type=int, default=90, help="days the attempts open over")
    parser.add_argument("--baseline", help="another checkout (with its .venv) to time as 'old'")
    parser.add_argument("--postgres-url", default=POSTGRES_URL)
    parser.add_argument("--output", default=str(RESULTS))
    parser.add_argument("--no-readme", action="store_true", help="leave bench/README.md alone")
    args = parser.parse_args()
    args.sizes = [int(s) for s in args.sizes.split(",")]
    result = run(args)
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    table = _table(result)
    print(table)
    if not args.no_readme:
        _write_readme(table)


if __name__ == "__main__":
    main()
