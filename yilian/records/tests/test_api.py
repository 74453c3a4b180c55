"""/api/v1/patients/{id}/timeline and the 结果互认 endpoints: scope, logging, filters, bounds, matrix."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.test import Client
from django.utils import timezone

from yilian.access.models import AccessAction, AccessBasis, AccessLog, GrantSource
from yilian.access.services import grant_issue
from yilian.records.models import ResultRecognition, ServiceRequest
from yilian.records.testing import make_glucose, make_visit
from yilian.records.tests.conftest import WATCHED, Records
from yilian.testing.matrix import Endpoint, run_matrix
from yilian.testing.world import PERSONAS, World

pytestmark = pytest.mark.filterwarnings("error:Pydantic serializer warnings", "error::DeprecationWarning:ninja.operation")

ALL = (*PERSONAS, "institution_admin", "hr_officer", "privacy_officer", "system_admin")


def timeline(world: World, key: str = "at_a") -> str:
    return f"/api/v1/patients/{world.patients[key].uuid}/timeline"


def test_timeline_needs_a_grant_and_logs_each_read(world: World, records: Records, login) -> None:  # type: ignore[no-untyped-def]
    client = login("township_clinician")
    response = client.get(timeline(world))
    assert response.status_code == 404 and response.json()["code"] == "not_found"
    assert not AccessLog.objects.exists()
    grant = grant_issue(
        patient=world.patients["at_a"],
        source=GrantSource.REFERRAL,
        grantee_institution=world.b,
        expires_at=timezone.now() + dt.timedelta(days=1),
    )
    body = client.get(timeline(world)).json()
    assert body["count"] == 5 and body["page"] == 1
    first = body["items"][0]
    assert first["kind"] == "observation" and first["id"] == str(records.recent_glucose.uuid)
    assert first["institution"]["name"] == "台山市人民医院" and first["source_id"] == "A-LAB-1"
    assert first["flag"] == "偏高" and first["recognisable"] is True and "mmol/L" in first["summary"]
    log = AccessLog.objects.get()
    assert log.action == AccessAction.VIEW_RECORD and log.basis == AccessBasis.GRANT and log.grant == grant


def test_timeline_pages_and_filters(world: World, records: Records, login) -> None:  # type: ignore[no-untyped-def]
    client = login("lead_clinician")
    body = client.get(timeline(world) + "?page_size=2&page=2").json()
    assert body["count"] == 5 and len(body["items"]) == 2
    assert client.get(timeline(world) + "?page=9").json()["items"] == []
    kinds = [i["kind"] for i in client.get(timeline(world) + "?kind=condition&kind=report").json()["items"]]
    assert kinds == ["condition", "report"]
    assert [i["code"] for i in client.get(timeline(world) + "?q=i10").json()["items"]] == ["I10.x00x002"]
    assert client.get(timeline(world) + f"?institution={world.b.uuid}").json()["count"] == 0
    assert client.get(timeline(world) + f"?institution={world.a.uuid}").json()["count"] == 5
    since = timezone.localdate() - dt.timedelta(days=2)
    assert client.get(timeline(world) + f"?date_from={since}").json()["count"] == 1


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("page_size=101", 400),
        ("page_size=0", 422),
        ("page=0", 422),
        ("kind=spa", 422),
        ("q=" + "x" * 51, 422),
        ("date_from=2026-02-30", 422),
        ("date_from=2026-01-10&date_to=2026-01-01", 422),
        ("institution=nope", 422),
    ],
)
def test_bad_queries_are_4xx_in_the_error_shape(world: World, records: Records, login, query: str, status: int) -> None:  # type: ignore[no-untyped-def]
    response = login("lead_clinician").get(f"{timeline(world)}?{query}")
    assert response.status_code == status
    assert set(response.json()) == {"code", "message", "message_en", "fields"}
    assert not AccessLog.objects.exists()


def test_timeline_api_queries_do_not_grow(world: World, records: Records, login, django_assert_num_queries) -> None:  # type: ignore[no-untyped-def]
    client = login("lead_clinician")
    client.get("/api/v1/me")
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as small:
        client.get(timeline(world))
    for i in range(25):
        make_visit(records.identity_a, f"A-MZ-Y{i}", days_ago=50 + i)
        make_glucose(records.identity_a, f"A-LAB-Y{i}", days_ago=50 + i)
    with django_assert_num_queries(len(small.captured_queries)):
        response = client.get(timeline(world) + "?page_size=100")
    assert response.json()["count"] == 80 and len(response.json()["items"]) == 80


def test_recognition_api(world: World, records: Records, login) -> None:  # type: ignore[no-untyped-def]
    grant_issue(
        patient=world.patients["at_a"],
        source=GrantSource.REFERRAL,
        grantee_institution=world.b,
        expires_at=timezone.now() + dt.timedelta(days=1),
    )
    client = login("township_clinician")
    base = f"/api/v1/patients/{world.patients['at_a'].uuid}"
    offered = client.get(f"{base}/recognisable-results?code=1558-6").json()
    assert [r["id"] for r in offered] == [str(records.recent_glucose.uuid)]
    assert offered[0]["institution"]["name"] == "台山市人民医院" and offered[0]["kind"] == "observation"
    assert client.get(f"{base}/recognisable-results?code=nope").status_code == 422

    payload = {"code": "1558-6", "result_kind": "observation", "result_id": str(records.recent_glucose.uuid)}
    response = client.post(f"{base}/result-recognitions", json.dumps(payload), content_type="application/json")
    assert response.status_code == 201, response.content
    assert response.json()["result_institution"]["name"] == "台山市人民医院"
    assert ResultRecognition.objects.get().user == world.user("township_clinician")

    expired = {**payload, "result_id": str(records.old_glucose.uuid)}
    response = client.post(f"{base}/result-recognitions", json.dumps(expired), content_type="application/json")
    assert response.status_code == 422 and "不能互认" in response.json()["message"]
    assert ResultRecognition.objects.count() == 1

    order = client.post(
        f"{base}/service-requests", json.dumps({"code": "11524-6", "reason": "胸闷"}), content_type="application/json"
    )
    assert order.status_code == 201 and order.json()["display"] == "十二导联心电图"
    too_long = client.post(
        f"{base}/service-requests", json.dumps({"code": "11524-6", "reason": "x" * 201}), content_type="application/json"
    )
    assert too_long.status_code == 422
    assert ServiceRequest.objects.count() == 1


def test_api_keys_read_no_records(world: World, records: Records) -> None:
    from yilian.accounts.actors import Actor
    from yilian.accounts.services import api_key_create

    _key, raw = api_key_create(actor=Actor(user=world.user("system_admin")), institution=world.a, name="HIS")
    client = Client(headers={"Authorization": f"Bearer {raw}"})
    assert client.get(timeline(world)).status_code == 404
    assert not AccessLog.objects.exists()


CLINICAL_DENIED: dict[str, int | set[int]] = {**{p: {403, 404} for p in ALL}, "anonymous": 401}


@pytest.mark.parametrize(
    ("name", "endpoint", "allowed"),
    [
        ("timeline_b", Endpoint("GET", lambda w: timeline(w, "at_b")), {"township_clinician": 200}),
        ("timeline_a", Endpoint("GET", lambda w: timeline(w, "at_a")), {"lead_clinician": 200}),
        (
            "recognisable",
            Endpoint("GET", lambda w: f"/api/v1/patients/{w.patients['at_b'].uuid}/recognisable-results?code=1558-6"),
            {"township_clinician": 200},
        ),
        (
            "service_request",
            Endpoint(
                "POST",
                lambda w: f"/api/v1/patients/{w.patients['at_b'].uuid}/service-requests",
                data=lambda w: {"code": "1558-6"},
                json_body=True,
            ),
            {"township_clinician": 201},
        ),
        (
            "recognition",
            Endpoint(
                "POST",
                lambda w: f"/api/v1/patients/{w.patients['at_b'].uuid}/result-recognitions",
                data=lambda w: {"code": "1558-6", "result_kind": "observation", "result_id": str(w.records.b_glucose.uuid)},  # type: ignore[attr-defined]
                json_body=True,
            ),
            {"township_clinician": 422},  # B's own result: allowed in, refused as not another member's
        ),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_records_api_matrix(world: World, records: Records, name: str, endpoint: Endpoint, allowed: dict[str, int]) -> None:
    world.records = records  # type: ignore[attr-defined]
    run_matrix(world, endpoint, allowed=allowed, denied_status=CLINICAL_DENIED, personas=ALL, watched=WATCHED)


def test_a_later_summary_grant_does_not_hide_a_record_grant(world: World, records: Records, login) -> None:  # type: ignore[no-untyped-def]
    """Both grants active: the record opens, and the log names the record grant, not the summary one."""
    from yilian.access.models import GrantScope

    now = timezone.now()
    summary = grant_issue(
        patient=world.patients["at_a"],
        source=GrantSource.CONTRACT,
        grantee_institution=world.b,
        scope=GrantScope.SUMMARY,
        expires_at=now + dt.timedelta(days=30),
    )
    client = login("township_clinician")
    assert client.get(timeline(world)).status_code == 404  # a summary grant alone opens no record
    assert not AccessLog.objects.filter(action=AccessAction.VIEW_RECORD).exists()
    record = grant_issue(
        patient=world.patients["at_a"],
        source=GrantSource.REFERRAL,
        grantee_institution=world.b,
        scope=GrantScope.RECORD,
        expires_at=now + dt.timedelta(days=1),
    )
    assert summary.expires_at > record.expires_at
    assert client.get(timeline(world)).status_code == 200
    log = AccessLog.objects.get(action=AccessAction.VIEW_RECORD)
    assert log.grant == record
