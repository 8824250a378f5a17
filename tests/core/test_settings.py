"""Settings: a bad environment variable stops start-up with a message that names it; SECRET_KEY is
never a known value, and only the embedded default makes its own, kept beside SQLite;
.env.example lists every setting."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from stealth_recovery.core.settings import Settings, SettingsError, load_settings
from tests.support.processes import run_cli

GOOD_KEY = "a-real-secret-9f8e7d6c5b4a39281706f5e4d3c2b1a0"


@pytest.fixture
def no_key(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("SECRET_KEY", "SECRET_KEY_PREVIOUS", "ENVIRONMENT", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def _settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


class TestSettings:
    def test_defaults_run_embedded_on_sqlite(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for name in ("DATABASE_URL", "REDIS_URL", "BASE_URL"):
            monkeypatch.delenv(name, raising=False)
        settings = _settings()
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

    def test_cli_exits_with_the_message(self, tmp_path: Path) -> None:
        result = run_cli("migrate", env={**os.environ, "SMTP_PORT": "abc"}, cwd=tmp_path)
        assert result.returncode == 2
        assert "SMTP_PORT" in result.stderr


class TestEnvExample:
    ROOT = Path(__file__).resolve().parents[2]

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


class TestTheEmbeddedDefaultGeneratesItsKey:
    def test_first_start_writes_a_random_256_bit_key_beside_the_database_readable_by_owner_only(
        self, no_key: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        # Given the embedded default on a fresh SQLite file and no SECRET_KEY
        settings = _settings(database_url=f"sqlite:///{tmp_path}/shop.db")
        # When the key is first needed
        key = settings.signing_secret()
        # Then it is kept in a file beside the database, mode 0600, 43 url-safe chars (256 bits)
        path = tmp_path / "shop.db.secret-key"
        assert settings.secret_key_file == path
        assert path.read_text().strip() == key
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert len(key) == 43

    def test_the_key_is_stable_across_restarts_and_unique_per_install(
        self, no_key: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        first = _settings(database_url=f"sqlite:///{tmp_path}/a.db").signing_secret()
        restarted = _settings(database_url=f"sqlite:///{tmp_path}/a.db").signing_secret()
        other_install = _settings(database_url=f"sqlite:///{tmp_path}/b.db").signing_secret()
        assert restarted == first
        assert other_install != first

    def test_a_tampered_key_file_is_refused(
        self, no_key: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        (tmp_path / "a.db.secret-key").write_text("short\n")
        settings = _settings(database_url=f"sqlite:///{tmp_path}/a.db")
        with pytest.raises(SettingsError, match="SECRET_KEY"):
            settings.signing_secret()

    def test_a_given_secret_key_wins_and_no_file_is_written(
        self, no_key: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        settings = _settings(database_url=f"sqlite:///{tmp_path}/a.db", secret_key=GOOD_KEY)
        assert settings.signing_secret() == GOOD_KEY
        assert not (tmp_path / "a.db.secret-key").exists()

    def test_serve_start_up_creates_the_key_before_any_request(
        self, no_key: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        # `migrate` goes through the same start-up check as `serve`.
        env = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "ENVIRONMENT"}}
        env["DATABASE_URL"] = f"sqlite:///{tmp_path}/srv.db"
        result = run_cli("migrate", env=env, cwd=tmp_path, timeout=120)
        assert result.returncode == 0, result.stderr
        assert (tmp_path / "srv.db.secret-key").exists()


class TestEveryOtherSetupNeedsARealKey:
    @pytest.mark.parametrize(
        ("environment", "database_url"),
        [
            ("local", "postgresql://u:p@db:5432/app"),
            ("test", "postgresql://u:p@db:5432/app"),
            ("production", "postgresql://u:p@db:5432/app"),
            ("production", "sqlite:///./stealth_recovery.db"),
            ("local", "sqlite://"),
            ("local", "sqlite:///:memory:"),
        ],
    )
    def test_without_secret_key_start_up_is_refused_naming_it(
        self, no_key: pytest.MonkeyPatch, environment: str, database_url: str
    ) -> None:
        no_key.setenv("ENVIRONMENT", environment)
        no_key.setenv("DATABASE_URL", database_url)
        with pytest.raises(SettingsError, match="SECRET_KEY is required"):
            load_settings()

    @pytest.mark.parametrize("environment", ["local", "test", "production"])
    @pytest.mark.parametrize(
        "known",
        [
            "change-me-local-only",  # the old built-in default
            "test-secret-key-not-for-production",  # the old test value, 34 bytes
            "x" * 31,  # too short
            "ü" * 15,  # 30 bytes, whatever the character count
        ],
    )
    @pytest.mark.parametrize("variable", ["SECRET_KEY", "SECRET_KEY_PREVIOUS"])
    def test_short_or_published_keys_are_refused_in_every_environment(
        self, no_key: pytest.MonkeyPatch, environment: str, known: str, variable: str
    ) -> None:
        no_key.setenv("ENVIRONMENT", environment)
        no_key.setenv("SECRET_KEY", GOOD_KEY)
        no_key.setenv(variable, known)
        with pytest.raises(SettingsError, match=variable):
            load_settings()

    def test_the_previous_key_cannot_be_the_current_one(self, no_key: pytest.MonkeyPatch) -> None:
        no_key.setenv("SECRET_KEY", GOOD_KEY)
        no_key.setenv("SECRET_KEY_PREVIOUS", GOOD_KEY)
        with pytest.raises(SettingsError, match="SECRET_KEY_PREVIOUS"):
            load_settings()

    def test_the_cli_refuses_to_start_with_the_message(self, tmp_path: Path) -> None:
        env = {k: v for k, v in os.environ.items() if k != "SECRET_KEY"}
        env.update(ENVIRONMENT="production", DATABASE_URL="postgresql://u:p@127.0.0.1:1/x")
        result = run_cli("serve", env=env, cwd=tmp_path)
        assert result.returncode == 2
        assert "SECRET_KEY is required" in result.stderr

    def test_a_secret_never_shows_in_the_settings_repr(self, no_key: pytest.MonkeyPatch) -> None:
        settings = _settings(
            secret_key=GOOD_KEY,
            smtp_password="smtp-pass-value",
            twilio_auth_token="twilio-token-value",
            whatsapp_api_key="wa-key-value",
            whatsapp_app_secret="wa-app-secret-value",
            whatsapp_verify_token="wa-verify-value",
        )
        shown = repr(settings) + str(settings.model_dump())
        for value in (GOOD_KEY, "smtp-pass-value", "twilio-token-value", "wa-key-value"):
            assert value not in shown
        assert "wa-app-secret-value" not in shown and "wa-verify-value" not in shown
