"""The resident portal in a real browser on a phone-sized screen: Debian's Chromium through
Playwright against a live server. The code is read from the console SMS gateway (the only
mock: the edge of the world). Screenshots go to test-artifacts/. No skip: if Chromium cannot
start, the test fails."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from yilian.access.models import AccessAction
from yilian.access.services import break_glass_open
from yilian.notifications.sms import ConsoleSmsGateway
from yilian.patients.access import access_patient
from yilian.portal.testing import actor, last_code_sent_to
from yilian.records.testing import make_identity, make_visit
from yilian.web.tests.test_browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS

pytestmark = pytest.mark.browser

PHONE = {"width": 390, "height": 844}  # an ordinary phone, in CSS pixels


@pytest.fixture
def phone_page(monkeypatch: pytest.MonkeyPatch) -> Iterator:  # type: ignore[type-arg]
    from playwright.sync_api import sync_playwright

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # see yilian/web/tests/test_browser.py
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        context = browser.new_context(
            viewport=PHONE,  # type: ignore[arg-type]
            device_scale_factor=2,
            is_mobile=True,
            has_touch=True,
            locale="zh-CN",
        )
        page = context.new_page()
        page.set_default_timeout(15_000)
        try:
            yield page
        finally:
            context.close()
            browser.close()


def shot(page, name: str) -> None:  # type: ignore[no-untyped-def]
    page.screenshot(path=str(ARTIFACTS / f"portal-{name}.png"), full_page=True)


def fits_the_screen(page) -> bool:  # type: ignore[no-untyped-def]
    return bool(page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth"))


def test_resident_signs_in_on_a_phone_and_sees_who_looked(world, live_server, phone_page) -> None:
    page, base = phone_page, live_server.url
    resident = world.patients["at_b"]
    access_patient(actor(world, "township_clinician", world.b), resident.uuid)
    break_glass_open(actor=actor(world, "other_consortium_user"), patient=resident, reason="急诊昏迷，需查过敏史", hours=2)
    access_patient(actor(world, "other_consortium_user"), resident.uuid, action=AccessAction.VIEW_RECORD)
    make_visit(make_identity(resident, world.b), "B-0001", days_ago=3)

    page.goto(f"{base}/me/")
    page.wait_for_url(f"{base}/me/sign-in/")
    assert page.locator("html").get_attribute("lang") == "zh-hans"
    assert fits_the_screen(page)
    shot(page, "01-sign-in")
    page.get_by_label("手机号码").fill(resident.phone)
    page.get_by_label("身份证号").fill(resident.id_number)
    page.get_by_role("button", name="获取验证码").click()
    page.wait_for_url(f"{base}/me/sign-in/code/")
    assert "138****0000" in page.get_by_test_id("code-sent-to").inner_text()
    code = last_code_sent_to(resident.phone)
    assert len(ConsoleSmsGateway.messages(phone=resident.phone)) == 1

    page.get_by_label("验证码").fill("000000" if code != "000000" else "111111")
    page.get_by_role("button", name="登录").click()
    assert "还可以再试4次" in page.get_by_test_id("form-error").inner_text()
    shot(page, "02-wrong-code")
    page.get_by_label("验证码").fill(code)
    page.get_by_role("button", name="登录").click()
    page.wait_for_url(f"{base}/me/")
    assert page.get_by_test_id("resident-name").inner_text().startswith("黄美玲")
    assert page.get_by_test_id("masked-id").inner_text() == "4407**********0029"
    assert "紧急授权（破窗）" in page.get_by_test_id("grants").inner_text()
    assert "水步镇卫生院" in page.get_by_test_id("encounter").inner_text()
    assert fits_the_screen(page)
    shot(page, "03-summary")

    page.get_by_test_id("tab-access-log").click()
    page.wait_for_url(f"{base}/me/access-log/")
    rows = page.get_by_test_id("access-row")
    assert rows.count() == 2
    assert rows.first.get_attribute("data-break-glass") == "1" and "甄医生" in rows.first.inner_text()
    assert "黄晓敏" in rows.nth(1).inner_text() and "全科医学科" in rows.nth(1).inner_text()
    assert fits_the_screen(page)
    shot(page, "04-access-log")

    page.get_by_test_id("language-switch").click()
    page.wait_for_url(f"{base}/me/access-log/")
    assert page.locator("h1").inner_text() == "Who looked at my record"
    shot(page, "05-access-log-english")
    page.get_by_test_id("language-switch").click()
    page.wait_for_url(f"{base}/me/access-log/")

    page.get_by_test_id("sign-out").click()
    page.wait_for_url(f"{base}/me/sign-in/")
    assert "您已安全退出" in page.get_by_test_id("message").inner_text()
    page.goto(f"{base}/me/")
    page.wait_for_url(f"{base}/me/sign-in/")
    # The staff side knows nothing of the resident's session either.
    page.goto(f"{base}/patients/")
    assert "/accounts/login/" in page.url
