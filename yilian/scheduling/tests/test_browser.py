"""Booking in a real browser (Debian's Chromium via Playwright): a township doctor finds the lead
hospital's slots through the navigation, filters by the township's reserved pool (htmx), books one
for a resident, sees it in the booking list, and the lead hospital's ward board shows the beds."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings

from yilian.scheduling.models import Booking, BookingStatus, Slot
from yilian.scheduling.services import slots_generate
from yilian.scheduling.testing import make_clinic, make_ward, next_weekday
from yilian.testing.world import PASSWORD

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
ARTIFACTS = Path(settings.BASE_DIR) / "test-artifacts"


@pytest.fixture
def browser_page(monkeypatch: pytest.MonkeyPatch) -> Iterator:  # type: ignore[type-arg]
    from playwright.sync_api import sync_playwright

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # the test's own ORM calls, see web/tests/test_browser.py
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1440, "height": 900}, locale="zh-CN")
        page = context.new_page()
        page.set_default_timeout(15_000)
        try:
            yield page
        finally:
            context.close()
            browser.close()


def test_township_doctor_books_a_reserved_slot_for_a_resident(world, live_server, browser_page) -> None:
    page = browser_page
    base = live_server.url
    clinic = make_clinic(world)
    day = next_weekday()
    slots_generate(schedule=clinic.schedule, start_date=day, end_date=day)
    make_ward(world, beds=4)
    first = Slot.objects.filter(schedule=clinic.schedule).order_by("start").first()
    assert first is not None
    patient = world.patients["at_b"]

    page.goto(f"{base}/accounts/login/")
    page.get_by_label("用户名").fill("township_clinician")
    page.get_by_label("密码").fill(PASSWORD)
    page.get_by_role("button", name="登录").click()
    page.wait_for_url(f"{base}/")

    # The navigation leads to the lead hospital's schedules and their pool use.
    page.get_by_role("link", name="号源与床位").first.click()
    page.wait_for_url(f"{base}/scheduling/")
    page.select_option("[data-testid=institution-picker] select", str(world.a.uuid))
    page.wait_for_url(f"{base}/scheduling/?institution={world.a.uuid}")
    assert "心内科普通门诊" in page.get_by_test_id("schedule-table").inner_text()

    # Booking from the resident: the search narrows to slots with units reserved for this township.
    page.goto(f"{base}/scheduling/patients/{patient.uuid}/book/?date_from={day.isoformat()}")
    page.select_option("[data-testid=slot-search] select[name=pool]", "reserved")
    page.wait_for_url(lambda url: "pool=reserved" in url)
    assert page.get_by_test_id("slot-table").locator("tbody tr").count() == 4
    row = page.get_by_test_id(f"book-{first.uuid}").locator("xpath=ancestor::form")
    row.locator("select[name=pool]").select_option("reserved")
    page.get_by_test_id(f"book-{first.uuid}").click()
    page.wait_for_url(f"{base}/scheduling/bookings/")
    assert "黄美玲" in page.get_by_test_id("booking-table").inner_text()
    shot_path = ARTIFACTS / "scheduling-booked.png"
    page.screenshot(path=str(shot_path), full_page=True)
    booking = Booking.objects.get(patient=patient)
    assert booking.status == BookingStatus.BOOKED and booking.pool.quota == clinic.quota_b

    # The lead hospital's ward board shows live bed status.
    page.goto(f"{base}/scheduling/wards/?institution={world.a.uuid}")
    assert page.locator("[data-status=free]").count() == 4
