"""The API docs load with no route to the internet: Swagger UI and ReDoc come from the package."""

from __future__ import annotations

import pytest
from playwright.sync_api import BrowserContext, Route, expect

from tests.support.browser import screenshot

pytestmark = pytest.mark.browser


# What a page may ask for: none of it may leave the service (ReDoc's credit logo included).
NEEDED = {"document", "script", "stylesheet", "font", "fetch", "xhr", "image"}


@pytest.fixture
def offline(context: BrowserContext, served_base_url: str) -> list[str]:
    """Every request that leaves the live server is refused; the list keeps the needed ones."""
    outside: list[str] = []

    def refuse_outside(route: Route) -> None:
        request = route.request
        if request.url.startswith(served_base_url):
            route.continue_()
            return
        if request.resource_type in NEEDED:
            outside.append(f"{request.resource_type} {request.url}")
        route.abort("internetdisconnected")

    context.route("**/*", refuse_outside)
    return outside


class TestOfflineDocs:
    def test_swagger_ui_renders_every_operation(
        self, context: BrowserContext, offline: list[str]
    ) -> None:
        # Given a browser with no network beyond the service
        page = context.new_page()
        # When it opens the interactive docs
        page.goto("/docs")
        # Then Swagger UI draws the API's title and operations, from local assets only
        expect(page.locator(".swagger-ui .info .title")).to_contain_text("Stealth Recovery")
        expect(page.locator(".opblock-summary-path").first).to_be_visible()
        assert page.locator(".opblock").count() > 20
        screenshot(page, "docs-swagger-desktop")
        assert offline == []

    def test_redoc_renders_the_reference(self, context: BrowserContext, offline: list[str]) -> None:
        page = context.new_page()
        refused: list[str] = []
        page.on(
            "console",
            lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None,
        )
        page.goto("/redoc")
        expect(page.locator("h1").first).to_contain_text("Stealth Recovery")
        expect(page.get_by_text("Report a failed payment", exact=False).first).to_be_attached()
        # The credit line stays, without a logo from Redocly's CDN (nothing is even attempted)
        expect(page.get_by_text("API docs by Redocly")).to_be_attached()
        assert page.locator('img[alt="redocly logo"]').count() == 0
        assert offline == []
        assert refused == []
