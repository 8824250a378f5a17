"""The dashboard as a browser drives it: the CSRF token of a page, the login form, form posts."""

from __future__ import annotations

import itertools
import re

from fastapi.testclient import TestClient

from tests.support.builders import PASSWORD

_refs = itertools.count(1)
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_from(html: str) -> str:
    match = _CSRF.search(html)
    assert match, "the page has no form with a CSRF token"
    return match.group(1)


def web_login(client: TestClient, email: str, password: str = PASSWORD) -> None:
    """Log in through the dashboard's form, as a browser would."""
    page = client.get("/dashboard/login")
    response = client.post(
        "/dashboard/login",
        data={"csrf_token": csrf_from(page.text), "email": email, "password": password},
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text


def post_form(client: TestClient, page_path: str, action: str, data: dict[str, object]):  # type: ignore[no-untyped-def]
    """Submit a form the way the page does: with the CSRF token the page carries."""
    token = csrf_from(client.get(page_path).text)
    return client.post(action, data={"csrf_token": token, **data}, follow_redirects=False)
