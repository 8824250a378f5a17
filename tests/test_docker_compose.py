"""docker-compose.yml and the Dockerfile: the production layout on one machine.

`docker compose config` validates the file with the client alone (no engine needed). Without a
docker client the check is skipped, except in CI where it must run.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy.engine import make_url

from stealth_recovery.core.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
APP_SERVICES = ("migrate", "api", "worker", "beat", "flower")
ALL_SERVICES = {*APP_SERVICES, "postgres", "redis", "mailpit"}
# A variable compose must get from .env, or it refuses to start: `${NAME:?message}`.
REQUIRED = re.compile(r"\$\{[A-Z_]+:\?[^}]+\}")
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _compose_client() -> list[str] | None:
    docker = shutil.which("docker")
    if docker:
        probe = subprocess.run([docker, "compose", "version"], capture_output=True, timeout=30)
        if probe.returncode == 0:
            return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


REAL_SECRET = "a-real-secret-of-forty-characters-0123456"
DB_PASSWORD = "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6e7f8a9b0c1d2e3f4"


def _resolve(dot_env: str, tmp_path: Path) -> dict[str, Any]:
    """The file as `docker compose config` resolves it next to this `.env`."""
    client = _compose_client()
    if client is None:
        message = "no docker client (`docker compose` or `docker-compose`) to validate the file"
        if IN_CI:
            pytest.fail(f"CI=true and {message}")
        pytest.skip(message)
    # A clean environment and a copy of the file beside the given .env, as a deployer has it.
    env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp")}
    shutil.copy(COMPOSE_FILE, tmp_path / "docker-compose.yml")
    (tmp_path / ".env").write_text(dot_env)
    result = subprocess.run(
        [*client, "-f", str(tmp_path / "docker-compose.yml"), "config"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    assert isinstance(config, dict)
    return config


def _example_with(*, secret_key: bool = True, db_password: bool = True) -> str:
    """`.env.example` copied to `.env` with SECRET_KEY and POSTGRES_PASSWORD set, as the compose
    file's header says (either left empty on request)."""
    text = (ROOT / ".env.example").read_text()
    assert "\nSECRET_KEY=\n" in text and "\nPOSTGRES_PASSWORD=\n" in text
    if secret_key:
        text = text.replace("\nSECRET_KEY=\n", f"\nSECRET_KEY={REAL_SECRET}\n")
    if db_password:
        text = text.replace("\nPOSTGRES_PASSWORD=\n", f"\nPOSTGRES_PASSWORD={DB_PASSWORD}\n")
    return text


def _example_with_a_secret() -> str:
    return _example_with()


@pytest.fixture(scope="module")
def resolved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _resolve(_example_with_a_secret(), tmp_path_factory.mktemp("compose"))


def _env(service: dict[str, Any]) -> dict[str, Any]:
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        return dict(item.split("=", 1) if "=" in item else (item, None) for item in environment)
    return dict(environment)


class TestComposeConfig:
    def test_the_client_accepts_the_file_with_every_service(self, resolved: dict[str, Any]) -> None:
        assert set(resolved["services"]) >= ALL_SERVICES

    def test_each_process_runs_its_cli_command(self, resolved: dict[str, Any]) -> None:
        services = resolved["services"]
        assert services["api"]["command"][:4] == ["stealth-recovery", "serve", "--host", "0.0.0.0"]
        assert services["worker"]["command"][:2] == ["stealth-recovery", "worker"]
        assert services["beat"]["command"][:2] == ["stealth-recovery", "beat"]
        flower = services["flower"]["command"]
        assert flower[:2] == ["stealth-recovery", "flower"]
        assert flower[flower.index("--address") + 1] == "0.0.0.0"
        assert services["migrate"]["command"] == ["stealth-recovery", "migrate"]

    def test_the_app_is_wired_to_postgres_redis_and_the_mail_catcher(
        self, resolved: dict[str, Any]
    ) -> None:
        for name in ("api", "worker", "beat"):
            env = _env(resolved["services"][name])
            assert env["DATABASE_URL"].startswith("postgresql://")
            assert "@postgres:5432/" in env["DATABASE_URL"]
            assert env["REDIS_URL"] == "redis://redis:6379/0"
            assert env["SMTP_HOST"] == "mailpit"
            assert str(env["SMTP_PORT"]) == "1025"
            assert env["BASE_URL"] == "http://localhost:8000"
            assert env["SECRET_KEY"] == REAL_SECRET
            assert env["ENVIRONMENT"] == "production"
        api = resolved["services"]["api"]
        assert any(str(p.get("target", p)).startswith("8000") for p in api["ports"])
        assert resolved["services"]["api"]["depends_on"]["migrate"]["condition"] == (
            "service_completed_successfully"
        )

    def test_without_a_secret_key_in_dot_env_compose_refuses_to_start(self, tmp_path: Path) -> None:
        # Given the example copied as .env without setting SECRET_KEY
        with pytest.raises(AssertionError) as refused:
            _resolve(_example_with(secret_key=False), tmp_path)
        # Then compose refuses, naming the variable, instead of running without a real key
        assert "SECRET_KEY" in str(refused.value)

    def test_without_a_postgres_password_in_dot_env_compose_refuses_to_start(
        self, tmp_path: Path
    ) -> None:
        # Given the example copied as .env with SECRET_KEY set but no POSTGRES_PASSWORD
        with pytest.raises(AssertionError) as refused:
            _resolve(_example_with(db_password=False), tmp_path)
        # Then compose refuses, naming the variable, instead of using a published password
        assert "POSTGRES_PASSWORD" in str(refused.value)

    def test_the_database_password_from_dot_env_is_the_one_everyone_uses(
        self, resolved: dict[str, Any]
    ) -> None:
        services = resolved["services"]
        assert _env(services["postgres"])["POSTGRES_PASSWORD"] == DB_PASSWORD
        for name in APP_SERVICES:
            url = make_url(_env(services[name])["DATABASE_URL"])
            assert (url.username, url.password, url.host) == ("stealth", DB_PASSWORD, "postgres")


