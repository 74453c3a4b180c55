"""The shell in a real browser: Debian's Chromium driven by Playwright against a live server.

Logs in as the township clinician through the form, switches institution in the header, opens
the structure pages and a patient, and leaves screenshots in test-artifacts/. There is no skip:
if Chromium cannot start, the test fails.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings

from yilian.notifications.models import Notification, NotificationKind
from yilian.testing.world import PASSWORD

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

    # Playwright's sync API runs an event loop in this thread, so Django would refuse the ORM
    # calls the test makes while the browser is open; they are still synchronous and safe. Only
    # for this test: the variable must not leak into the rest of the session (check --deploy).
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

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


def shot(page, name: str) -> None:  # type: ignore[no-untyped-def]
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def login(page, base: str, username: str) -> None:  # type: ignore[no-untyped-def]
    page.goto(f"{base}/accounts/login/")
    page.get_by_label("用户名").fill(username)
    page.get_by_label("密码").fill(PASSWORD)
    page.get_by_role("button", name="登录").click()
    page.wait_for_url(f"{base}/")


def test_township_clinician_day(world, live_server, browser_page) -> None:
    page = browser_page
    base = live_server.url
    Notification.objects.create(
        recipient=world.user("township_clinician"),
        kind=NotificationKind.ACCESS_GRANTED,
        title="台山市人民医院向本院下转患者伍国华，请安排随访",
        link="/patients/",
    )

    # Anonymous visitors land on the Chinese login page; wrong passwords are refused in Chinese.
    page.goto(f"{base}/")
    page.wait_for_url(re.compile(r"/accounts/login/"))
    assert "医联体协同平台" in page.content()
    shot(page, "01-login")
    page.get_by_label("用户名").fill("township_clinician")
    page.get_by_label("密码").fill("not-the-password")
    page.get_by_role("button", name="登录").click()
    assert "用户名或密码错误" in page.get_by_test_id("login-error").inner_text()

    login(page, base, "township_clinician")
    assert page.locator("h1").first.inner_text() == "工作台"
    assert page.get_by_test_id("role-panel").get_attribute("data-panel") == "clinical"
    assert page.get_by_test_id("acting-place").inner_text() == "水步镇卫生院"
    assert page.get_by_test_id("residents-held").inner_text() == "2"  # 黄美玲 at B, 陈大明 at its village clinic
    assert "请安排随访" in page.get_by_test_id("inbox").inner_text()
    shot(page, "02-home-township-clinician")

    # Mark the notification read with htmx: the row greys out and the bell's counter goes.
    page.get_by_test_id("mark-read").click()
    page.get_by_test_id("inbox").locator(".inbox-item.read").wait_for()
    assert page.get_by_test_id("unread-count").count() == 0
    assert Notification.objects.unread().count() == 0

    # The inbox page: mark everything read at once (htmx swaps the list and the bell).
    for title in ("第一条待办", "第二条待办"):
        Notification.objects.create(recipient=world.user("township_clinician"), kind=NotificationKind.SYSTEM, title=title)
    page.goto(f"{base}/inbox/")
    assert page.get_by_test_id("unread-count").inner_text() == "2"
    shot(page, "02b-inbox")
    page.get_by_test_id("mark-all-read").click()
    page.get_by_test_id("unread-count").wait_for(state="detached")
    assert page.get_by_test_id("mark-all-read").count() == 0
    assert Notification.objects.unread().count() == 0
    page.goto(f"{base}/")

    # The header switcher: act for 冲蒌镇卫生院, and the header and side bar say so.
    switcher = page.locator("#acting-membership")
    option = switcher.locator("option", has_text="冲蒌镇卫生院")
    with page.expect_navigation():
        switcher.select_option(option.get_attribute("value"))
    assert page.get_by_test_id("acting-place").inner_text() == "冲蒌镇卫生院"
    assert "冲蒌镇卫生院" in switcher.locator("option:checked").inner_text()
    assert page.get_by_test_id("residents-held").inner_text() == "0"
    shot(page, "03-home-after-switch")

    # The structure pages, reached through the side navigation.
    for label, path, expected, name in (
        ("医疗机构", "/structure/institutions/", "台山市人民医院", "04-institutions"),
        ("科室", "/structure/departments/", "全科医学科", "05-departments"),
        ("服务网格", "/structure/grids/", "石龙村", "06-grids"),
    ):
        page.get_by_test_id("main-nav").get_by_role("link", name=label, exact=True).click()
        page.wait_for_url(f"{base}{path}")
        assert expected in page.content(), label
        shot(page, name)

    # Back at 水步镇卫生院: search the residents with htmx and open one.
    with page.expect_navigation():
        switcher = page.locator("#acting-membership")
        switcher.select_option(switcher.locator("option", has_text="水步镇卫生院").get_attribute("value"))
    page.get_by_test_id("main-nav").get_by_role("link", name="居民档案").click()
    page.wait_for_url(f"{base}/patients/")
    table = page.get_by_test_id("patient-table")
    assert "4407**********0029" in table.inner_text()  # masked in the list
    assert "440781196205120029" not in page.content()
    page.get_by_placeholder("姓名、身份证号或手机号").fill("黄美")
    page.wait_for_function("() => !document.querySelector('#patient-table').innerText.includes('陈大明')")
    shot(page, "07-patients-search")
    page.get_by_role("link", name="黄美玲").first.click()
    page.get_by_test_id("patient-name").wait_for()
    assert "440781196205120029" in page.content()
    assert "本机构建档" in page.get_by_test_id("access-basis").inner_text()
    assert "黄晓敏" in page.get_by_test_id("recent-access").inner_text()
    shot(page, "08-patient-detail")

    # Break-glass page with its audit warning.
    page.goto(f"{base}/patients/break-glass/")
    assert "此操作将被审计" in page.get_by_test_id("audit-warning").inner_text()
    shot(page, "09-break-glass")

    # English through the header switch.
    page.goto(f"{base}/")
    page.get_by_test_id("language-switch").click()
    page.wait_for_load_state()
    assert "Residents" in page.get_by_test_id("main-nav").inner_text()
    shot(page, "10-home-english")


PERSONA_SHOTS = (
    "lead_clinician",
    "consortium_manager",
    "bureau_supervisor",
    "privacy_officer",
    "institution_admin",
    "system_admin",
)


def test_persona_home_pages(world, live_server, browser_page) -> None:
    """Each persona's home page renders its own panel in the browser (screenshots for review)."""
    page = browser_page
    from yilian.access.services import break_glass_open
    from yilian.accounts.actors import Actor
    from yilian.accounts.selectors import current_memberships
    from yilian.patients.access import access_patient

    lead = world.user("lead_clinician")
    lead_actor = Actor(user=lead, membership=current_memberships(lead)[0], ip_address="10.20.1.7")
    break_glass_open(
        actor=lead_actor,
        patient=world.patients["at_b"],
        reason="急诊胸痛患者意识不清，需查既往病史与用药",
        hours=2,
    )
    access_patient(lead_actor, world.patients["at_b"].uuid)
    expected_panel = {
        "lead_clinician": "clinical",
        "consortium_manager": "consortium",
        "bureau_supervisor": "bureau",
        "privacy_officer": "privacy",
        "institution_admin": "institution",
        "system_admin": "system",
    }
    for persona in PERSONA_SHOTS:
        page.context.clear_cookies()
        login(page, live_server.url, persona)
        assert page.get_by_test_id("role-panel").get_attribute("data-panel") == expected_panel[persona]
        shot(page, f"home-{persona}")
    # The privacy officer reviews the break-glass use and finds it in the access log.
    page.context.clear_cookies()
    login(page, live_server.url, "privacy_officer")
    page.goto(f"{live_server.url}/access/review/")
    shot(page, "privacy-review")
    row = page.get_by_test_id("review-row").first
    row.get_by_label("合理", exact=True).check()
    row.get_by_role("textbox").fill("急诊抢救，理由属实")
    row.get_by_role("button", name="提交审核").click()
    page.get_by_text("急诊抢救，理由属实").wait_for()
    assert page.get_by_test_id("review-row").first.locator(".badge", has_text="合理").count() == 1
    page.goto(f"{live_server.url}/access/log/")
    shot(page, "privacy-access-log")
