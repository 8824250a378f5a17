"""Logging in to the dashboard, the session cookie, CSRF tokens, logging out."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from stealth_recovery.auth.deps import SESSION_COOKIE
from stealth_recovery.dashboard.login_cookie import CSRF_COOKIE, safe_next
from tests.support.builders import PASSWORD, Account
from tests.support.web import csrf_from, post_form, web_login


class TestLogin:
    def test_sets_an_httponly_cookie_that_only_the_dashboard_accepts(
        self, client: TestClient, admin: Account
    ) -> None:
        # Given the login form
        page = client.get("/dashboard/login?next=/dashboard/attempts")
        # When the admin submits the right password
        response = client.post(
            "/dashboard/login",
            data={
                "csrf_token": csrf_from(page.text),
                "email": admin.user.email,
                "password": PASSWORD,
                "next": "/dashboard/attempts",
            },
            follow_redirects=False,
        )
        # Then they go where they were heading, with an HttpOnly, SameSite session cookie
        assert response.status_code == 303
        assert response.headers["location"] == "/dashboard/attempts"
        cookie_header = next(
            h for h in response.headers.get_list("set-cookie") if h.startswith(SESSION_COOKIE)
        )
        assert "HttpOnly" in cookie_header
        assert "SameSite=lax" in cookie_header
        # And the API does not take the cookie: a browser sends it to /v1 on its own, so another
        # site's form could make writes with it (no CSRF token there)
        assert client.get("/dashboard").status_code == 200
        assert client.get("/v1/auth/me").status_code == 401
        forged = client.post("/v1/api-keys", json={"name": "made by another site"})
        assert forged.status_code == 401

    def test_wrong_password_shows_the_form_again_without_a_session(
        self, client: TestClient, admin: Account
    ) -> None:
        page = client.get("/dashboard/login")
        response = client.post(
            "/dashboard/login",
            data={
                "csrf_token": csrf_from(page.text),
                "email": admin.user.email,
                "password": "not the password",
            },
            follow_redirects=False,
        )
        assert response.status_code == 401
        assert "Incorrect email or password." in response.text
        assert SESSION_COOKIE not in client.cookies

    def test_a_form_without_its_csrf_token_is_refused(
        self, client: TestClient, admin: Account
    ) -> None:
        client.get("/dashboard/login")
        response = client.post(
            "/dashboard/login",
            data={"email": admin.user.email, "password": PASSWORD},
            follow_redirects=False,
        )
        assert response.status_code == 403
        assert SESSION_COOKIE not in client.cookies

    def test_a_token_from_another_browser_is_refused(
        self, app, client: TestClient, admin: Account
    ) -> None:  # type: ignore[no-untyped-def]
        # Given a token issued to another browser (another CSRF cookie)
        with TestClient(app) as other:
            foreign_token = csrf_from(other.get("/dashboard/login").text)
        client.get("/dashboard/login")
        # When this browser posts it
        response = client.post(
            "/dashboard/login",
            data={"csrf_token": foreign_token, "email": admin.user.email, "password": PASSWORD},
            follow_redirects=False,
        )
        # Then it is refused
        assert response.status_code == 403

    def test_csrf_cookie_is_httponly_and_scoped_to_the_dashboard(self, client: TestClient) -> None:
        response = client.get("/dashboard/login")
        header = next(
            h for h in response.headers.get_list("set-cookie") if h.startswith(CSRF_COOKIE)
        )
        assert "HttpOnly" in header
        assert "Path=/dashboard" in header


class TestSafeNext:
    def test_keeps_dashboard_paths(self) -> None:
        assert safe_next("/dashboard/attempts?page=2") == "/dashboard/attempts?page=2"

    def test_refuses_other_sites_and_paths(self) -> None:
        assert safe_next("https://evil.example/dashboard") == "/dashboard"
        assert safe_next("//evil.example/dashboard") == "/dashboard"
        assert safe_next("/v1/users") == "/dashboard"
        assert safe_next(None) == "/dashboard"


class TestPagesNeedASession:
    def test_a_page_redirects_to_the_login_form_with_the_way_back(self, client: TestClient) -> None:
        response = client.get("/dashboard/attempts?status=open", follow_redirects=False)
        assert response.status_code == 303
        assert response.headers["location"] == (
            "/dashboard/login?next=%2Fdashboard%2Fattempts%3Fstatus%3Dopen"
        )

    def test_a_deactivated_user_is_sent_back_to_the_login_form(
        self, admin_web: TestClient, analyst: Account, db: Session
    ) -> None:
        # Given an analyst logged in to the dashboard
        from stealth_recovery.auth.models import User

        with TestClient(admin_web.app) as analyst_client:
            web_login(analyst_client, analyst.user.email)
            assert analyst_client.get("/dashboard").status_code == 200
            # When an admin deactivates them
            post_form(
                admin_web,
                "/dashboard/team",
                f"/dashboard/users/{analyst.user.id}/deactivate",
                {},
            )
            # Then their next page asks them to log in again
            response = analyst_client.get("/dashboard", follow_redirects=False)
            assert response.status_code == 303
            assert response.headers["location"].startswith("/dashboard/login")
        user = db.get(User, analyst.user.id)
        db.refresh(user)
        assert user is not None and user.is_active is False


class TestLogout:
    def test_clears_the_session(self, admin_web: TestClient) -> None:
        response = post_form(admin_web, "/dashboard", "/dashboard/logout", {})
        assert response.status_code == 303
        assert response.headers["location"] == "/dashboard/login"
        assert admin_web.get("/dashboard", follow_redirects=False).status_code == 303
