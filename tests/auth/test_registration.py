"""Who may create an organization (REGISTRATION, create-admin, invites), and visible names."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from stealth_recovery.auth.models import User
from stealth_recovery.cli import app as cli
from stealth_recovery.core.settings import get_settings
from stealth_recovery.core.time import shifted_clock
from stealth_recovery.organizations.models import Organization
from tests.support.builders import PASSWORD, login, make_account
from tests.support.web import post_form, web_login


def _register(client: TestClient, **extra: object):  # type: ignore[no-untyped-def]
    body = {"organization_name": "Acme", "email": "owner@acme.example.com", "password": PASSWORD}
    return client.post("/v1/auth/register", json={**body, **extra})


@pytest.fixture
def registration(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    def set_mode(**env: str) -> None:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()

    monkeypatch.setattr(monkeypatch, "set_mode", set_mode, raising=False)
    yield monkeypatch
    get_settings.cache_clear()


class TestRegistrationSetting:
    def test_the_embedded_default_is_open(self, client: TestClient, db: Session) -> None:
        assert get_settings().registration_mode == "open"
        assert _register(client).status_code == 201

    def test_production_is_closed_by_default(
        self, client: TestClient, db: Session, registration: pytest.MonkeyPatch
    ) -> None:
        registration.set_mode(ENVIRONMENT="production")  # type: ignore[attr-defined]
        response = _register(client)
        assert response.status_code == 403
        assert "create-admin" in response.json()["detail"]
        assert db.scalar(select(Organization.id)) is None

    def test_closed_refuses_even_outside_production(
        self, client: TestClient, db: Session, registration: pytest.MonkeyPatch
    ) -> None:
        registration.set_mode(REGISTRATION="closed")  # type: ignore[attr-defined]
        assert _register(client).status_code == 403

    def test_invite_only_needs_a_valid_code_and_spends_it(
        self, client: TestClient, db: Session, registration: pytest.MonkeyPatch
    ) -> None:
        registration.set_mode(REGISTRATION="invite")  # type: ignore[attr-defined]
        # Without a code, or with a made-up one: 422 naming the field
        for extra in ({}, {"invite_code": "inv_made_up"}):
            response = _register(client, **extra)
            assert response.status_code == 422
            assert response.json()["detail"][0]["field"] == "invite_code"
        # With a code from `stealth-recovery invite`
        printed = CliRunner().invoke(cli, ["invite", "--days", "2"])
        assert printed.exit_code == 0, printed.output
        code = printed.stdout.strip().splitlines()[-1]
        assert _register(client, invite_code=code).status_code == 201
        # And the same code does not open a second organization
        again = _register(client, email="second@acme.example.com", invite_code=code)
        assert again.status_code == 422
        assert again.json()["detail"][0]["field"] == "invite_code"

    def test_an_expired_invite_is_refused(
        self, client: TestClient, db: Session, registration: pytest.MonkeyPatch
    ) -> None:
        registration.set_mode(REGISTRATION="invite")  # type: ignore[attr-defined]
        code = CliRunner().invoke(cli, ["invite", "--days", "1"]).stdout.strip().splitlines()[-1]
        with shifted_clock(timedelta(days=1, minutes=1)):
            response = _register(client, invite_code=code)
        assert response.status_code == 422


class TestCreateAdmin:
    def test_makes_an_organization_and_an_admin_who_can_log_in_even_when_closed(
        self, client: TestClient, db: Session, registration: pytest.MonkeyPatch
    ) -> None:
        registration.set_mode(REGISTRATION="closed")  # type: ignore[attr-defined]
        result = CliRunner().invoke(
            cli,
            ["create-admin", "--organization", "Acme Shop", "--email", "Boss@Acme.example.com"],
            input=f"{PASSWORD}\n{PASSWORD}\n",
        )
        assert result.exit_code == 0, result.output
        assert "Acme Shop" in result.output
        user = db.scalar(select(User).where(User.email == "boss@acme.example.com"))
        assert user is not None and user.role == "admin"
        assert login(client, "boss@acme.example.com")

    @pytest.mark.parametrize(
        ("args", "field"),
        [
            (["--organization", "Acme\u202egnp.exe", "--password", PASSWORD], "organization_name"),
            (["--organization", "Acme", "--password", "password123456"], "password"),
            (
                ["--organization", "Acme", "--password", PASSWORD, "--full-name", "A\u200bB"],
                "full_name",
            ),
        ],
    )
    def test_refuses_bad_input_naming_the_field(
        self, db: Session, args: list[str], field: str
    ) -> None:
        result = CliRunner().invoke(cli, ["create-admin", "--email", "x@acme.example.com", *args])
        assert result.exit_code != 0
        assert field in result.output
        assert db.scalar(select(Organization.id)) is None


class TestVisibleNames:
    @pytest.mark.parametrize(
        "invisible",
        [
            "\u202e",  # right-to-left override
            "\u2066",  # left-to-right isolate
            "\u200b",  # zero-width space
            "\u200d",  # zero-width joiner
            "\ufeff",  # byte-order mark
            "\u00ad",  # soft hyphen
            "\u3164",  # Hangul filler: a letter that draws nothing
            "\u0007",  # a control character
        ],
    )
    @pytest.mark.parametrize("field", ["organization_name", "full_name"])
    def test_merchant_and_person_names_refuse_invisible_characters(
        self, client: TestClient, db: Session, invisible: str, field: str
    ) -> None:
        response = _register(client, **{field: f"Acme{invisible}Pay"})
        assert response.status_code == 422
        [problem] = response.json()["detail"]
        assert problem["field"] == field
        assert "invisible or bidirectional" in problem["msg"]
        assert db.scalar(select(Organization.id)) is None

    def test_names_in_any_script_are_fine(self, client: TestClient, db: Session) -> None:
        response = _register(client, organization_name="שלום Café 東京", full_name="José Ñúñez")
        assert response.status_code == 201

    def test_the_dashboards_add_user_form_refuses_them_too(
        self, client: TestClient, db: Session
    ) -> None:
        admin = make_account(db)
        web_login(client, admin.user.email)
        response = post_form(
            client,
            "/dashboard/team",
            "/dashboard/users",
            {
                "email": "new@example.com",
                "full_name": "Eve\u202eliam",
                "role": "analyst",
                "password": "violet kettle under quiet harbour",
            },
        )
        assert response.status_code == 422
        assert "invisible or bidirectional" in response.text
        assert db.scalar(select(User).where(User.email == "new@example.com")) is None

    def test_api_key_names_refuse_them(self, client: TestClient, db: Session) -> None:
        admin = make_account(db)
        response = client.post(
            "/v1/api-keys", json={"name": "billing\u200bserver"}, headers=admin.headers
        )
        assert response.status_code == 422
        assert response.json()["detail"][0]["field"] == "name"
