"""Starting the service: a bad setting or a busy port is one line and exit code 2, no traceback;
`serve --port/--host` is enough for the links the service builds."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.processes import free_port, run_cli, wait_until, wait_until_healthy


def _env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'sr.db'}", "LOG_LEVEL": "WARNING"}
    for name in ("REDIS_URL", "BASE_URL", "CELERY_BROKER_URL"):
        env.pop(name, None)
    env.update(overrides)
    return env


def _run(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, env=_env(tmp_path, **env), cwd=tmp_path)


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


class TestStartupErrors:
    @pytest.mark.parametrize(
        ("variable", "value", "problem"),
        [
            ("LOG_LEVEL", "LOUD", "'DEBUG', 'INFO'"),
            ("WHATSAPP_TEMPLATE_LANGUAGES", "{bad", "not valid JSON"),
            ("SMTP_PORT", "abc", "valid integer"),
            ("DATABASE_URL", "postgresql://sr:pw@127.0.0.1:{port}/sr", "cannot connect"),
            ("REDIS_URL", "redis://127.0.0.1:{port}/0", "cannot connect"),
        ],
    )
    def test_bad_setting_is_one_line_naming_the_variable(
        self, tmp_path: Path, variable: str, value: str, problem: str
    ) -> None:
        # Given one bad variable (a closed port for the servers)
        value = value.replace("{port}", str(free_port()))
        # When the service starts
        result = _run(tmp_path, "serve", "--port", str(free_port()), **{variable: value})
        # Then it stops with one line naming the variable and the problem, exit code 2
        line = _one_line(result)
        assert line.startswith(variable) or f"{variable}:" in line, line
        assert problem in line
        assert "pw" not in line  # the password is never printed

    def test_lowercase_log_level_is_accepted(self, tmp_path: Path) -> None:
        result = _run(tmp_path, "migrate", LOG_LEVEL="debug")
        assert result.returncode == 0, result.stderr

    def test_unreachable_database_stops_migrate_too(self, tmp_path: Path) -> None:
        url = f"postgresql://sr@127.0.0.1:{free_port()}/sr"
        assert _one_line(_run(tmp_path, "migrate", DATABASE_URL=url)).startswith("DATABASE_URL")

    def test_port_in_use_fails_at_once_before_migrating(self, tmp_path: Path) -> None:
        # Given a port something already listens on
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            port = busy.getsockname()[1]
            # When serve is asked for it
            result = _run(tmp_path, "serve", "--port", str(port))
        # Then one line says so, and the database was not touched
        line = _one_line(result)
        assert f"127.0.0.1:{port}" in line and "already in use" in line
        assert not (tmp_path / "sr.db").exists()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`serve --port P` on a fresh SQLite file, no BASE_URL, until the test ends."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "stealth_recovery.cli", "serve", "--port", str(port)],
        env=_env(tmp_path),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_healthy(base, process, timeout=60)
        yield base, process
    finally:
        process.terminate()
        process.wait(timeout=20)


class TestServeAddress:
    def test_pay_links_and_printed_urls_follow_the_port(
        self, served: tuple[str, subprocess.Popen[bytes]]
    ) -> None:
        base, process = served
        # Given an organization with an API key on a service started with only --port
        token = httpx.post(
            f"{base}/v1/auth/register",
            json={
                "organization_name": "Port Co",
                "email": "owner@port.example.com",
                "password": "correct horse battery",
            },
        ).json()["access_token"]
        key = httpx.post(
            f"{base}/v1/api-keys",
            json={"name": "billing"},
            headers={"Authorization": f"Bearer {token}"},
        ).json()["key"]
        # When a failed payment is reported
        attempt = httpx.post(
            f"{base}/v1/events/payment_failed",
            headers={"X-API-Key": key},
            json={
                "transaction_ref": "inv_port",
                "amount_minor": 1200,
                "currency": "EUR",
                "customer_email": "jane@example.com",
                "occurred_at": "2026-11-28T09:00:00Z",
            },
        ).json()
        # Then its pay link is on the address served, and it opens
        assert attempt["pay_url"].startswith(f"{base}/pay/"), attempt
        assert httpx.get(attempt["pay_url"]).status_code == 200
        process.terminate()
        printed = process.communicate(timeout=20)[0].decode()
        assert f"{base}/dashboard" in printed and f"{base}/docs" in printed


def _children(pid: int) -> set[int]:
    return {int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def _server_side_inode(server_port: int, client_port: int) -> str:
    """The inode of the server's end of the TCP connection from `client_port` (/proc/net/tcp)."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port = int(fields[1].split(":")[1], 16)
        remote_port = int(fields[2].split(":")[1], 16)
        if (local_port, remote_port) == (server_port, client_port):
            return fields[9]
    raise AssertionError(f"no server socket for the connection from port {client_port}")


