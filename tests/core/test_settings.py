"""A bad environment variable stops start-up with a message that names it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from stealth_recovery.core.settings import Settings, SettingsError, load_settings


class TestSettings:
    def test_defaults_run_embedded_on_sqlite(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for name in ("DATABASE_URL", "REDIS_URL", "BASE_URL"):
            monkeypatch.delenv(name, raising=False)
        settings = Settings(_env_file=None)  # type: ignore[call-arg]
        assert settings.is_sqlite
        assert not settings.uses_celery
        assert settings.base_url == "http://localhost:8000"

    def test_non_numeric_smtp_port_names_the_variable(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("SMTP_PORT", "abc")
        with pytest.raises(SettingsError, match="SMTP_PORT"):
            load_settings()

    def test_unparsable_database_url_names_the_variable(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("DATABASE_URL", "not a url at all")
        with pytest.raises(SettingsError, match="DATABASE_URL"):
            load_settings()

    def test_cli_exits_with_the_message(self, tmp_path: os.PathLike[str]) -> None:
        env = {**os.environ, "SMTP_PORT": "abc"}
        result = subprocess.run(
            [sys.executable, "-m", "stealth_recovery.cli", "migrate"],
            env=env,
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=60,
        )
        assert result.returncode == 2
        assert "SMTP_PORT" in result.stderr


class TestEnvExample:
    ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]

    def test_lists_every_setting(self) -> None:
        listed = {
            line.split("=", 1)[0].strip()
            for line in (self.ROOT / ".env.example").read_text().splitlines()
            if "=" in line and not line.lstrip().startswith("#")
        }
        assert {name.upper() for name in Settings.model_fields} - listed == set()

    def test_copied_as_dot_env_it_loads(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for name in Settings.model_fields:
            monkeypatch.delenv(name.upper(), raising=False)
        settings = Settings(_env_file=self.ROOT / ".env.example")  # type: ignore[call-arg]
        assert settings.is_sqlite and not settings.uses_celery
