"""The README's tour runs as written: its shell blocks, pasted in order into one shell, against a
live `serve` on the embedded default, end with a reminder the reader can see."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.processes import free_port, wait_until_healthy

README = Path(__file__).resolve().parents[1] / "README.md"


def tour_blocks() -> list[str]:
    """The ```bash blocks of the README's "A tour" section, in order."""
    text = README.read_text()
    section = text.split("\n## A tour\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)```", section, flags=re.DOTALL)


def test_the_first_command_installs_and_serves() -> None:
    first = re.search(r"```bash\n(.*?)```", README.read_text(), flags=re.DOTALL)
    assert first is not None
    assert "pip install" in first.group(1) and "stealth-recovery serve" in first.group(1)


def test_the_tour_runs_as_written(tmp_path: Path) -> None:
    # Given a folder as the first command leaves it: `.venv/bin/stealth-recovery` and a running
    # `serve` on the embedded default (no mail server, no SMS or WhatsApp account)
    command = tmp_path / ".venv" / "bin" / "stealth-recovery"
    command.parent.mkdir(parents=True)
    command.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m stealth_recovery.cli "$@"\n')
    command.chmod(command.stat().st_mode | stat.S_IXUSR)
    port = free_port()
    env = {**os.environ, "ENVIRONMENT": "local", "LOG_LEVEL": "WARNING"}
    for name in [n for n in env if n.startswith(("DATABASE_", "REDIS_", "SMTP_", "TWILIO_"))]:
        env.pop(name)
    for name in ("BASE_URL", "WHATSAPP_API_KEY", "DELIVERY_MODE", "CELERY_BROKER_URL"):
        env.pop(name, None)
    server = subprocess.Popen(
        [str(command), "serve", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until_healthy(f"http://127.0.0.1:{port}", server, timeout=60)
        # When every block of the tour is pasted, in order, into one shell
        blocks = tour_blocks()
        assert len(blocks) >= 4
        script = "set -euo pipefail\n" + "\n".join(blocks)
        script = script.replace("localhost:8000", f"localhost:{port}")
        script = script.replace("127.0.0.1:8000", f"127.0.0.1:{port}")
        result = subprocess.run(
            ["bash", "-c", script],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )
    finally:
        server.terminate()
        served = server.communicate(timeout=20)[0].decode()
    # Then every command succeeds
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}\n{served}"
    # and the demo printed its login, and the pay link was shown
    assert "password: demo-" in result.stdout
    assert f"http://127.0.0.1:{port}/pay/" in result.stderr
    # and the tour ends with the reminder's messages, kept in the outbox where the reader sees them
    # (curl prints no newline after a JSON answer: the list is the output's last value)
    messages = json.loads(result.stdout[result.stdout.rindex('[{"id"') :])
    assert {(m["channel"], m["provider"], m["status"]) for m in messages} == {
        ("email", "outbox", "sent"),
        ("sms", "outbox", "sent"),
    }
    assert "outbox" in served  # serve said where reminders go


pytestmark = pytest.mark.slow
