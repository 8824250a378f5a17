"""Sessions end when they should: logout, deactivation, password change and reset by e-mail."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from stealth_recovery.auth.deps import SESSION_COOKIE
from stealth_recovery.core.time import shifted_clock
from tests.support.builders import PASSWORD, Account, login, make_account
from tests.support.smtp import SmtpSink
from tests.support.web import csrf_from, post_form, web_login

NEW_PASSWORD = "violet kettle under quiet harbour"
_LINK = re.compile(r"(http://\S+/dashboard/reset-password\?token=(\S+))")


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _me(client: TestClient, token: str) -> int:
    return client.get("/v1/auth/me", headers=_bearer(token)).status_code


class TestLogout:
    def test_api_logout_refuses_the_token_at_once(self, client: TestClient, db: Session) -> None:
        # Given a logged-in user
        account = make_account(db)
        token = login(client, account.user.email)
        assert _me(client, token) == 200
        # When they log out
        assert client.post("/v1/auth/logout", headers=_bearer(token)).status_code == 204
        # Then the same token is refused before it expires, and a new login works
        assert _me(client, token) == 401
        assert _me(client, login(client, account.user.email)) == 200

    def test_dashboard_logout_ends_the_cookie_on_the_server(
        self, app, client: TestClient, db: Session
    ) -> None:  # type: ignore[no-untyped-def]
        # Given a dashboard session, and a copy of its cookie (a stolen one, say)
        account = make_account(db)
        web_login(client, account.user.email)
        stolen = client.cookies[SESSION_COOKIE]
        # When the user logs out
        response = post_form(client, "/dashboard", "/dashboard/logout", {})
        assert response.status_code == 303
        # Then the copied cookie no longer opens the dashboard
        with TestClient(app) as thief:
            thief.cookies.set(SESSION_COOKIE, stolen)
            page = thief.get("/dashboard", follow_redirects=False)
        assert page.status_code == 303
        assert page.headers["location"].startswith("/dashboard/login")

    def test_deactivation_ends_every_session_of_the_user(
        self, client: TestClient, db: Session
    ) -> None:
        admin = make_account(db)
        other = make_account(db, organization=admin.organization)
        token = login(client, other.user.email)
        response = client.post(f"/v1/users/{other.user.id}/deactivate", headers=admin.headers)
        assert response.status_code == 200
        assert _me(client, token) == 401


class TestPasswordChange:
    def test_api_change_needs_the_current_password_and_a_strong_new_one(
        self, client: TestClient, db: Session
    ) -> None:
        account = make_account(db)
        token = login(client, account.user.email)

        def change(current: str, new: str):  # type: ignore[no-untyped-def]
            return client.post(
                "/v1/auth/password",
                json={"current_password": current, "new_password": new},
                headers=_bearer(token),
            )

        wrong = change("not my password", NEW_PASSWORD)
        assert wrong.status_code == 422
        assert wrong.json()["detail"][0]["field"] == "current_password"
        weak = change(PASSWORD, "password123456")
        assert weak.status_code == 422
        assert weak.json()["detail"][0]["field"] == "new_password"
        assert "guess" in weak.json()["detail"][0]["msg"]
        # When the change is valid
        done = change(PASSWORD, NEW_PASSWORD)
        assert done.status_code == 200
        # Then the old token is refused, the returned one works, and only the new password logs in
        assert _me(client, token) == 401
        assert _me(client, done.json()["access_token"]) == 200
        bad = client.post(
            "/v1/auth/login", json={"email": account.user.email, "password": PASSWORD}
        )
        assert bad.status_code == 401
        assert _me(client, login(client, account.user.email, NEW_PASSWORD)) == 200

    def test_dashboard_change_keeps_this_browser_signed_in_and_ends_the_others(
        self, app, client: TestClient, db: Session
    ) -> None:  # type: ignore[no-untyped-def]
        account = make_account(db)
        web_login(client, account.user.email)
        other_browser_token = login(client, account.user.email)
        weak = post_form(
            client,
            "/dashboard/account",
            "/dashboard/account/password",
            {"current_password": PASSWORD, "new_password": "qwertyuiop"},
        )
        assert weak.status_code == 422
        assert "too easy to guess" in weak.text
        response = post_form(
            client,
            "/dashboard/account",
            "/dashboard/account/password",
            {"current_password": PASSWORD, "new_password": NEW_PASSWORD},
        )
        assert response.status_code == 303
        # This browser got a fresh cookie and stays signed in; the other session is over
        page = client.get("/dashboard/account")
        assert page.status_code == 200
        assert "Your password is changed." in page.text
        assert _me(client, other_browser_token) == 401


class TestPasswordReset:
    def _ask(self, client: TestClient, email: str) -> None:
        response = client.post("/v1/auth/password-reset", json={"email": email})
        assert response.status_code == 202
        assert response.json() == {
            "detail": "if the address has an account, a reset link is on its way"
        }

    def test_a_reset_link_is_e_mailed_works_once_and_ends_the_old_sessions(
        self, client: TestClient, db: Session, smtp_sink: SmtpSink
    ) -> None:
        # Given a user with a session open somewhere
        account = make_account(db)
        old_token = login(client, account.user.email)
        # When they ask for a reset
        self._ask(client, account.user.email)
        # Then one e-mail with a link reaches them through the SMTP server
        [mail] = smtp_sink.wait_for(1)
        assert mail.rcpt_tos == [account.user.email]
        assert mail.subject == "Reset your Stealth Recovery password"
        link, token = _LINK.search(mail.body("plain")).groups()  # type: ignore[union-attr]
        # And the dashboard's form for that link sets the new password
        page = client.get(link.replace("http://localhost:8000", ""))
        assert page.status_code == 200
        response = client.post(
            "/dashboard/reset-password",
            data={"csrf_token": csrf_from(page.text), "token": token, "new_password": NEW_PASSWORD},
            follow_redirects=False,
        )
        assert response.status_code == 303
        # Then the old session is over and the new password logs in
        assert _me(client, old_token) == 401
        assert _me(client, login(client, account.user.email, NEW_PASSWORD)) == 200
        # And the link cannot be used a second time
        again = client.post(
            "/v1/auth/password-reset/confirm",
            json={"token": token, "new_password": "yet another odd passphrase here"},
        )
        assert again.status_code == 422
        assert again.json()["detail"][0]["field"] == "token"

    def test_unknown_addresses_get_the_same_answer_and_no_mail(
        self, client: TestClient, db: Session, smtp_sink: SmtpSink
    ) -> None:
        make_account(db)
        self._ask(client, "nobody@example.com")
        assert smtp_sink.messages == []

    def test_the_link_expires_and_a_weak_password_keeps_it_usable(
        self, client: TestClient, db: Session, smtp_sink: SmtpSink
    ) -> None:
        account = make_account(db)
        self._ask(client, account.user.email)
        [mail] = smtp_sink.wait_for(1)
        token = _LINK.search(mail.body("plain")).group(2)  # type: ignore[union-attr]

        def confirm(password: str):  # type: ignore[no-untyped-def]
            return client.post(
                "/v1/auth/password-reset/confirm",
                json={"token": token, "new_password": password},
            )

        weak = confirm("password123456")
        assert weak.status_code == 422
        assert weak.json()["detail"][0]["field"] == "new_password"
        with shifted_clock(timedelta(minutes=61)):
            late = confirm(NEW_PASSWORD)
        assert late.status_code == 422
        assert late.json()["detail"][0]["field"] == "token"
        assert (
            client.post(
                "/v1/auth/login", json={"email": account.user.email, "password": PASSWORD}
            ).status_code
            == 200
        )

    def test_the_dashboard_form_answers_the_same_for_any_address(
        self, client: TestClient, db: Session, smtp_sink: SmtpSink
    ) -> None:
        account = make_account(db)
        for email in (account.user.email, "nobody@example.com"):
            response = post_form(
                client, "/dashboard/forgot-password", "/dashboard/forgot-password", {"email": email}
            )
            assert response.status_code == 200
            assert "If that address has an account" in response.text
        assert len(smtp_sink.wait_for(1)) == 1


class TestPasswordStrength:
    @pytest.mark.parametrize("weak", ["password123456", "qwertyuiop12", "acmeacmeacme"])
    def test_registration_refuses_guessable_passwords(self, client: TestClient, weak: str) -> None:
        response = client.post(
            "/v1/auth/register",
            json={"organization_name": "Acme", "email": "owner@acme.example.com", "password": weak},
        )
        assert response.status_code == 422
        assert response.json()["detail"][0]["field"] == "password"

    def test_an_admin_cannot_give_a_new_user_a_guessable_password(
        self, client: TestClient, db: Session
    ) -> None:
        admin: Account = make_account(db)
        response = client.post(
            "/v1/users",
            json={"email": "a@example.com", "password": "1234567890", "role": "analyst"},
            headers=admin.headers,
        )
        assert response.status_code == 422
        assert response.json()["detail"][0]["field"] == "password"

    def test_a_long_passphrase_past_the_estimators_limit_is_accepted(
        self, client: TestClient
    ) -> None:
        # zxcvbn takes at most 72 characters; a longer password must not be a 500
        response = client.post(
            "/v1/auth/register",
            json={
                "organization_name": "Acme",
                "email": "owner@acme.example.com",
                "password": "violet kettle under quiet harbour " * 6,
            },
        )
        assert response.status_code == 201
