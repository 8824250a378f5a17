"""Ingestion throughput against a trivial FastAPI endpoint, and the service under overload.

Runs `stealth-recovery serve` (the embedded scheduler off) on a fresh PostgreSQL database, and a
trivial FastAPI POST endpoint (`bench.trivial_app`) under the same uvicorn, then:

1. **closed loop**: `--connections` clients (32) post as fast as answers come for `--seconds`,
   first to the reference, then `POST /v1/events/payment_failed` with an API key (a new failed
   payment each time): requests/s, p50/p99, and the ratio ingestion ÷ reference of the same run.
   The ingestion figure is the **sustainable rate** of this run;
2. **fixed rates** (open loops: each request sent on time whatever the answers, one connection
   each, for `--fixed-seconds`), to ingestion: at **half the reference's rate** (goal: p99 under
   100 ms, no request shed or failed) and at **twice the sustainable rate** (goal: completed
   requests/s above 80 % of the sustainable rate: overload sheds, it never stalls). Each counts
   completed (201), shed (503 or 429, with `Retry-After`), failed (anything else, or no answer
   within 35 s, above the pool's 30 s timeout). `--rate N` adds a run at N requests/s.

Writes `bench/results/ingest.json` (runs by `--label`, with the machine and its load average) and
the table in bench/README.md. Asserts no timing.

    .venv/bin/python -m bench.ingest --label after
    .venv/bin/python -m bench.ingest --label before --python ../old/.venv/bin/python
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from tests.support.processes import free_port

from bench.machine import CpuMeter, describe

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results" / "ingest.json"
README = ROOT / "README.md"
POSTGRES_ADMIN_URL = os.environ.get(
    "BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
PASSWORD = "correct horse battery staple"
TABLE_START = "<!-- ingest table: written by bench.ingest -->"
TABLE_END = "<!-- end of ingest table -->"


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _percentiles(samples: list[float]) -> dict[str, float]:
    if not samples:
        return {"p50_ms": 0.0, "p99_ms": 0.0}
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 1),
        "p99_ms": round(p99 * 1000, 1),
    }


def _wait_healthy(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 90
    while True:
        try:
            if httpx.post(url, json={}, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not start")
        time.sleep(0.3)


def _start(command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        command, env=env, cwd=ROOT.parent, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()


async def _closed_loop(
    url: str, headers: dict[str, str], body: Any, connections: int, seconds: float
) -> dict[str, Any]:
    latencies: list[float] = []
    errors: dict[str, int] = {}
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        deadline = time.perf_counter() + seconds

        async def one_client() -> None:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                try:
                    status = (await client.post(url, json=body(), headers=headers)).status_code
                except httpx.HTTPError as exc:
                    status = type(exc).__name__  # type: ignore[assignment]
                if status in (200, 201):
                    latencies.append(time.perf_counter() - started)
                else:
                    errors[str(status)] = errors.get(str(status), 0) + 1

        started = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(connections)))
        elapsed = time.perf_counter() - started
    return {
        "requests_per_second": round(len(latencies) / elapsed, 1),
        "completed": len(latencies),
        "errors": errors,
        **_percentiles(latencies),
    }


async def _open_loop(
    url: str, headers: dict[str, str], body: Any, rate: int, seconds: float
) -> dict[str, Any]:
    outcomes = {"completed": 0, "shed": 0, "failed": 0}
    shed_without_retry_after = 0
    completed_latencies: list[float] = []
    shed_latencies: list[float] = []
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)
    async with httpx.AsyncClient(limits=limits, timeout=35) as client:
        start = time.perf_counter()

        async def one(n: int) -> None:
            nonlocal shed_without_retry_after
            await asyncio.sleep(max(0.0, start + n / rate - time.perf_counter()))
            sent = time.perf_counter()
            try:
                response = await client.post(url, json=body(), headers=headers)
            except httpx.HTTPError:
                outcomes["failed"] += 1
                return
            took = time.perf_counter() - sent
            if response.status_code == 201:
                outcomes["completed"] += 1
                completed_latencies.append(took)
            elif response.status_code in (429, 503):
                outcomes["shed"] += 1
                shed_latencies.append(took)
                if "retry-after" not in response.headers:
                    shed_without_retry_after += 1
            else:
                outcomes["failed"] += 1

        await asyncio.gather(*(one(n) for n in range(int(rate * seconds))))
        elapsed = time.perf_counter() - start
    return {
        "offered": int(rate * seconds),
        **outcomes,
        "shed_without_retry_after": shed_without_retry_after,
        "completed_per_second": round(outcomes["completed"] / elapsed, 1),
        "elapsed_s": round(elapsed, 1),
        "completed": outcomes["completed"],
        "completed_latency": _percentiles(completed_latencies),
        "shed_latency": _percentiles(shed_latencies),
    }


def _metered(server_pid: int, loop: Coroutine[Any, Any, dict[str, Any]]) -> dict[str, Any]:
    """Run a closed loop and add the CPU the server spent per completed request (its process
    and children, from /proc): unlike requests/s, barely moved by the rest of the machine."""
    meter = CpuMeter({"server": server_pid, "client": os.getpid()}).start()
    result = asyncio.run(loop)
    cpu = meter.stop()
    done = max(1, result["completed"] + sum(result["errors"].values()))
    return {
        **result,
        "cpu": cpu,
        "server_cpu_ms_per_request": round(cpu["server_cpu_s"] * 1000 / done, 2),
        "client_cpu_ms_per_request": round(cpu["client_cpu_s"] * 1000 / done, 2),
    }


def _failure_body() -> dict[str, Any]:
    return {
        "transaction_ref": f"inv_{uuid.uuid4().hex}",
        "amount_minor": 4900,
        "currency": "EUR",
        "customer_email": "jane@example.com",
        "occurred_at": "2026-11-01T12:00:00Z",
    }


def _api_key(base: str) -> str:
    token = httpx.post(
        base + "/v1/auth/register",
        json={"organization_name": "Bench", "email": "bench@example.com", "password": PASSWORD},
        timeout=30,
    ).json()["access_token"]
    key = httpx.post(
        base + "/v1/api-keys",
        json={"name": "bench"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    key.raise_for_status()
    return str(key.json()["key"])


def run(args: argparse.Namespace) -> dict[str, Any]:
    name = f"sr_bench_ingest_{uuid.uuid4().hex[:8]}"
    admin = create_engine(args.postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    database_url = (
        make_url(args.postgres_url).set(database=name).render_as_string(hide_password=False)
    )
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "ENVIRONMENT": "test",
        "SECRET_KEY": "bench-" + "k" * 40,
        "EMBEDDED_SCHEDULER": "false",
        "LOG_LEVEL": "WARNING",
    }
    for variable in ("REDIS_URL", "CELERY_BROKER_URL", "BASE_URL"):
        env.pop(variable, None)
    service_port, reference_port = free_port(), free_port()
    service = _start(
        [args.python, "-m", "stealth_recovery.cli", "serve", "--port", str(service_port)]
        + (["--workers", str(args.workers)] if args.workers > 1 else []),
        env,
    )
    uvicorn = [sys.executable, "-m", "uvicorn", "bench.trivial_app:app", "--log-level", "warning"]
    reference = _start([*uvicorn, "--port", str(reference_port)], env)
    base = f"http://127.0.0.1:{service_port}"
    reference_url = f"http://127.0.0.1:{reference_port}/echo"
    try:
        _wait_healthy(base + "/healthz", service)
        _wait_healthy(reference_url, reference)
        headers = {"X-API-Key": _api_key(base)}
        ingest_url = base + "/v1/events/payment_failed"
        _say(f"{args.label}: closed loop, {args.connections} connections, {args.seconds} s each")
        ref = _metered(
            reference.pid,
            _closed_loop(reference_url, {}, _failure_body, args.connections, args.seconds),
        )
        ingest = _metered(
            service.pid,
            _closed_loop(ingest_url, headers, _failure_body, args.connections, args.seconds),
        )
        sustainable = ingest["requests_per_second"]
        rates = {
            "half_reference": max(1, round(ref["requests_per_second"] / 2)),
            "twice_sustainable": max(1, round(2 * sustainable)),
        }
        if args.rate:
            rates["fixed"] = args.rate
        fixed: dict[str, Any] = {}
        for name_, rate in rates.items():
            _say(f"{args.label}: {name_}, {rate} req/s for {args.fixed_seconds} s")
            fixed[name_] = {
                "rate": rate,
                **asyncio.run(
                    _open_loop(ingest_url, headers, _failure_body, rate, args.fixed_seconds)
                ),
            }
        with create_engine(database_url).connect() as connection:
            machine = describe(connection.engine)
    finally:
        _stop(service)
        _stop(reference)
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    ratio = ingest["requests_per_second"] / ref["requests_per_second"]
    return {
        "label": args.label,
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(args.python).absolute().parent.parent.parent
            if args.python != sys.executable
            else ROOT.parent,
            capture_output=True,
            text=True,
        ).stdout.strip(),
        "workers": args.workers,
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "reference": ref,
        "ingestion": ingest,
        "ratio": round(ratio, 3),
        "fixed_rates": fixed,
        "goals": _goals(ratio, ingest["requests_per_second"], fixed),
        "parameters": {
            "connections": args.connections,
            "seconds": args.seconds,
            "rate": args.rate,
            "fixed_seconds": args.fixed_seconds,
        },
        "machine": machine,
    }


def _goals(ratio: float, sustainable: float, fixed: dict[str, Any]) -> dict[str, bool]:
    """The issue's goals, read off this run (reported, never asserted)."""
    half, twice = fixed["half_reference"], fixed["twice_sustainable"]
    return {
        "ratio_at_least_0.3": ratio >= 0.3,
        "half_reference_p99_under_100_ms": half["completed_latency"]["p99_ms"] < 100,
        "half_reference_no_errors": half["shed"] + half["failed"] == 0,
        "twice_sustainable_above_80_percent": twice["completed_per_second"] > 0.8 * sustainable,
    }


