"""Two-way referral in a real browser (Debian's Chromium via Playwright): a township doctor refers a
resident up using the destination suggestion, the lead hospital's coordinator accepts and books a
slot from the board, the doctor sees the booking; then the cardiologist refers a patient down to
the township, the township doctor acknowledges it with a follow-up task for the village doctor, and
the task appears in the follow-up lists, where the village doctor records the result.

Screenshots of each page go to test-artifacts/referrals-*.png."""

from __future__ import annotations

import datetime as dt
import importlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.apps import apps
from django.conf import settings
from django.utils import timezone

from yilian.referrals.models import Direction, FollowUpStatus, FollowUpTask, Referral, ReferralStatus
from yilian.referrals.testing import clinic_slot, coordinator
from yilian.scheduling.models import BookingStatus
from yilian.scheduling.testing import make_ward
from yilian.testing.world import PASSWORD

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
ARTIFACTS = Path(settings.BASE_DIR) / "test-artifacts"


@pytest.fixture
def sign_in(monkeypatch: pytest.MonkeyPatch, live_server: Any) -> Iterator[Callable[[str], Any]]:
    """sign_in("township_clinician") -> a signed-in page in its own browser context."""
    from playwright.sync_api import sync_playwright

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # the test's own ORM calls, see web/tests/test_browser.py
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        contexts = []

        def _sign_in(username: str) -> Any:
            context = browser.new_context(viewport={"width": 1440, "height": 900}, locale="zh-CN")
            contexts.append(context)
            page = context.new_page()
            page.set_default_timeout(15_000)
            page.goto(f"{live_server.url}/accounts/login/")
            page.get_by_label("用户名").fill(username)
            page.get_by_label("密码").fill(PASSWORD)
            page.get_by_role("button", name="登录").click()
            page.wait_for_url(f"{live_server.url}/")
            return page

        try:
            yield _sign_in
        finally:
            for context in contexts:
                context.close()
            browser.close()


def _shot(page: Any, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"referrals-{name}.png"), full_page=True)