class TestEverySettingReachesTheContainers:
    def test_each_setting_in_dot_env_arrives_in_every_app_service(self, tmp_path: Path) -> None:
        # Given a .env that sets every setting of the settings class to a value of its own
        names = sorted(name.upper() for name in Settings.model_fields)
        dot_env = "".join(f"{name}=from-dot-env-{name.lower()}\n" for name in names)
        dot_env += f"POSTGRES_PASSWORD={DB_PASSWORD}\n"
        # When compose resolves the layout
        services = _resolve(dot_env, tmp_path)["services"]
        wired = set(yaml.safe_load(COMPOSE_FILE.read_text())["x-app"]["environment"])
        for service in APP_SERVICES:
            env = _env(services[service])
            # Then every setting reaches the container: from .env, or wired by the layout
            for name in names:
                expected = f"from-dot-env-{name.lower()}"
                assert name in env, f"{service}: {name} does not reach the container"
                if name not in wired:
                    assert env[name] == expected, f"{service}: {name}={env[name]!r}"

    def test_the_copied_example_passes_clean_values(self, resolved: dict[str, Any]) -> None:
        # Compose keeps an inline "# comment" as part of the value: the example has none.
        for service in APP_SERVICES:
            for name, value in _env(resolved["services"][service]).items():
                assert value is None or "#" not in str(value), f"{service}: {name}={value!r}"

    def test_every_long_running_service_has_a_health_check(self, resolved: dict[str, Any]) -> None:
        services = resolved["services"]
        missing = [
            name for name in ALL_SERVICES - {"migrate"} if "healthcheck" not in services[name]
        ]
        assert missing == []


class TestComposeFileAgainstTheSettings:
    """Checks that need no docker client: names that must match the code."""

    def test_every_variable_given_to_the_app_is_a_setting(self) -> None:
        raw = yaml.safe_load(COMPOSE_FILE.read_text())
        fields = {name.upper() for name in Settings.model_fields}
        for name in APP_SERVICES:
            unknown = set(_env(raw["services"][name])) - fields
            assert not unknown, f"{name}: not settings: {sorted(unknown)}"

    def test_no_password_or_secret_is_written_in_the_file(self) -> None:
        # Every password, secret and URL credential is a required `${VAR:?…}` from .env.
        raw = yaml.safe_load(COMPOSE_FILE.read_text())
        environments = {"x-app": raw["x-app"]["environment"]}
        environments |= {name: _env(svc) for name, svc in raw["services"].items()}
        for where, env in environments.items():
            for name, value in env.items():
                value = str(value)
                if "PASSWORD" in name or "SECRET" in name:
                    assert REQUIRED.fullmatch(value), f"{where}: {name} is written in the file"
                credentials = re.match(r"^[a-z+]+://[^:/@]+:(.+)@", value)
                if credentials is not None:
                    assert REQUIRED.fullmatch(credentials.group(1)), (
                        f"{where}: {name} has a password written in the file"
                    )

    def test_the_image_is_python_311_slim_installed_with_the_constraints(self) -> None:
        dockerfile = (ROOT / "Dockerfile").read_text()
        assert "\nFROM python:3.11-slim\n" in dockerfile
        assert "pip install -c constraints.txt ." in dockerfile
        assert 'CMD ["stealth-recovery", "serve", "--host", "0.0.0.0"' in dockerfile

    def test_the_image_runs_alone_in_a_data_directory_its_user_owns(self) -> None:
        # `docker run IMAGE` on the embedded default writes ./stealth_recovery.db in WORKDIR.
        dockerfile = (ROOT / "Dockerfile").read_text()
        runtime = dockerfile.split("COPY src ./src", 1)[1]
        assert "chown app:app /data" in dockerfile
        assert runtime.index("WORKDIR /data") < runtime.index("USER app")
