"""The review queue in a real browser (Debian's Chromium via Playwright): a consortium manager
opens the queue, compares the two records side by side, merges them, then undoes the merge."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings

from yilian.access.models import AccessAction, AccessLog
from yilian.patients.identities import IdentityData
from yilian.patients.models import MatchReview, PatientMerge, ReviewStatus, SourceIdentity
from yilian.patients.services import identity_ingest
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


def test_manager_reviews_merges_and_unmerges(world, live_server, browser_page) -> None:
    page = browser_page
    base = live_server.url
    outcome = identity_ingest(
        institution=world.c, data=IdentityData(local_id="C-88", name="黄美玲", sex="2", birth_date=dt.date(1958, 3, 7))
    )
    review = MatchReview.objects.get(identity=outcome.identity)

    page.goto(f"{base}/accounts/login/")
    page.get_by_label("用户名").fill("consortium_manager")
    page.get_by_label("密码").fill(PASSWORD)
    page.get_by_role("button", name="登录").click()
    page.wait_for_url(f"{base}/")

    page.get_by_role("link", name="主索引审核").first.click()
    page.wait_for_url(f"{base}/patients/review/")
    assert page.get_by_test_id("open-count").inner_text() == "1"
    page.get_by_test_id("review-table").get_by_role("link", name="审核").click()
    page.wait_for_url(f"{base}/patients/review/{review.uuid}/")
    table = page.get_by_test_id("side-by-side")
    assert "冲蒌镇卫生院" in page.content() and "水步镇卫生院" in page.content()
    assert table.get_by_text("440781196205120029").count() == 1
    page.screenshot(path=str(ARTIFACTS / "mpi-review.png"), full_page=True)
    assert AccessLog.objects.filter(user=world.user("consortium_manager"), action=AccessAction.VIEW_SUMMARY).count() == 2

    page.get_by_label("是同一人，合并").check()
    page.get_by_label("说明").fill("电话回访核实为同一人")
    page.get_by_role("button", name="提交").click()
    page.wait_for_url(f"{base}/patients/review/")
    assert "审核结论已保存" in page.content()
    assert page.get_by_test_id("open-count").inner_text() == "0"
    assert SourceIdentity.objects.get(pk=outcome.identity.pk).patient == world.patients["at_b"]
    assert MatchReview.objects.get(pk=review.pk).status == ReviewStatus.LINKED

    page.get_by_role("link", name="合并记录").click()
    page.wait_for_url(f"{base}/patients/merges/")
    row = page.get_by_test_id("merge-table").locator("tbody tr").first
    assert "电话回访核实为同一人" in row.inner_text()
    row.get_by_label("确认").check()
    row.get_by_role("button", name="撤销合并").click()
    page.wait_for_url(f"{base}/patients/merges/")
    assert "已撤销合并" in page.content()
    page.screenshot(path=str(ARTIFACTS / "mpi-unmerged.png"), full_page=True)
    assert PatientMerge.objects.get().unmerged_at is not None
    assert SourceIdentity.objects.get(pk=outcome.identity.pk).patient == outcome.patient
