"""The API docs page in a real browser (Debian's Chromium through Playwright), offline.

Every request the page makes is recorded: all must go to the Yilian server itself, and Swagger UI
must render the operations from the local OpenAPI document. Hospitals run on isolated intranets.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(settings.BASE_DIR) / "test-artifacts"


@pytest.fixture
def browser_page(monkeypatch: pytest.MonkeyPatch) -> Iterator:  # type: ignore[type-arg]
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the ORM calls around it stay synchronous.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="zh-CN")
        page = context.new_page()
        page.set_default_timeout(15_000)
        try:
            yield page
        finally:
            context.close()
            browser.close()


def test_docs_page_renders_from_local_assets_only(live_server, browser_page) -> None:  # type: ignore[no-untyped-def]
    page = browser_page
    requested: list[str] = []
    failed: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.on("requestfailed", lambda request: failed.append(request.url))

    page.goto(f"{live_server.url}/api/v1/docs")
    page.wait_for_selector(".swagger-ui .info .title")
    assert "医联 Yilian API" in page.inner_text(".swagger-ui .info .title")
    page.get_by_text("/api/v1/institutions/{id}/deactivate", exact=True).first.wait_for()
    assert page.locator(".opblock").count() >= 27  # every operation is listed
    page.screenshot(path=str(ARTIFACTS / "api-docs.png"), full_page=False)

    remote = [url for url in requested if not url.startswith(live_server.url) and not url.startswith("data:")]
    assert not remote, f"the docs page requested remote addresses: {remote}"
    assert f"{live_server.url}/api/v1/openapi.json" in requested
    assert not failed, f"requests failed: {failed}"