SERVE = (sys.executable, "-m", "stealth_recovery.cli", "serve")


class TestServeWorkers:
    def test_two_workers_both_answer(
        self, tmp_path: Path, database_url: str, postgres_only: None
    ) -> None:
        # Given `serve --workers 2` on PostgreSQL
        port = free_port()
        process = subprocess.Popen(
            [*SERVE, "--port", str(port), "--workers", "2", "--no-migrate"],
            env=_env(tmp_path, DATABASE_URL=database_url, EMBEDDED_SCHEDULER="false"),
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_until_healthy(f"http://127.0.0.1:{port}", process)
            children = _children(process.pid)
            # When many connections each ask for /healthz, and stay open
            answered_by: set[int] = set()
            for _ in range(10):
                connections = [socket.create_connection(("127.0.0.1", port)) for _ in range(20)]
                try:
                    for connection in connections:
                        connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
                    for connection in connections:
                        assert connection.recv(65536).startswith(b"HTTP/1.1 200")
                        inode = _server_side_inode(port, connection.getsockname()[1])
                        answered_by |= {p for p in children if inode in _socket_inodes(p)}
                finally:
                    for connection in connections:
                        connection.close()
                if len(answered_by) == 2:
                    break
            # Then two processes answered, each a child of `serve`
            assert len(answered_by) == 2, (children, answered_by)
        finally:
            process.terminate()
            output = process.communicate(timeout=30)[0].decode()
        assert "2 processes" in output, output

    def test_one_of_two_workers_runs_the_background_loops(
        self, tmp_path: Path, database_url: str, postgres_only: None
    ) -> None:
        # Given `serve --workers 2` on PostgreSQL with the embedded scheduler
        port = free_port()
        process = subprocess.Popen(
            [*SERVE, "--port", str(port), "--workers", "2", "--no-migrate"],
            env=_env(tmp_path, DATABASE_URL=database_url, LOG_LEVEL="INFO"),
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(process.stdout or ()), daemon=True)
        reader.start()

        def pids(event: str) -> list[int]:
            return [
                int(m) for line in list(lines) for m in re.findall(rf"{event}\s.*pid=(\d+)", line)
            ]

        try:
            wait_until_healthy(f"http://127.0.0.1:{port}", process)
            # When both processes have started
            wait_until(
                lambda: len(pids("background_loops_in_another_process")) == 1,
                30,
                "the second process to stand by",
            )
            # Then exactly one runs the scheduler and the delivery loop
            (leader,) = pids("background_loops_lead")
            assert leader in _children(process.pid)
            assert "\n".join(lines).count("embedded_scheduler_started") == 1
            # And when that process dies, another takes the loops over
            os.kill(leader, signal.SIGKILL)
            wait_until(lambda: len(pids("background_loops_lead")) == 2, 60, "a new leader")
            assert pids("background_loops_lead")[1] != leader
        finally:
            process.terminate()
            process.wait(timeout=30)

    def test_more_than_one_worker_on_sqlite_is_refused(self, tmp_path: Path) -> None:
        # When serve is asked for two processes on the SQLite file
        result = _run(tmp_path, "serve", "--port", str(free_port()), "--workers", "2")
        # Then it refuses in one line naming the option and why
        line = _one_line(result)
        assert "--workers 2 needs PostgreSQL" in line
        assert "one process write at a time" in line
