"""The retry benchmark runs end to end on a tiny load (no timing is asserted: it is not a test
of speed, only that the command still fills, delivers, claims and reports)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
POSTGRES_ADMIN_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)

pytestmark = pytest.mark.slow


class TestRetryThroughputBenchmark:
    def test_a_tiny_run_delivers_every_attempt_once_and_times_the_claims(
        self, tmp_path: Path, postgres_only: None
    ) -> None:
        # Given a results path outside the repository
        output = tmp_path / "results.json"
        # When the benchmark runs on 200 attempts and a 1,000-row claim table
        completed = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.retry_throughput",
                "--attempts=200",
                "--latency-ms=5",
                "--no-celery",
                "--claim-tables=1000",
                "--claim-batch=50",
                "--claim-repeats=2",
                f"--postgres-url={POSTGRES_ADMIN_URL}",
                f"--output={output}",
                "--no-readme",
            ],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert completed.returncode == 0, completed.stderr[-3000:]
        data = json.loads(output.read_text())
        # Then every attempt was sent once, logged and rescheduled by the embedded engine
        embedded = data["throughput"]["embedded"]
        assert embedded["complete"] is True
        assert embedded["advanced"] == embedded["rescheduled_per_policy"] == 200
        assert embedded["logs_sent"] == 200
        assert embedded["messages_received"] == embedded["distinct_recipients"] == 200
        # And the claim was timed at 1 % due (10 rows) and with a full batch due (50 rows)
        claimed = [(t["due"], t["claim_due_steps"]["claimed"]) for t in data["claims"]["tables"]]
        assert claimed == [(10, 10), (50, 50)]
        assert "recovery_attempts" in data["claims"]["tables"][0]["plan"]