def _cpu_cell(run: dict[str, Any]) -> str:
    reference = run["reference"].get("server_cpu_ms_per_request")
    ingestion = run["ingestion"].get("server_cpu_ms_per_request")
    if reference is None or ingestion is None:
        return "—"  # a run from before the CPU was measured
    return f"{reference} → **{ingestion}**"


def _table(runs: dict[str, Any]) -> str:
    lines = [
        "| run | workers | reference req/s | ingestion req/s (p50 / p99 ms) | ratio (≥ 0.3) | "
        "server CPU ms / request (reference → ingestion) | "
        "½ reference: rate, p99 ms (< 100), shed + failed (0) | "
        "2× sustainable: rate, completed/s (> 80 % of sustainable), shed / failed | "
        "load average |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- | --- | --- |",
    ]
    for label, r in runs.items():
        i = r["ingestion"]
        if "fixed_rates" not in r:  # a run from before the fixed-rate goals: 500 req/s only
            o = r["overload"]
            half_cell = "—"
            twice_cell = (
                f"500 (fixed): {o['completed_per_second']}; "
                f"{o['shed']} / {o['failed']} of {o['offered']}"
            )
        else:
            half, twice = r["fixed_rates"]["half_reference"], r["fixed_rates"]["twice_sustainable"]
            share = twice["completed_per_second"] / i["requests_per_second"] * 100
            half_cell = (
                f"{half['rate']}: **{half['completed_latency']['p99_ms']}**, "
                f"**{half['shed'] + half['failed']}** of {half['offered']}"
            )
            twice_cell = (
                f"{twice['rate']}: **{twice['completed_per_second']}** ({share:.0f} %), "
                f"{twice['shed']} / {twice['failed']}"
            )
        lines.append(
            f"| {label} ({r['commit']}) | {r['workers']} | {r['reference']['requests_per_second']}"
            f" | {i['requests_per_second']} ({i['p50_ms']} / {i['p99_ms']}) | "
            f"**{r['ratio']}×** | {_cpu_cell(r)} | {half_cell} | {twice_cell} | "
            f"{' '.join(str(x) for x in r['load_average'])} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--label", default="current", help="name of this run in the results")
    parser.add_argument("--python", default=sys.executable, help="interpreter that runs serve")
    parser.add_argument("--workers", type=int, default=1, help="serve --workers (new code only)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=int, default=0, help="an extra fixed-rate run (req/s)")
    parser.add_argument("--fixed-seconds", type=float, default=10.0)
    parser.add_argument("--postgres-url", default=POSTGRES_ADMIN_URL)
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--no-readme", action="store_true", help="leave bench/README.md alone")
    args = parser.parse_args()
    result = run(args)
    runs: dict[str, Any] = {}
    if args.output.exists():
        runs = json.loads(args.output.read_text()).get("runs", {})
    runs[args.label] = result
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"runs": runs}, indent=2) + "\n")
    if not args.no_readme and TABLE_START in README.read_text():
        text_ = README.read_text()
        head, rest = text_.split(TABLE_START, 1)
        tail = rest.split(TABLE_END, 1)[1]
        README.write_text(f"{head}{TABLE_START}\n{_table(runs)}\n{TABLE_END}{tail}")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
