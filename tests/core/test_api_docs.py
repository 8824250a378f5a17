"""The API docs pages run their one start-up script, and no other inline script."""

from __future__ import annotations

import base64
import hashlib
import re

import pytest
from fastapi.testclient import TestClient


def _script_src(policy: str) -> str:
    return next(part for part in policy.split(";") if part.strip().startswith("script-src"))


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_docs_page_allows_only_its_own_scripts(client: TestClient, path: str) -> None:
    # When a browser asks for a docs page
    response = client.get(path)
    # Then it is served, with scripts allowed from this origin only, never any inline script
    assert response.status_code == 200
    script_src = _script_src(response.headers["content-security-policy"])
    assert "'self'" in script_src
    assert "unsafe-inline" not in script_src
    assert "http" not in script_src
    # And every inline script of the page is allowed by its exact hash, and nothing more
    inline = re.findall(r"<script>(.*?)</script>", response.text, re.DOTALL)
    pinned = {
        "'sha256-" + base64.b64encode(hashlib.sha256(body.encode()).digest()).decode() + "'"
        for body in inline
    }
    assert set(re.findall(r"'sha256-[^']+'", script_src)) == pinned


def test_docs_assets_are_served_by_the_app(client: TestClient) -> None:
    page = client.get("/docs").text
    (bundle,) = re.findall(r'src="([^"]+swagger-ui-bundle\.js)"', page)
    assert client.get(bundle).status_code == 200


def test_other_html_pages_still_allow_no_script(client: TestClient) -> None:
    response = client.get("/dashboard/login")
    assert "script-src 'none'" in response.headers["content-security-policy"]


def test_redoc_loads_a_bundle_that_asks_no_cdn_for_anything(client: TestClient) -> None:
    # Given the ReDoc page and the bundle it loads
    page = client.get("/redoc").text
    (bundle_url,) = re.findall(r'src="([^"]+redoc\.standalone\.js)"', page)
    bundle = client.get(bundle_url)
    # Then the bundle is served by the app, without the CDN logo of ReDoc's credit line
    assert bundle.status_code == 200
    assert bundle.headers["content-type"].startswith("application/javascript")
    assert "cdn.redoc.ly" not in bundle.text
    assert "redocly logo" in bundle.text  # the same bundle otherwise
