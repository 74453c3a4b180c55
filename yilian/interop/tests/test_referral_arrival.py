"""Arrival through ingestion, end to end: when the destination's HIS reports the referred patient
admitted or seen (HL7 ADT^A01 over /api/v1/interop/hl7, or a FHIR Encounter in a transaction
Bundle), an accepted or scheduled referral moves to `arrived` by itself; a visit elsewhere, or one
from before the referral, does not move it."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from yilian.accounts.models import ApiKey, hash_api_key
from yilian.interop import hl7v2
from yilian.interop.tests.conftest import hl7
from yilian.referrals.models import Referral, ReferralEvent, ReferralStatus
from yilian.referrals.services import referral_accept
from yilian.referrals.testing import clinic_slot, lead, refer_up
from yilian.testing.world import World

S = ReferralStatus
HL7_URL = "/api/v1/interop/hl7"
# 黄美玲 (patient `at_b`) as another member's HIS knows her: its own id, her national ID number.
PID = "PID|1||{local}^^^HIS^PI~440781196205120029^^^CHN^NNCHN||黄^美玲||19620512|F\r"


def _key(world: World, institution: str) -> str:
    prefix, raw = ApiKey.generate_raw_key()
    ApiKey.objects.create(institution=getattr(world, institution), name="HIS", prefix=prefix, key_digest=hash_api_key(raw))
    return raw


def _now(fmt: str = "%Y%m%d%H%M%S") -> str:
    """This moment to the second, rounded up: messages carry whole seconds, and a visit must not
    look older than the referral submitted a fraction of a second ago."""
    return (timezone.localtime() + dt.timedelta(seconds=1)).strftime(fmt)


def _admission(visit: str, at: str, local: str = "P9001") -> str:
    pv1 = f"PV1|1|I|心血管内科^^^A||||D01^李^志强||||||||||||{visit}|居民医保||||||||||||||||||||||||{at}\r"
    return hl7("ADT^A01", PID.format(local=local) + pv1, control_id=f"ARR{visit}")


def _post_hl7(client: Client, key: str, text: str) -> bytes:
    response = client.post(
        HL7_URL, data=text.encode(), content_type="x-application/hl7-v2+er7", headers={"Authorization": f"Bearer {key}"}
    )
    assert response.status_code == 200, response.content
    return response.content


@pytest.fixture
def scheduled(world: World) -> Referral:
    """An up referral from B to A, accepted with a slot booked (status scheduled)."""
    return referral_accept(actor=lead(world), referral=refer_up(world), slot=clinic_slot(world))


def test_an_hl7_admission_at_the_destination_marks_the_referral_arrived(
    world: World, scheduled: Referral, client: Client
) -> None:
    assert scheduled.status == S.SCHEDULED
    ack = _post_hl7(client, _key(world, "a"), _admission("ZY0001", _now()))
    assert hl7v2.ack_code(ack) == "AA", ack
    scheduled.refresh_from_db()
    assert scheduled.status == S.ARRIVED
    assert "ZY0001" in scheduled.arrival_source
    assert scheduled.events.filter(kind=ReferralEvent.Kind.ARRIVED, user__isnull=True).count() == 1
    assert scheduled.booking is not None and scheduled.booking.status == "fulfilled"
    # The same message again (or the next visit) changes nothing more.
    _post_hl7(client, _key(world, "a"), _admission("ZY0002", _now()))
    assert scheduled.events.filter(kind=ReferralEvent.Kind.ARRIVED).count() == 1


def _transaction(start: str, visit: str) -> dict[str, Any]:
    patient: dict[str, Any] = {
        "resourceType": "Patient",
        "id": "P9002",
        "identifier": [{"type": {"coding": [{"code": "NNCHN"}]}, "value": "440781196205120029"}],
        "name": [{"family": "黄", "given": ["美玲"]}],
        "gender": "female",
        "birthDate": "1962-05-12",
    }
    encounter: dict[str, Any] = {
        "resourceType": "Encounter",
        "id": visit,
        "status": "in-progress",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB", "display": "门诊"},
        "subject": {"reference": "Patient/P9002"},
        "period": {"start": start},
    }
    entries = [
        {
            "fullUrl": f"urn:uuid:{r['resourceType'].lower()}-{r['id']}",
            "resource": r,
            "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"},
        }
        for r in (patient, encounter)
    ]
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def _post_fhir(client: Client, key: str, body: dict[str, Any]) -> Any:
    response = client.post(
        "/fhir/",
        data=json.dumps(body, ensure_ascii=False).encode(),
        content_type="application/fhir+json",
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 200, response.content
    return response.json()


def test_a_fhir_encounter_at_the_destination_marks_an_accepted_referral_arrived(world: World, client: Client) -> None:
    referral = referral_accept(actor=lead(world), referral=refer_up(world))
    assert referral.status == S.ACCEPTED
    key = _key(world, "a")
    # A visit from before the referral was sent does not count.
    _post_fhir(client, key, _transaction("2026-01-05T09:30:00+08:00", "MZ0001"))
    referral.refresh_from_db()
    assert referral.status == S.ACCEPTED
    _post_fhir(client, key, _transaction(_now("%Y-%m-%dT%H:%M:%S+08:00"), "MZ0002"))
    referral.refresh_from_db()
    assert referral.status == S.ARRIVED and "MZ0002" in referral.arrival_source


def test_a_visit_at_another_institution_or_before_acceptance_does_not_arrive(world: World, client: Client) -> None:
    submitted = refer_up(world)
    # C (another member) admits her: not the destination.
    ack = _post_hl7(client, _key(world, "c"), _admission("ZY0101", _now(), local="C0001"))
    assert hl7v2.ack_code(ack) == "AA", ack
    # A admits her while the referral still waits for acceptance: not arrived either.
    ack = _post_hl7(client, _key(world, "a"), _admission("ZY0102", _now()))
    assert hl7v2.ack_code(ack) == "AA", ack
    submitted.refresh_from_db()
    assert submitted.status == S.SUBMITTED
    accepted = referral_accept(actor=lead(world), referral=submitted)
    _post_hl7(client, _key(world, "c"), _admission("ZY0103", _now(), local="C0001"))
    accepted.refresh_from_db()
    assert accepted.status == S.ACCEPTED
