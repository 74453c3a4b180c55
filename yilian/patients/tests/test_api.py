"""/api/v1/patients: scope, masking, access logging, search, query bounds; and its authorisation matrix."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from yilian.access.models import AccessAction, AccessBasis, AccessGrant, AccessLog, GrantSource
from yilian.access.services import grant_issue
from yilian.patients.models import Patient
from yilian.testing.matrix import Endpoint, run_matrix
from yilian.testing.world import PERSONAS, World

# A response that pydantic cannot serialise faithfully, or a deprecated ninja idiom, fails the test.
pytestmark = pytest.mark.filterwarnings("error:Pydantic serializer warnings", "error::DeprecationWarning:ninja.operation")


ALL = (*PERSONAS, "institution_admin", "hr_officer", "privacy_officer", "system_admin")
CLINICAL = ("lead_clinician", "township_clinician", "village_doctor", "other_consortium_user")


def ids(response: Any) -> set[str]:
    return {p["id"] for p in response.json()["items"]}


def test_list_shows_held_patients_masked_and_logs_each_one(world: World, login) -> None:  # type: ignore[no-untyped-def]
    client = login("township_clinician")
    response = client.get("/api/v1/patients")
    assert response.status_code == 200
    body = response.json()
    # B holds 黄美玲; as township centre of V it also holds V's 陈大明. Never A's or T's patients.
    assert ids(response) == {str(world.patients["at_b"].uuid), str(world.patients["at_v"].uuid)}
    assert body["count"] == 2
    for item in body["items"]:
        assert "id_number" not in item and "phone" not in item and "address" not in item
        assert item["masked_id_number"].startswith("4407") and "*" in item["masked_id_number"]
    logs = AccessLog.objects.filter(user=world.user("township_clinician"), action=AccessAction.LIST)
    assert sorted(logs.values_list("patient__name", flat=True)) == sorted(["黄美玲", "陈大明"])
    assert {log.path for log in logs} == {"/api/v1/patients"}
    assert all(log.acting_institution_id == world.b.pk and log.basis == AccessBasis.HOLDER for log in logs)


def test_detail_shows_the_full_id_number_and_logs_the_read(world: World, login) -> None:  # type: ignore[no-untyped-def]
    patient = world.patients["at_b"]
    response = login("township_clinician").get(f"/api/v1/patients/{patient.uuid}")
    assert response.status_code == 200
    body = response.json()
    assert body["id_number"] == patient.id_number and body["phone"] == patient.phone and body["grant"] is None
    log = AccessLog.objects.get(patient=patient)
    assert log.action == AccessAction.VIEW_SUMMARY and log.user == world.user("township_clinician")


def test_a_grant_opens_one_patient_to_another_institution(world: World, login) -> None:  # type: ignore[no-untyped-def]
    patient = world.patients["at_b"]
    client = login("lead_clinician")
    assert client.get(f"/api/v1/patients/{patient.uuid}").status_code == 404
    grant = grant_issue(
        patient=patient,
        source=GrantSource.REFERRAL,
        grantee_institution=world.a,
        expires_at=timezone.now() + dt.timedelta(days=3),
    )
    assert str(patient.uuid) in ids(client.get("/api/v1/patients"))
    body = client.get(f"/api/v1/patients/{patient.uuid}").json()
    assert body["grant"] == {"id": str(grant.uuid), "source": "referral", "expires_at": body["grant"]["expires_at"]}
    assert AccessLog.objects.filter(patient=patient, grant=grant, basis=AccessBasis.GRANT).count() == 2
    AccessGrant.objects.filter(pk=grant.pk).update(revoked_at=timezone.now())
    assert client.get(f"/api/v1/patients/{patient.uuid}").status_code == 404


def test_search_by_name_and_id_number_prefix(world: World, login) -> None:  # type: ignore[no-untyped-def]
    client = login("township_clinician")
    assert ids(client.get("/api/v1/patients?q=美玲")) == {str(world.patients["at_b"].uuid)}
    assert ids(client.get("/api/v1/patients?q=44078119700101")) == {str(world.patients["at_v"].uuid)}
    assert ids(client.get("/api/v1/patients?q=伍国华")) == set()  # held at A: invisible, not even searchable
    assert client.get("/api/v1/patients?q=" + "x" * 51).status_code == 422


def test_list_queries_do_not_grow_with_the_page(world: World, login, django_assert_max_num_queries) -> None:  # type: ignore[no-untyped-def]
    Patient.objects.bulk_create(
        Patient(name=f"居民{i}", id_number=f"44078119900101{i:04d}", home_institution=world.v, grid=world.grid_b)
        for i in range(40)
    )
    client = login("township_clinician")
    client.get("/api/v1/me")  # warm the session
    with django_assert_max_num_queries(10):
        response = client.get("/api/v1/patients?page_size=50")
    assert len(response.json()["items"]) == 42
    assert AccessLog.objects.filter(action=AccessAction.LIST).count() == 42


@pytest.mark.parametrize(
    ("name", "endpoint", "allowed", "denied_status"),
    [
        (
            "patient_list",
            Endpoint("GET", lambda w: "/api/v1/patients"),
            dict.fromkeys(CLINICAL, 200),
            {**{p: 403 for p in ALL if p not in CLINICAL}, "anonymous": 401},
        ),
        (
            "patient_detail_b",
            Endpoint("GET", lambda w: f"/api/v1/patients/{w.patients['at_b'].uuid}"),
            {"township_clinician": 200},
            {**dict.fromkeys(ALL, 404), "anonymous": 401},
        ),
        (
            "patient_detail_v",
            Endpoint("GET", lambda w: f"/api/v1/patients/{w.patients['at_v'].uuid}"),
            {"township_clinician": 200, "village_doctor": 200},
            {**dict.fromkeys(ALL, 404), "anonymous": 401},
        ),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_patient_api_matrix(
    world: World, name: str, endpoint: Endpoint, allowed: dict[str, int], denied_status: dict[str, int | set[int]]
) -> None:
    run_matrix(world, endpoint, allowed=allowed, denied_status=denied_status, personas=ALL)


def test_anonymous_and_api_keys_see_no_patient(world: World) -> None:
    from yilian.accounts.actors import Actor
    from yilian.accounts.services import api_key_create

    _key, raw = api_key_create(actor=Actor(user=world.user("system_admin")), institution=world.b, name="HIS")
    client = Client(headers={"Authorization": f"Bearer {raw}"})
    assert client.get("/api/v1/patients").status_code == 403
    assert client.get(f"/api/v1/patients/{world.patients['at_b'].uuid}").status_code == 404
    assert not AccessLog.objects.exists()
