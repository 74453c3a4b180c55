"""The patient 360 view, the order form and 结果互认 through HTTP; the authorisation matrix of every page."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from yilian.access.models import AccessAction, AccessBasis, AccessGrant, AccessLog, GrantScope, GrantSource
from yilian.access.services import grant_issue
from yilian.records.models import ResultRecognition, ResultValidityRule, ServiceRequest
from yilian.records.testing import make_glucose, make_identity, make_visit
from yilian.records.tests.conftest import WATCHED, Records
from yilian.testing.matrix import Endpoint, run_matrix
from yilian.testing.world import PERSONAS, World

ALL = (*PERSONAS, "institution_admin", "hr_officer", "privacy_officer", "system_admin")


def record_url(world: World, key: str = "at_a") -> str:
    return f"/records/patients/{world.patients[key].uuid}/"


def grant_to_b(world: World, scope: str = GrantScope.RECORD) -> AccessGrant:
    return grant_issue(
        patient=world.patients["at_a"],
        source=GrantSource.REFERRAL,
        grantee_institution=world.b,
        expires_at=timezone.now() + dt.timedelta(days=3),
        scope=scope,
    )


def test_township_clinician_needs_a_grant_for_a_lead_hospital_patient(world: World, records: Records, login) -> None:  # type: ignore[no-untyped-def]
    client = login("township_clinician")
    assert client.get(record_url(world)).status_code == 404
    assert not AccessLog.objects.exists()

    grant = grant_to_b(world)
    response = client.get(record_url(world))
    assert response.status_code == 200
    body = response.content.decode()
    assert "原发性高血压" in body and "I10.x00x002" in body and "台山市人民医院" in body and "A-LAB-1" in body
    log = AccessLog.objects.get()
    assert log.action == AccessAction.VIEW_RECORD and log.basis == AccessBasis.GRANT and log.grant == grant
    assert log.user == world.user("township_clinician") and log.acting_institution == world.b
    assert log.path == record_url(world)

    AccessGrant.objects.filter(pk=grant.pk).update(revoked_at=timezone.now())
    assert client.get(record_url(world)).status_code == 404
    assert AccessLog.objects.count() == 1


def test_a_summary_grant_does_not_open_the_record_and_leaves_no_log(world: World, records: Records, login) -> None:  # type: ignore[no-untyped-def]
    grant_to_b(world, scope=GrantScope.SUMMARY)
    client = login("township_clinician")
    assert client.get(f"/patients/{world.patients['at_a'].uuid}/").status_code == 200  # the summary is open
    logs = AccessLog.objects.count()
    assert client.get(record_url(world)).status_code == 404
    assert AccessLog.objects.count() == logs


def test_the_holder_sees_the_timeline_newest_first_with_its_sources(world: World, records: Records, login) -> None:  # type: ignore[no-untyped-def]
    response = login("lead_clinician").get(record_url(world))
    assert response.status_code == 200
    kinds = [row.split('"')[0] for row in response.content.decode().split('data-kind="')[1:]]
    # glucose 2 days, diagnosis then visit 3 days (the diagnosis is recorded after the visit starts),
    # X-ray 10 days, glucose 40 days ago: newest first.
    assert kinds == ["observation", "condition", "encounter", "report", "observation"]
    assert AccessLog.objects.get().basis == AccessBasis.HOLDER
    assert (
        'data-testid="open-record"' in login("lead_clinician").get(f"/patients/{world.patients['at_a'].uuid}/").content.decode()
    )


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("kind=condition", ["condition"]),
        ("kind=observation&kind=report", ["observation", "report", "observation"]),
        ("q=I10", ["condition"]),
        ("q=血糖", ["observation", "observation"]),
        ("q=1558", ["observation", "observation"]),
        ("date_from={d15}&date_to={d1}", ["observation", "condition", "encounter", "report"]),
        ("date_from={d5}", ["observation", "condition", "encounter"]),
        ("institution={t}", []),
        ("institution={a}&kind=report", ["report"]),
    ],
)
def test_timeline_filters(world: World, records: Records, login, query: str, expected: list[str]) -> None:  # type: ignore[no-untyped-def]
    today = timezone.localdate()
    query = query.format(
        d15=today - dt.timedelta(days=15),
        d5=today - dt.timedelta(days=5),
        d1=today - dt.timedelta(days=1),
        t=world.t.uuid,
        a=world.a.uuid,
    )
    response = login("lead_clinician").get(f"{record_url(world)}?{query}", headers={"HX-Request": "true"})
    assert response.status_code == 200
    body = response.content.decode()
    assert "<html" not in body  # htmx gets the table only
    assert [row.split('"')[0] for row in body.split('data-kind="')[1:]] == expected


def test_bad_filters_are_explained_not_crashed(world: World, records: Records, login) -> None:  # type: ignore[no-untyped-def]
    client = login("lead_clinician")
    today = timezone.localdate()
    response = client.get(f"{record_url(world)}?date_from={today}&date_to={today - dt.timedelta(days=3)}")
    assert response.status_code == 200 and "结束日期不能早于开始日期。" in response.content.decode()
    for query in (
        "q=" + "x" * 500,
        "kind=nonsense",
        "institution=not-a-uuid",
        "date_from=2026-13-45",
        "page=999999",
        "page_size=100000",
    ):
        assert client.get(f"{record_url(world)}?{query}").status_code == 200, query


def test_timeline_queries_do_not_grow_with_the_record(world: World, records: Records, login, django_assert_num_queries) -> None:  # type: ignore[no-untyped-def]
    client = login("lead_clinician")
    client.get("/")  # warm the session
    with CaptureQueriesContext(connection) as small:
        client.get(record_url(world))
    for i in range(30):
        make_visit(records.identity_a, f"A-MZ-X{i}", days_ago=20 + i, icd10="J06.9")
        make_glucose(records.identity_a, f"A-LAB-X{i}", days_ago=20 + i)
    with django_assert_num_queries(len(small.captured_queries)):
        response = client.get(f"{record_url(world)}?page_size=100")
    assert response.content.decode().count('data-kind="') == 5 + 90


def test_order_form_shows_recognisable_results_from_other_members_only(world: World, records: Records, login) -> None:  # type: ignore[no-untyped-def]
    grant_to_b(world)
    # 甄伟's hospital T is in the other consortium: its result is never offered to B.
    identity_t = make_identity(world.patients["at_a"], world.t, "T-0001")
    make_glucose(identity_t, "T-LAB-1", days_ago=1)
    client = login("township_clinician")
    response = client.get(f"{record_url(world)}order/?code=1558-6", headers={"HX-Request": "true"})
    assert response.status_code == 200
    body = response.content.decode()
    assert str(records.recent_glucose.uuid) in body  # A's, two days old, within the 7-day lab window
    assert str(records.old_glucose.uuid) not in body  # forty days: expired
    assert "T-LAB-1" not in body and "台山市中医院" not in body

    # The window is configurable: a 60-day rule for this test brings the old result back.
    ResultValidityRule.objects.create(category="laboratory", code="1558-6", days=60)
    body = client.get(f"{record_url(world)}order/?code=1558-6").content.decode()
    assert str(records.old_glucose.uuid) in body

    # Imaging keeps its 30-day default: the 10-day-old X-ray is offered.
    assert str(records.xray.uuid) in client.get(f"{record_url(world)}order/?code=36643-5").content.decode()
    assert "没有" in client.get(f"{record_url(world)}order/?code=11524-6").content.decode()
    assert client.get(f"{record_url(world)}order/?code=bogus").status_code == 422


def test_recognition_is_recorded_once_per_day(world: World, records: Records, login) -> None:  # type: ignore[no-untyped-def]
    grant_to_b(world)
    client = login("township_clinician")
    data = {"kind": "observation", "result": str(records.recent_glucose.uuid), "code": "1558-6"}
    response = client.post(f"{record_url(world)}recognise/", data)
    assert response.status_code == 302 and response["Location"] == record_url(world)
    recognition = ResultRecognition.objects.get()
    assert recognition.user == world.user("township_clinician") and recognition.institution == world.b
    assert recognition.result_institution == world.a and recognition.observation == records.recent_glucose
    assert recognition.code == "1558-6" and recognition.display == "空腹血糖" and recognition.patient == world.patients["at_a"]
    client.post(f"{record_url(world)}recognise/", data)
    assert ResultRecognition.objects.count() == 1
    followed = client.get(record_url(world))
    assert "已互认" in followed.content.decode()


def test_recognition_refuses_expired_own_or_foreign_results(world: World, records: Records, login) -> None:  # type: ignore[no-untyped-def]
    grant_to_b(world)
    client = login("township_clinician")
    url = f"{record_url(world)}recognise/"
    client.post(url, {"kind": "observation", "result": str(records.old_glucose.uuid), "code": "1558-6"})
    client.post(url, {"kind": "report", "result": str(records.xray.uuid), "code": "1558-6"})  # not the same test
    client.post(url, {"kind": "observation", "result": "not-a-uuid", "code": "1558-6"})
    # Another patient's result named under this patient: not found.
    assert client.post(url, {"kind": "observation", "result": str(records.b_glucose.uuid), "code": "1558-6"}).status_code == 404
    assert not ResultRecognition.objects.exists()
    # B's own result, seen by B for its own patient, is not "another member's".
    own = client.post(
        f"{record_url(world, 'at_b')}recognise/", {"kind": "observation", "result": str(records.b_glucose.uuid), "code": "1558-6"}
    )
    assert own.status_code == 302 and not ResultRecognition.objects.exists()
    assert "该结果不能互认" in client.get(own["Location"]).content.decode()


def test_placing_an_order(world: World, records: Records, login) -> None:  # type: ignore[no-untyped-def]
    client = login("township_clinician")
    response = client.post(f"{record_url(world, 'at_b')}order/", {"code": "36643-5", "reason": "咳嗽两周"})
    assert response.status_code == 302
    order = ServiceRequest.objects.get()
    assert (
        order.patient == world.patients["at_b"]
        and order.institution == world.b
        and order.requester == world.user("township_clinician")
    )
    assert order.display == "胸部X线摄影（正侧位）" and order.category == "imaging" and order.reason == "咳嗽两周"
    client.post(f"{record_url(world, 'at_b')}order/", {"code": "bogus"})
    client.post(f"{record_url(world, 'at_b')}order/", {"code": "36643-5", "reason": "x" * 201})
    assert ServiceRequest.objects.count() == 1


def test_timeline_marks_recognisable_results(world: World, records: Records, login) -> None:  # type: ignore[no-untyped-def]
    grant_to_b(world)
    body = login("township_clinician").get(record_url(world)).content.decode()
    assert body.count('data-testid="recognise-timeline"') == 2  # the recent glucose and the X-ray; not the expired one
    body = login("lead_clinician").get(record_url(world)).content.decode()
    assert 'data-testid="recognise-timeline"' not in body  # A's own results
    assert 'data-testid="order-card"' in body


@pytest.mark.parametrize(
    ("name", "endpoint", "allowed"),
    [
        ("record_page", Endpoint("GET", lambda w: record_url(w, "at_b")), {"township_clinician": 200}),
        ("record_page_v", Endpoint("GET", lambda w: record_url(w, "at_v")), {"township_clinician": 200, "village_doctor": 200}),
        ("order_panel", Endpoint("GET", lambda w: f"{record_url(w, 'at_b')}order/?code=1558-6"), {"township_clinician": 200}),
        (
            "order_post",
            Endpoint("POST", lambda w: f"{record_url(w, 'at_b')}order/", data=lambda w: {"code": "1558-6"}),
            {"township_clinician": 302},
        ),
        (
            "recognise_post",
            Endpoint(
                "POST",
                lambda w: f"{record_url(w, 'at_b')}recognise/",
                data=lambda w: {"kind": "observation", "result": str(w.records.b_glucose.uuid), "code": "1558-6"},  # type: ignore[attr-defined]
            ),
            {"township_clinician": 302},
        ),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_records_pages_matrix(world: World, records: Records, name: str, endpoint: Endpoint, allowed: dict[str, int]) -> None:
    world.records = records  # type: ignore[attr-defined]
    denied: dict[str, int | set[int]] = {**{key: {403, 404} for key in ALL}, "anonymous": 302}
    run_matrix(world, endpoint, allowed=allowed, denied_status=denied, personas=ALL, watched=WATCHED)
    if endpoint.method == "GET":
        assert AccessLog.objects.filter(action=AccessAction.VIEW_RECORD).count() == len(allowed)