def test_refer_up_book_refer_down_acknowledge_and_follow_up(world, live_server, sign_in) -> None:  # type: ignore[no-untyped-def]
    base = live_server.url
    importlib.import_module("yilian.referrals.migrations.0002_seed_criteria").seed(apps, None)  # see conftest.criteria
    slot = clinic_slot(world)
    make_ward(world, beds=4)
    coordinator(world)
    resident = world.patients["at_b"]

    # 1. The township doctor refers 黄美玲 up from her record, using the suggestion.
    doctor = sign_in("township_clinician")
    doctor.goto(f"{base}/patients/{resident.uuid}/")
    doctor.get_by_test_id("refer").click()
    doctor.wait_for_url(f"{base}/referrals/patients/{resident.uuid}/new/")
    first = doctor.get_by_test_id("suggestion").first
    assert "台山市人民医院" in first.inner_text() and "心血管内科" in first.inner_text()
    assert "上一级机构" in first.inner_text()
    # An urgent criterion raises the urgency (and the suggestion reloads).
    doctor.get_by_label("连续两次随访血压未达标", exact=False).check()
    assert doctor.locator("[name=urgency]").input_value() == "urgent"
    # Only up criteria are offered for an up referral.
    assert doctor.get_by_label("病情稳定", exact=True).is_hidden()
    doctor.get_by_test_id("pick-1").click()
    assert doctor.locator("[name=destination_institution]").input_value() == str(world.a.uuid)
    assert doctor.locator("[name=destination_department]").input_value() == str(world.cardiology.uuid)
    doctor.locator("[name=diagnosis_name]").fill("原发性高血压")
    doctor.locator("[name=diagnosis_code]").fill("I10")
    doctor.locator("[name=reason]").fill("规律服药下血压仍 168/102 mmHg，需调整方案")
    _shot(doctor, "create")
    doctor.get_by_test_id("submit-referral").click()
    doctor.wait_for_url(lambda url: "/referrals/" in url and "/new/" not in url)
    up = Referral.objects.get(direction=Direction.UP)
    assert doctor.get_by_test_id("referral-status").inner_text() == "待接收"
    assert up.urgency == "urgent" and up.destination_department == world.cardiology and len(up.criteria) == 1

    # 2. The coordinator finds it on the board, accepts and books a cardiology slot.
    desk = sign_in("coordinator")
    desk.get_by_test_id("main-nav").get_by_role("link", name="转诊调度看板").click()
    desk.wait_for_url(f"{base}/referrals/board/")
    assert desk.get_by_test_id("count-submitted").inner_text() == "1"
    _shot(desk, "board")
    desk.get_by_role("link", name=up.number).click()
    desk.wait_for_url(f"{base}/referrals/{up.uuid}/")
    accept = desk.get_by_test_id("accept-form")
    accept.locator("select[name=slot]").select_option(str(slot.uuid))
    accept.locator("textarea[name=instructions]").fill("请到门诊楼三楼心内科诊区，携带身份证、医保卡和近期血压记录")
    _shot(desk, "accept")
    desk.get_by_test_id("accept").click()
    desk.wait_for_url(f"{base}/referrals/{up.uuid}/")
    assert desk.get_by_test_id("referral-status").inner_text() == "已预约"
    up.refresh_from_db()
    assert up.status == ReferralStatus.SCHEDULED and up.booking is not None and up.booking.status == BookingStatus.BOOKED

    # 3. The township doctor sees the booking in her outbox and on the referral.
    doctor.get_by_test_id("main-nav").get_by_role("link", name="转出转诊").click()
    doctor.wait_for_url(f"{base}/referrals/outbox/")
    row = doctor.get_by_test_id(f"referral-{up.number}")
    assert "已预约" in row.inner_text()
    assert timezone.localtime(slot.start).strftime("%Y-%m-%d %H:%M") in row.inner_text()
    _shot(doctor, "outbox")
    row.get_by_role("link", name=up.number).click()
    assert "心内科普通门诊" in doctor.get_by_test_id("booking").inner_text()
    _shot(doctor, "detail-booked")

    # 4. The cardiologist refers 伍国华 down to the township, picking it from the suggestion.
    cardiologist = sign_in("lead_clinician")
    patient = world.patients["at_a"]
    cardiologist.goto(f"{base}/referrals/patients/{patient.uuid}/new/")
    cardiologist.locator("[name=direction]").select_option("down")
    township_row = cardiologist.get_by_test_id("suggestion").filter(has_text="水步镇卫生院")
    township_row.get_by_role("button", name="选择").click()
    assert cardiologist.locator("[name=destination_institution]").input_value() == str(world.b.uuid)
    cardiologist.get_by_label("病情稳定", exact=True).first.check()
    cardiologist.locator("[name=diagnosis_name]").fill("原发性高血压")
    cardiologist.locator("[name=reason]").fill("住院调整方案后血压达标，转回基层随访管理")
    cardiologist.get_by_test_id("submit-referral").click()
    cardiologist.wait_for_url(lambda url: "/referrals/" in url and "/new/" not in url)
    down = Referral.objects.get(direction=Direction.DOWN)
    assert down.destination_institution == world.b

    # 5. The township doctor acknowledges it with a follow-up task for the village doctor.
    doctor.get_by_test_id("main-nav").get_by_role("link", name="转入转诊").click()
    doctor.wait_for_url(f"{base}/referrals/inbox/")
    doctor.get_by_role("link", name=down.number).click()
    doctor.wait_for_url(f"{base}/referrals/{down.uuid}/")
    due = timezone.localdate() + dt.timedelta(days=14)
    row = doctor.get_by_test_id("follow-up-1")
    row.locator("select").select_option(label="陈伯")
    row.locator("input[type=date]").fill(due.isoformat())
    row.locator("input[type=text]").fill("复测血压，评估服药依从性")
    _shot(doctor, "acknowledge")
    doctor.get_by_test_id("accept").click()
    doctor.wait_for_url(f"{base}/referrals/{down.uuid}/")
    assert doctor.get_by_test_id("referral-status").inner_text() == "已接收"
    assert "复测血压，评估服药依从性" in doctor.get_by_test_id("referral-follow-ups").inner_text()

    # 6. The task appears in the follow-up lists of the township and of the responsible village doctor.
    doctor.get_by_test_id("main-nav").get_by_role("link", name="随访任务").click()
    doctor.wait_for_url(f"{base}/referrals/follow-ups/")
    assert "伍国华" in doctor.get_by_test_id("follow-up-table").inner_text()
    village = sign_in("village_doctor")
    village.get_by_test_id("main-nav").get_by_role("link", name="随访任务").click()
    task = FollowUpTask.objects.get()
    row = village.get_by_test_id(f"task-{task.uuid}")
    assert "复测血压，评估服药依从性" in row.inner_text() and due.isoformat() in row.inner_text()
    _shot(village, "follow-ups")
    row.locator("input[name=result]").fill("血压 134/86 mmHg，按时服药")
    village.get_by_test_id(f"done-{task.uuid}").click()
    village.wait_for_url(f"{base}/referrals/follow-ups/")
    task.refresh_from_db()
    assert task.status == FollowUpStatus.DONE and task.result == "血压 134/86 mmHg，按时服药"
