"""The patient 360 view in Chromium: a township clinician with a referral grant opens the lead
hospital's patient from the patient page, filters the timeline with htmx, picks a test in the order
form, sees the lead hospital's recent result and recognises it. Screenshots go to test-artifacts/."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from yilian.access.models import AccessAction, AccessLog, GrantSource
from yilian.access.services import grant_issue
from yilian.records.models import ResultRecognition
from yilian.records.tests.conftest import Records
from yilian.web.tests.test_browser import browser_page, login, shot  # noqa: F401 - the fixture is used by name

pytestmark = pytest.mark.browser


def test_township_clinician_recognises_a_lead_hospital_result(world, records: Records, live_server, browser_page) -> None:  # noqa: F811
    page = browser_page
    base = live_server.url
    patient = world.patients["at_a"]
    grant_issue(
        patient=patient,
        source=GrantSource.REFERRAL,
        grantee_institution=world.b,
        expires_at=timezone.now() + dt.timedelta(days=2),
    )

    login(page, base, "township_clinician")
    page.goto(f"{base}/patients/{patient.uuid}/")
    page.get_by_test_id("open-record").click()
    page.wait_for_url(f"{base}/records/patients/{patient.uuid}/")
    assert "授权访问" in page.get_by_test_id("access-basis").inner_text()
    timeline = page.get_by_test_id("timeline")
    assert timeline.locator("tbody tr").count() == 5
    assert "原发性高血压" in timeline.inner_text() and "人民医院" in timeline.inner_text()
    shot(page, "records-01-patient-360")

    # Filter to diagnoses with htmx: the table is swapped in place and the address follows.
    page.locator("#kind-condition").check()
    page.wait_for_function("() => document.querySelectorAll('[data-testid=timeline] tbody tr').length === 1")
    assert "kind=condition" in page.url
    assert "I10.x00x002" in page.get_by_test_id("timeline").inner_text()
    shot(page, "records-02-filtered")
    page.locator("#kind-condition").uncheck()
    page.wait_for_function("() => document.querySelectorAll('[data-testid=timeline] tbody tr').length === 5")

    # Order a fasting glucose: the lead hospital's two-day-old result is offered first.
    page.locator("#order-code").select_option("1558-6")
    page.get_by_test_id("recognisable-results").wait_for()
    offered = page.get_by_test_id("recognisable-results").inner_text()
    assert "人民医院" in offered and "7.8 mmol/L" in offered
    shot(page, "records-03-recognisable")
    page.get_by_test_id("recognise").first.click()
    page.wait_for_url(f"{base}/records/patients/{patient.uuid}/")
    assert "已互认" in page.content()
    shot(page, "records-04-recognised")

    recognition = ResultRecognition.objects.get()
    assert recognition.user == world.user("township_clinician") and recognition.observation == records.recent_glucose
    assert (
        AccessLog.objects.filter(patient=patient, action=AccessAction.VIEW_RECORD, user=world.user("township_clinician")).count()
        >= 4
    )
