"""A real Chromium (Debian's, never downloaded) against the app served by uvicorn on loopback.

The server runs in a thread of the test process, on the per-session test database, so tests
build rows with the `db` fixture and read back what the browser did.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright
from sqlalchemy import Engine

from tests.support.browser import CHROMIUM, CHROMIUM_ARGS, PHONE
from tests.support.processes import free_port
from tests.support.smtp import smtp_sink  # noqa: F401  (fixture)
from tests.support.workers import IN_CI


@pytest.fixture(scope="session")
def live_server(engine: Engine) -> Iterator[str]:
    """The app on a free loopback port, against the test database."""
    from stealth_recovery.app import create_app

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, name="live-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the live server did not start")
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


# Package scope: Playwright's sync API runs an event loop on the main thread while it lives, and
# later tests that call asyncio.run() on that thread must not find it still running.
@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    if not Path(CHROMIUM).exists():
        message = f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)"
        if IN_CI:
            pytest.fail(f"CI=true and {message}")
        pytest.skip(message)
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(
        executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
    )
    yield browser
    browser.close()


@pytest.fixture
def served_base_url(live_server: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Links the app builds (pay links, form actions) point at the live server in this test."""
    from stealth_recovery.core.settings import get_settings

    monkeypatch.setenv("BASE_URL", live_server)
    get_settings.cache_clear()
    yield live_server
    monkeypatch.undo()
    get_settings.cache_clear()


@pytest.fixture
def context(browser: Browser, served_base_url: str) -> Iterator[BrowserContext]:
    context = browser.new_context(base_url=served_base_url, viewport={"width": 1366, "height": 900})
    context.set_default_timeout(15_000)
    yield context
    context.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


@pytest.fixture
def phone(browser: Browser, served_base_url: str) -> Iterator[Page]:
    """A phone-sized browser, as a customer opening a pay link from a message."""
    context = browser.new_context(base_url=served_base_url, **PHONE)  # type: ignore[arg-type]
    context.set_default_timeout(15_000)
    yield context.new_page()
    context.close()
