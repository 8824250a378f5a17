"""Real `stealth-recovery` processes (worker, beat, flower, serve) for the tests and the fault
benchmark: each in its own process group so a signal reaches its children too, its output in a
log file of its own, all stopped at the end."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx


def free_port() -> int:
    """A TCP port on loopback that nothing listens on at the moment."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `predicate` every 0.2 s; AssertionError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def wait_until_healthy(base: str, process: subprocess.Popen[bytes], timeout: float = 90) -> None:
    """Poll `base`/healthz until it answers 2xx; raises the last HTTP error after `timeout`
    seconds or as soon as `process` has exited."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            httpx.get(f"{base}/healthz", timeout=2).raise_for_status()
            return
        except httpx.HTTPError:
            if time.monotonic() > deadline or process.poll() is not None:
                raise
            time.sleep(0.3)


def run_cli(
    *args: str, env: dict[str, str], cwd: Path, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """`stealth-recovery ARGS` run to its end in `cwd` with exactly `env`: its exit code, and
    stdout and stderr as text."""
    return subprocess.run(
        [sys.executable, "-m", "stealth_recovery.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


class Processes:
    """Starts `stealth-recovery` commands with `env`, logging each to `logs/<name>.log`."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.running: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str, name: str | None = None) -> subprocess.Popen[bytes]:
        """`stealth-recovery ARGS` as a new process group; its log is `name` (default: the
        command and how many processes ran before it, `worker-2`)."""
        log_name = name or f"{args[0]}-{len(self.running)}"
        log = open(self.logs / f"{log_name}.log", "ab")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen(
            [sys.executable, "-m", "stealth_recovery.cli", *args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.running.append(process)
        return process

    def start_beat(self) -> subprocess.Popen[bytes]:
        """Celery Beat, its schedule file beside the logs."""
        return self.start("beat", "--schedule-file", str(self.logs / "beat-schedule"), name="beat")

    def signal(self, process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        """`sig` to the process's whole group (a Celery worker's pool processes too)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)

    def kill(self, process: subprocess.Popen[bytes]) -> None:
        """SIGKILL to the group, and wait for the process to be gone."""
        self.signal(process, signal.SIGKILL)
        process.wait(timeout=10)

    def stop_all(self, timeout: float = 10) -> None:
        """SIGTERM to every process still running (woken first if stopped), SIGKILL to any that
        has not ended after `timeout` seconds."""
        for process in self.running:
            if process.poll() is None:
                self.signal(process, signal.SIGCONT)
                self.signal(process, signal.SIGTERM)
                try:
                    process.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    self.kill(process)
