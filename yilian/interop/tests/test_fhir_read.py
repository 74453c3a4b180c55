"""FHIR read and search of the clinical resources: scoped by the patient gatekeeper for staff
sessions and member systems alike, every read logged, refusals look like absence."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from yilian.access.models import AccessAction, AccessBasis, AccessLog, GrantScope, GrantSource
from yilian.access.services import grant_issue
from yilian.accounts.models import ApiKey
from yilian.accounts.services import hash_api_key
from yilian.interop.fhir.schema import validate
from yilian.interop.tests.test_records import CONDITION, ENCOUNTER, OBSERVATION, PATIENT, bundle, post_fhir
from yilian.organizations.models import Institution
from yilian.records.models import Observation
from yilian.testing.world import World


def key_for(institution: Institution) -> str:
    prefix, raw = ApiKey.generate_raw_key()
    ApiKey.objects.create(institution=institution, name="HIS", prefix=prefix, key_digest=hash_api_key(raw))
    return raw


def get(client: Client, url: str, key: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return client.get(url, headers=headers)


@pytest.fixture
def sent(world: World, b_key: str, client: Client) -> World:
    """Township B's HIS sent 伍国华's visit: an encounter, a diagnosis and a blood glucose."""
    response = post_fhir(client, b_key, bundle(PATIENT, ENCOUNTER, CONDITION, OBSERVATION))
    assert response.status_code == 200, response.content
    return world


def test_member_system_searches_its_patient_by_its_own_ids(sent: World, b_key: str, client: Client) -> None:
    response = get(client, "/fhir/Observation?patient=Patient/P0001", b_key)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["total"] == 1
    resource = body["entry"][0]["resource"]
    assert validate(resource) == []
    assert resource["code"]["coding"][0]["code"] == "1558-6"
    assert resource["valueQuantity"] == {"value": 6.8, "unit": "mmol/L"}
    assert resource["interpretation"][0]["coding"][0]["code"] == "H"
    assert resource["subject"]["reference"] == f"Patient/{sent.patients['at_a'].uuid}"
    assert resource["identifier"][0]["value"] == "R0001"
    # by the sender's own id, and by ours
    assert get(client, "/fhir/Observation/R0001", b_key).json()["id"] == resource["id"]
    assert get(client, f"/fhir/Observation/{resource['id']}", b_key).json()["id"] == resource["id"]
    log = AccessLog.objects.filter(api_key__institution=sent.b, patient=sent.patients["at_a"])
    assert log.filter(action=AccessAction.VIEW_RECORD).count() == 3


@pytest.mark.parametrize(
    "query, total",
    [
        ("date=2026-01-05", 1),
        ("date=2026-01", 1),
        ("date=ge2026-01-06", 0),
        ("date=lt2026-01-05", 0),
        ("date=ge2026-01-01&date=le2026", 1),
        ("code=http://hl7.org/fhir/sid/icd-10|I10", 1),
        ("code=i10", 1),
        ("code=E11.9", 0),
    ],
)
def test_condition_search_by_date_and_code(sent: World, b_key: str, client: Client, query: str, total: int) -> None:
    response = get(client, f"/fhir/Condition?patient=P0001&{query}", b_key)
    assert response.status_code == 200, response.content
    assert response.json()["total"] == total


def test_search_by_identifier_and_id_without_patient(sent: World, b_key: str, client: Client) -> None:
    body = get(client, "/fhir/Encounter?identifier=V0001", b_key).json()
    assert body["total"] == 1
    encounter = body["entry"][0]["resource"]
    assert encounter["class"]["code"] == "AMB" and encounter["period"]["start"] == "2026-01-05T09:30:00+08:00"
    assert get(client, f"/fhir/Encounter?_id={encounter['id']}", b_key).json()["total"] == 1
    condition = get(client, "/fhir/Condition?identifier=D0001", b_key).json()["entry"][0]["resource"]
    assert condition["encounter"]["reference"] == f"Encounter/{encounter['id']}"


@pytest.mark.parametrize(
    "query",
    [
        "date=2026-01-05",  # no patient, _id or identifier: not a population query
        "patient=P0001&date=2026-02-30",
        "patient=P0001&date=yesterday",
        "patient=P0001&_count=1000",
        "patient=P0001&colour=red",
        "patient=" + "P" * 300,
    ],
)
def test_bad_searches_are_400_operation_outcomes(sent: World, b_key: str, client: Client, query: str) -> None:
    response = get(client, f"/fhir/Observation?{query}", b_key)
    assert response.status_code == 400
    assert response.json()["resourceType"] == "OperationOutcome"


def test_other_institutions_see_only_what_they_hold_or_are_granted(sent: World, client: Client) -> None:
    observation = Observation.objects.get()
    url = f"/fhir/Observation/{observation.uuid}"
    search = f"/fhir/Observation?patient=Patient/{sent.patients['at_a'].uuid}"
    # A registered 伍国华: it holds the record
    a_key = key_for(sent.a)
    assert get(client, url, a_key).status_code == 200
    assert get(client, search, a_key).json()["total"] == 1
    # T (the other consortium) holds nothing: absent, and nothing is logged for it
    t_key = key_for(sent.t)
    assert get(client, url, t_key).status_code == 404
    assert get(client, search, t_key).json()["total"] == 0
    assert get(client, "/fhir/Observation?identifier=R0001", t_key).json()["total"] == 0
    assert not AccessLog.objects.filter(acting_institution=sent.t).exists()
    # a summary grant does not open the record; a record grant does, and its use is logged
    expires = timezone.now() + dt.timedelta(days=1)
    grant_issue(
        patient=sent.patients["at_a"],
        source=GrantSource.REFERRAL,
        expires_at=expires,
        grantee_institution=sent.t,
        scope=GrantScope.SUMMARY,
    )
    assert get(client, url, t_key).status_code == 404
    grant = grant_issue(
        patient=sent.patients["at_a"],
        source=GrantSource.REFERRAL,
        expires_at=expires + dt.timedelta(hours=1),  # (the gatekeeper weighs the grant that lasts longest)
        grantee_institution=sent.t,
    )
    assert get(client, url, t_key).status_code == 200
    used = AccessLog.objects.get(acting_institution=sent.t)
    assert (used.basis, used.grant) == (AccessBasis.GRANT, grant)
    # a revoked or unusable key reads nothing
    ApiKey.objects.filter(institution=sent.t).update(revoked_at=timezone.now())
    assert get(client, url, t_key).status_code == 401


def test_staff_sessions_read_through_the_gatekeeper_and_are_logged(sent: World, login) -> None:  # type: ignore[no-untyped-def]
    patient = sent.patients["at_a"]
    url = f"/fhir/Condition?patient={patient.uuid}"
    clinician = login("township_clinician")  # at B, which now holds 伍国华's record
    body = clinician.get(url).json()
    assert body["total"] == 1 and body["entry"][0]["resource"]["code"]["coding"][0]["code"] == "I10"
    row = AccessLog.objects.get(user=sent.user("township_clinician"))
    assert (row.patient, row.action, row.basis) == (patient, AccessAction.VIEW_RECORD, AccessBasis.HOLDER)
    for persona in ("other_consortium_user", "consortium_manager", "bureau_supervisor"):
        assert login(persona).get(url).json()["total"] == 0
        condition = Observation.objects.get()
        assert login(persona).get(f"/fhir/Observation/{condition.uuid}").status_code == 404
        assert not AccessLog.objects.filter(user=sent.user(persona)).exists()
    assert Client().get(url).status_code == 401


def test_search_pages_follow_next_links(sent: World, b_key: str, client: Client) -> None:
    more = [{**OBSERVATION, "id": f"R{i:04d}", "effectiveDateTime": f"2026-01-0{i}T08:00:00+08:00"} for i in range(2, 6)]
    assert post_fhir(client, b_key, bundle(PATIENT, *more)).status_code == 200
    seen: list[str] = []
    url: str | None = "/fhir/Observation?patient=P0001&_count=2"
    while url:
        body = get(client, url, b_key).json()
        assert body["total"] == 5
        seen += [e["resource"]["identifier"][0]["value"] for e in body["entry"]]
        url = next((link["url"].removeprefix("http://testserver") for link in body.get("link", [])), None)
    assert seen == ["R0001", "R0005", "R0004", "R0003", "R0002"]


def test_search_queries_do_not_grow_with_the_page(
    sent: World, b_key: str, client: Client, django_assert_max_num_queries: Any
) -> None:
    more = [{**OBSERVATION, "id": f"R{i:04d}"} for i in range(2, 40)]
    assert post_fhir(client, b_key, bundle(PATIENT, *more)).status_code == 200
    with django_assert_max_num_queries(16):
        body = get(client, "/fhir/Observation?patient=P0001&_count=50", b_key).json()
    assert len(body["entry"]) == 39
