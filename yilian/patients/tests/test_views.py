"""Patient pages through HTTP: scoped and logged list, detail with access basis, break-glass."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from yilian.access.models import AccessAction, AccessBasis, AccessGrant, AccessLog, GrantSource
from yilian.access.services import grant_issue
from yilian.notifications.models import Notification
from yilian.patients.models import Patient
from yilian.testing.matrix import Endpoint, run_matrix
from yilian.testing.world import PERSONAS

CLINICAL = ("lead_clinician", "township_clinician", "village_doctor", "other_consortium_user")

LOGGED_IN = tuple(p for p in PERSONAS if p != "anonymous")
NOT_TOWNSHIP = tuple(p for p in LOGGED_IN if p != "township_clinician")


def test_list_shows_visible_patients_masked_and_logs_them(login, world, django_assert_max_num_queries) -> None:
    client = login("township_clinician")
    with django_assert_max_num_queries(12):
        response = client.get("/patients/")
    assert response.status_code == 200
    body = response.content.decode()
    assert "黄美玲" in body and "陈大明" in body
    assert "伍国华" not in body and "甄伟" not in body
    assert "4407**********0029" in body and "440781196205120029" not in body
    assert "138****0000" in body and "13800000000" not in body
    logged = AccessLog.objects.filter(user=world.user("township_clinician"), action=AccessAction.LIST)
    assert sorted(row.patient.name for row in logged) == ["陈大明", "黄美玲"]
    assert {row.basis for row in logged} == {AccessBasis.HOLDER}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("黄美", {"黄美玲"}),
        ("大明", {"陈大明"}),
        ("440781196205", {"黄美玲"}),
        ("44078119700101003x", set()),
        ("440781197001010033", {"陈大明"}),
        ("1380000", {"黄美玲", "陈大明"}),
        ("伍国华", set()),
    ],
)
def test_search_by_name_id_number_or_phone(login, world, query: str, expected: set[str]) -> None:
    response = login("township_clinician").get("/patients/", {"q": query})
    assert {p.name for p in response.context["patients"]} == expected


def test_search_with_htmx_returns_the_table_only(login, world) -> None:
    response = login("township_clinician").get("/patients/", {"q": "黄"}, headers={"HX-Request": "true"})
    body = response.content.decode()
    assert response.status_code == 200 and "<html" not in body
    assert body.strip().startswith('<div id="patient-table">') and "黄美玲" in body
    assert response["Vary"] and "HX-Request" in response["Vary"]


def test_list_logs_only_the_page_shown(login, world) -> None:
    for n in range(30):
        Patient.objects.create(name=f"居民{n}", home_institution=world.b, id_number=f"X{n:05d}")
    response = login("township_clinician").get("/patients/")
    assert len(response.context["patients"]) == 20
    assert AccessLog.objects.filter(action=AccessAction.LIST).count() == 20


def test_list_matrix(world) -> None:
    run_matrix(
        world,
        Endpoint("GET", lambda w: "/patients/"),
        allowed=dict.fromkeys(CLINICAL, 200),
        denied_status={"consortium_manager": 403, "bureau_supervisor": 403, "anonymous": 302},
    )


def test_detail_shows_demographics_basis_and_who_looked(login, world) -> None:
    patient = world.patients["at_b"]
    client = login("township_clinician")
    response = client.get(f"/patients/{patient.uuid}/")
    assert response.status_code == 200
    body = response.content.decode()
    assert "440781196205120029" in body and "水步镇卫生院" in body
    assert "访问依据：本机构建档" in body
    assert response.context["grant"] is None
    row = AccessLog.objects.get(patient=patient)
    assert (row.action, row.basis, row.user) == (AccessAction.VIEW_SUMMARY, AccessBasis.HOLDER, world.user("township_clinician"))
    assert "谁查看了此档案" in body and "黄晓敏" in body and "查看基本信息" in body
    assert f'href="/scheduling/patients/{patient.uuid}/book/"' in body and "预约号源" in body


def test_detail_through_a_grant_names_the_grant_and_its_expiry(login, world) -> None:
    patient = world.patients["at_b"]
    expires = timezone.now() + dt.timedelta(days=3)
    grant = grant_issue(
        patient=patient,
        source=GrantSource.REFERRAL,
        grantee_institution=world.a,
        expires_at=expires,
        source_reference="ZZ-2026-0001",
    )
    response = login("lead_clinician").get(f"/patients/{patient.uuid}/")
    assert response.status_code == 200
    body = response.content.decode()
    assert response.context["grant"] == grant
    assert "访问依据：授权访问" in body and "转诊" in body and "ZZ-2026-0001" in body
    assert timezone.localtime(expires).strftime("%Y-%m-%d %H:%M") in body
    assert AccessLog.objects.get(patient=patient).grant == grant


def test_detail_matrix(world) -> None:
    patient = world.patients["at_b"]
    run_matrix(
        world,
        Endpoint("GET", lambda w: f"/patients/{patient.uuid}/"),
        allowed={"township_clinician": 200},
        denied_status={
            "anonymous": 302,
            **dict.fromkeys(NOT_TOWNSHIP, 404),
        },
    )


def test_unknown_patient_is_not_found(login, world) -> None:
    client = login("township_clinician")
    assert client.get("/patients/00000000-0000-0000-0000-000000000000/").status_code == 404
    assert not AccessLog.objects.exists()


# --- break-glass ----------------------------------------------------------------------------


def break_glass(client, id_number: str, reason: str = "急诊昏迷，需查既往病史和过敏史", hours: int = 2):  # type: ignore[no-untyped-def]
    return client.post("/patients/break-glass/", {"id_number": id_number, "reason": reason, "hours": hours})


def test_break_glass_page_warns_that_it_is_audited(login, world) -> None:
    body = login("lead_clinician").get("/patients/break-glass/").content.decode()
    assert "此操作将被审计" in body and "隐私保护专员" in body


def test_break_glass_opens_a_personal_grant_and_shows_the_patient(login, world, django_capture_on_commit_callbacks) -> None:
    patient = world.patients["at_b"]
    client = login("lead_clinician")
    with django_capture_on_commit_callbacks(execute=True):
        response = break_glass(client, " 440781196205120029 ", hours=3)
    assert response.status_code == 302 and response["Location"] == f"/patients/{patient.uuid}/"
    grant = AccessGrant.objects.get()
    assert (grant.source, grant.grantee_user, grant.acting_institution, grant.patient) == (
        GrantSource.BREAK_GLASS,
        world.user("lead_clinician"),
        world.a,
        patient,
    )
    assert dt.timedelta(hours=2, minutes=59) < grant.expires_at - grant.starts_at <= dt.timedelta(hours=3, seconds=1)
    assert Notification.objects.filter(recipient=world.user("privacy_officer"), kind="break_glass_review").count() == 1
    detail = client.get(response["Location"])
    assert detail.status_code == 200
    assert "紧急授权" in detail.content.decode() and detail.context["grant"] == grant
    assert AccessLog.objects.get(patient=patient).grant == grant


@pytest.mark.parametrize("id_number", ["440781198811110014", "110101199003070011"])  # other consortium's patient / nobody
def test_break_glass_not_found_reveals_nothing(login, world, id_number: str) -> None:
    response = break_glass(login("lead_clinician"), id_number)
    assert response.status_code == 200
    body = response.content.decode()
    assert "未找到可紧急访问的居民档案，请核对证件号码。" in body
    assert "甄伟" not in body
    assert not AccessGrant.objects.exists() and not AccessLog.objects.exists()


def test_break_glass_needs_a_reason_and_bounded_hours(login, world, settings) -> None:
    client = login("lead_clinician")
    short = break_glass(client, "440781196205120029", reason="急")
    assert "请填写紧急访问的理由（至少5个字）。" in short.content.decode()
    too_long = break_glass(client, "440781196205120029", hours=settings.BREAK_GLASS_MAX_HOURS + 1)
    assert too_long.status_code == 200 and too_long.context["form"].errors["hours"]
    assert not AccessGrant.objects.exists()


def test_break_glass_for_a_patient_already_visible_opens_no_grant(login, world) -> None:
    patient = world.patients["at_b"]
    response = break_glass(login("township_clinician"), patient.id_number)
    assert response.status_code == 302 and response["Location"] == f"/patients/{patient.uuid}/"
    assert not AccessGrant.objects.exists()


def test_break_glass_matrix(world) -> None:
    patient = world.patients["at_b"]
    results = run_matrix(
        world,
        Endpoint(
            "POST",
            lambda w: "/patients/break-glass/",
            data=lambda w: {"id_number": patient.id_number, "reason": "急诊抢救，需查既往病史", "hours": 1},
        ),
        # Lead and village clinicians get a grant; the township already sees the patient; the other
        # consortium's clinician gets "not found" (a form error, no grant).
        allowed={"lead_clinician": 302, "village_doctor": 302, "township_clinician": 302, "other_consortium_user": 200},
        denied_status={"consortium_manager": 403, "bureau_supervisor": 403, "anonymous": 302},
    )
    assert results["other_consortium_user"] == 200
    holders = set(AccessGrant.objects.values_list("grantee_user__username", flat=True))
    assert holders == {"lead_clinician", "village_doctor"}


def test_break_glass_get_matrix(world) -> None:
    run_matrix(
        world,
        Endpoint("GET", lambda w: "/patients/break-glass/"),
        allowed=dict.fromkeys(CLINICAL, 200),
        denied_status={"consortium_manager": 403, "bureau_supervisor": 403, "anonymous": 302},
    )
