"""Pay page and ingestion latency while 32 bad logins run in parallel, on SQLite and PostgreSQL.

The service runs as `stealth-recovery serve` in a process of its own (the embedded scheduler
off). Each backend is measured twice on the same data: alone, then while 32 threads keep
sending logins with a wrong password. The login limits are raised out of the way so every
flood request really hashes a password (the worst case: with the default limits the flood
is answered 429 after 20 tries a minute per address, without hashing). Reports p50/p99/max
and any failed request; asserts no timing.

    .venv/bin/python -m bench.login_flood            # 300 rounds per phase, 2-4 minutes
    .venv/bin/python -m bench.login_flood --quick    # 60 rounds per phase
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from tests.support.processes import free_port

from bench.machine import describe

ROOT = Path(__file__).resolve().parent
POSTGRES_ADMIN_URL = os.environ.get(
    "BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
FLOOD_THREADS = 32
CLIENT_THREADS = 4
PASSWORD = "correct horse battery staple"


def _postgres_database() -> str:
    name = f"sr_bench_login_{uuid.uuid4().hex[:8]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)


def _drop_postgres_database(url: str) -> None:
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)'))
    admin.dispose()


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 1),
        "p99_ms": round(p99 * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1),
    }


class Service:
    """`stealth-recovery serve` on a free port with the given database."""

    def __init__(self, database_url: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "DATABASE_URL": database_url,
            "ENVIRONMENT": "test",
            "SECRET_KEY": "bench-" + "k" * 40,
            "EMBEDDED_SCHEDULER": "false",
            "LOG_LEVEL": "WARNING",
            "LOGIN_ATTEMPTS_PER_MINUTE": "1000000",
            "LOGIN_FAILURES_PER_ACCOUNT": "1000000",
            "TOKEN_RATE_LIMIT_PER_MINUTE": "1000000",
        }
        env.pop("REDIS_URL", None)
        command = [sys.executable, "-m", "stealth_recovery.cli", "serve", "--port", str(self.port)]
        self.process = subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(self.base + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the service did not start")
            time.sleep(0.2)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()


def _setup(base: str) -> tuple[str, str]:
    """An organization (by the public API), its API key; returns (admin email, key)."""
    email = f"bench-{uuid.uuid4().hex[:8]}@example.com"
    registered = httpx.post(
        base + "/v1/auth/register",
        json={"organization_name": "Bench", "email": email, "password": PASSWORD},
        timeout=30,
    )
    registered.raise_for_status()
    token = registered.json()["access_token"]
    key = httpx.post(
        base + "/v1/api-keys",
        json={"name": "bench"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    key.raise_for_status()
    return email, str(key.json()["key"])


def _phase(base: str, email: str, api_key: str, rounds: int, flood: bool) -> dict[str, Any]:
    stop = threading.Event()
    logins: dict[int, int] = {}
    lock = threading.Lock()

    def flood_worker() -> None:
        with httpx.Client(base_url=base, timeout=60) as client:
            while not stop.is_set():
                try:
                    status = client.post(
                        "/v1/auth/login", json={"email": email, "password": "wrong password!"}
                    ).status_code
                except httpx.HTTPError:
                    status = 0
                with lock:
                    logins[status] = logins.get(status, 0) + 1

    flooders = [threading.Thread(target=flood_worker) for _ in range(FLOOD_THREADS if flood else 0)]
    for thread in flooders:
        thread.start()
    if flood:
        time.sleep(2)  # let the flood reach full speed first

    ingest: list[float] = []
    pay: list[float] = []
    failures: dict[str, int] = {}

    def one_round(n: int) -> None:
        with httpx.Client(base_url=base, timeout=60) as client:
            body = {
                "transaction_ref": f"inv_{uuid.uuid4().hex}",
                "amount_minor": 4900,
                "currency": "EUR",
                "customer_email": "jane@example.com",
                "occurred_at": "2026-11-01T12:00:00Z",
            }
            started = time.perf_counter()
            try:
                response = client.post(
                    "/v1/events/payment_failed", json=body, headers={"X-API-Key": api_key}
                )
                status = response.status_code
            except httpx.HTTPError:
                status = 0
            ingest.append(time.perf_counter() - started)
            if status != 201:
                failures[f"ingest {status}"] = failures.get(f"ingest {status}", 0) + 1
                return
            path = httpx.URL(response.json()["pay_url"]).path
            started = time.perf_counter()
            try:
                status = client.get(path).status_code
            except httpx.HTTPError:
                status = 0
            pay.append(time.perf_counter() - started)
            if status != 200:
                failures[f"pay {status}"] = failures.get(f"pay {status}", 0) + 1

    _say(f"  {rounds} rounds of ingestion + pay page")
    started = time.perf_counter()
    with ThreadPoolExecutor(CLIENT_THREADS) as pool:
        list(pool.map(one_round, range(rounds)))
    elapsed = time.perf_counter() - started
    stop.set()
    for thread in flooders:
        thread.join()
    return {
        "flood": flood,
        "rounds": rounds,
        "seconds": round(elapsed, 1),
        "ingestion": {**_percentiles(ingest), "requests": len(ingest)},
        "pay_page": {**_percentiles(pay), "requests": len(pay)},
        "failed_requests": failures,
        "bad_logins": {str(k): v for k, v in sorted(logins.items())},
        "bad_logins_per_second": round(sum(logins.values()) / elapsed, 1) if flood else 0,
    }


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_backend(backend: str, rounds: int) -> dict[str, Any]:
    tmp = tempfile.TemporaryDirectory()
    url = f"sqlite:///{tmp.name}/bench.db" if backend == "sqlite" else _postgres_database()
    try:
        from stealth_recovery.core.database import make_engine
        from stealth_recovery.core.migrate import upgrade_to_head

        engine = make_engine(url)
        upgrade_to_head(engine)
        engine.dispose()
        service = Service(url)
        try:
            email, key = _setup(service.base)
            _say(f"{backend}: quiet phase")
            quiet = _phase(service.base, email, key, rounds, flood=False)
            _say(f"{backend}: {FLOOD_THREADS} bad logins in parallel")
            flooded = _phase(service.base, email, key, rounds, flood=True)
        finally:
            service.stop()
    finally:
        if backend == "postgresql":
            _drop_postgres_database(url)
        tmp.cleanup()
    ratio = {
        op: round(flooded[op]["p99_ms"] / max(quiet[op]["p99_ms"], 0.1), 1)
        for op in ("ingestion", "pay_page")
    }
    return {"backend": backend, "quiet": quiet, "flooded": flooded, "p99_ratio": ratio}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="60 rounds per phase")
    parser.add_argument("--rounds", type=int, default=300, help="ingestion + pay page rounds")
    args = parser.parse_args()
    rounds = 60 if args.quick else args.rounds
    engine = create_engine(POSTGRES_ADMIN_URL)
    machine = describe(engine)
    engine.dispose()
    results = [run_backend(backend, rounds) for backend in ("sqlite", "postgresql")]
    out = {
        "benchmark": "login_flood",
        "flood_threads": FLOOD_THREADS,
        "client_threads": CLIENT_THREADS,
        "machine": machine,
        "results": results,
    }
    target = ROOT / "results" / "login_flood.json"
    target.write_text(json.dumps(out, indent=2) + "\n")
    for result in results:
        for phase in ("quiet", "flooded"):
            r = result[phase]
            print(
                f"{result['backend']:<10} {phase:<8} ingestion p99 {r['ingestion']['p99_ms']} ms, "
                f"pay page p99 {r['pay_page']['p99_ms']} ms, failures {r['failed_requests']}, "
                f"bad logins/s {r['bad_logins_per_second']}"
            )
    print(f"written to {target}")


if __name__ == "__main__":
    main()
