"""Referral and booking at /fhir: a member HIS refers (ServiceRequest), the receiving HIS accepts
and books (Task, Appointment), each acting as a named practitioner of its own institution; another
institution's key cannot act for them; bad input is an OperationOutcome and changes nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.db.models import F
from django.test import Client

from yilian.access.models import AccessLog
from yilian.interop.fhir.schema import validate
from yilian.interop.tests.fhir_his import fhir_get as _get
from yilian.interop.tests.fhir_his import fhir_outcome as _outcome
from yilian.interop.tests.fhir_his import fhir_send as _send
from yilian.interop.tests.fhir_his import his_key as _key
from yilian.patients.models import SourceIdentity
from yilian.referrals.models import Referral, ReferralStatus
from yilian.referrals.testing import clinic_slot, refer_up
from yilian.scheduling.models import Booking, Slot, SlotPool
from yilian.testing.matrix import DEFAULT_WATCHED, Endpoint, run_matrix
from yilian.testing.world import PERSONAS, World

CERTIFICATE = "urn:yilian:practitioner-certificate"
WATCHED = (*DEFAULT_WATCHED, "referrals.Referral", "referrals.ReferralEvent", "scheduling.Booking", "scheduling.SlotPool")


@pytest.fixture
def keys(world: World) -> dict[str, str]:
    """The HIS keys of township B (sender), the lead hospital A (receiver) and T (another consortium)."""
    return {name: _key(world, name) for name in ("a", "b", "t")}


def _service_request(world: World, **change: Any) -> dict[str, Any]:
    body = {
        "resourceType": "ServiceRequest",
        "status": "active",
        "intent": "order",
        "priority": "urgent",
        "subject": {"reference": f"Patient/{world.patients['at_b'].uuid}"},
        "requester": {"reference": f"Practitioner/{world.user('township_clinician').uuid}"},
        "performer": [{"reference": f"Organization/{world.a.uuid}"}, {"reference": f"Organization/{world.cardiology.uuid}"}],
        "reasonCode": [{"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "I10"}], "text": "原发性高血压"}],
        "note": [{"text": "血压控制不佳，连续两次随访未达标"}],
    }
    return body | change


LEAD = {"identifier": {"system": CERTIFICATE, "value": "110440781000001"}}  # 李志强's 执业证书编码


def _task(referral_id: str, status: str, **change: Any) -> dict[str, Any]:
    return {
        "resourceType": "Task",
        "id": referral_id,
        "status": status,
        "intent": "order",
        "focus": {"reference": f"ServiceRequest/{referral_id}"},
        "owner": LEAD,
    } | change


def test_a_member_his_refers_and_the_receiving_his_accepts_and_books(world: World, keys, client: Client) -> None:  # type: ignore[no-untyped-def]
    # The sender's HIS names its own patient by its local id.
    local = SourceIdentity.objects.get(institution=world.b, patient=world.patients["at_b"]).local_id
    created = _send(
        client, keys["b"], "post", "/fhir/ServiceRequest", _service_request(world, subject={"reference": f"Patient/{local}"})
    )
    assert created.status_code == 201, created.content
    request = created.json()
    assert not validate(request)
    assert created["Location"].endswith(f"/fhir/ServiceRequest/{request['id']}")
    assert (request["status"], request["priority"], request["intent"]) == ("active", "urgent", "order")
    assert request["reasonCode"][0]["coding"][0]["code"] == "I10"
    referral = Referral.objects.get()
    assert (referral.direction, referral.urgency, referral.sender_user) == ("up", "urgent", world.user("township_clinician"))
    assert referral.destination_department == world.cardiology

    # Both sides read it; the receiving HIS finds it by performer, the sender's by requester organisation.
    for key in (keys["a"], keys["b"]):
        assert _get(client, key, f"/fhir/ServiceRequest/{referral.uuid}").status_code == 200
    found = _get(client, keys["a"], "/fhir/ServiceRequest", {"performer": f"Organization/{world.a.uuid}", "status": "active"})
    assert found.json()["total"] == 1
    assert _get(client, keys["b"], "/fhir/ServiceRequest", {"requester": f"Organization/{world.b.uuid}"}).json()["total"] == 1
    assert _get(client, keys["b"], "/fhir/ServiceRequest", {"status": "completed"}).json()["total"] == 0
    task = _get(client, keys["a"], f"/fhir/Task/{referral.uuid}").json()
    assert task["status"] == "requested" and task["focus"]["reference"] == f"ServiceRequest/{referral.uuid}"
    assert not validate(task)
    assert AccessLog.objects.filter(api_key__institution=world.a, patient=world.patients["at_b"]).exists()

    # The receiving HIS accepts as 李志强 and books a slot in the same step.
    slot = clinic_slot(world)
    accept = _task(
        str(referral.uuid), "accepted", input=[{"type": {"text": "slot"}, "valueReference": {"reference": f"Slot/{slot.uuid}"}}]
    )
    accepted = _send(client, keys["a"], "put", f"/fhir/Task/{referral.uuid}", accept)
    assert accepted.status_code == 200, accepted.content
    body = accepted.json()
    assert body["status"] == "accepted" and body["businessStatus"]["coding"][0]["code"] == "scheduled"
    assert body["owner"]["reference"] == f"Practitioner/{world.user('lead_clinician').uuid}"
    appointment_ref = body["output"][0]["valueReference"]["reference"]
    referral.refresh_from_db()
    assert referral.status == ReferralStatus.SCHEDULED and referral.accepted_by == world.user("lead_clinician")
    # The same state again is a safe retry.
    assert _send(client, keys["a"], "put", f"/fhir/Task/{referral.uuid}", accept).status_code == 200
    assert Booking.objects.count() == 1
    # The sender's HIS sees the appointment.
    appointment = _get(client, keys["b"], f"/fhir/{appointment_ref}").json()
    assert appointment["status"] == "booked" and appointment["basedOn"][0]["reference"] == f"ServiceRequest/{referral.uuid}"
    assert not validate(appointment)
    # Arrival and completion through the Task.
    assert (
        _send(client, keys["a"], "put", f"/fhir/Task/{referral.uuid}", _task(str(referral.uuid), "in-progress")).json()["status"]
        == "in-progress"
    )
    done = _send(
        client,
        keys["a"],
        "put",
        f"/fhir/Task/{referral.uuid}",
        _task(str(referral.uuid), "completed", output=[{"type": {"text": "result"}, "valueString": "调整降压方案"}]),
    )
    assert done.json()["status"] == "completed"
    assert _get(client, keys["b"], f"/fhir/ServiceRequest/{referral.uuid}").json()["status"] == "completed"


def test_another_institutions_key_cannot_refer_accept_or_book(world: World, keys, client: Client) -> None:  # type: ignore[no-untyped-def]
    # T's HIS names B's clinician: refused, nothing written.
    _outcome(_send(client, keys["t"], "post", "/fhir/ServiceRequest", _service_request(world)), 403)
    # B's HIS names A's cardiologist as the requester: refused too.
    lead_requester = _service_request(world, requester={"reference": f"Practitioner/{world.user('lead_clinician').uuid}"})
    _outcome(_send(client, keys["b"], "post", "/fhir/ServiceRequest", lead_requester), 403)
    assert not Referral.objects.exists()
    referral = refer_up(world)
    # T's key cannot read it, nor accept it naming A's cardiologist.
    assert _get(client, keys["t"], f"/fhir/ServiceRequest/{referral.uuid}").status_code == 404
    _outcome(_send(client, keys["t"], "put", f"/fhir/Task/{referral.uuid}", _task(str(referral.uuid), "accepted")), 403)
    # The sender's HIS cannot take the receiver's step (its own clinician is not the receiver).
    own = _task(str(referral.uuid), "accepted", owner={"reference": f"Practitioner/{world.user('township_clinician').uuid}"})
    _outcome(_send(client, keys["b"], "put", f"/fhir/Task/{referral.uuid}", own), 403)
    # ... and the receiver cannot cancel.
    cancel = _task(str(referral.uuid), "cancelled", requester=LEAD, statusReason={"text": "不要了"})
    _outcome(_send(client, keys["a"], "put", f"/fhir/Task/{referral.uuid}", cancel), 403)
    referral.refresh_from_db()
    assert referral.status == ReferralStatus.SUBMITTED
    # Booking: T's key naming B's clinician.
    slot = clinic_slot(world)
    book = _appointment(world, slot)
    _outcome(_send(client, keys["t"], "post", "/fhir/Appointment", book), 403)
    assert not Booking.objects.exists()


def _appointment(world: World, slot: Slot, patient: str = "at_b") -> dict[str, Any]:
    return {
        "resourceType": "Appointment",
        "status": "booked",
        "slot": [{"reference": f"Slot/{slot.uuid}"}],
        "participant": [
            {"actor": {"reference": f"Patient/{world.patients[patient].uuid}"}, "status": "accepted"},
            {"actor": {"reference": f"Practitioner/{world.user('township_clinician').uuid}"}, "status": "accepted"},
        ],
        "comment": "复查",
    }


def test_a_member_his_books_a_slot_from_its_reserved_units(world: World, keys, client: Client) -> None:  # type: ignore[no-untyped-def]
    slot = clinic_slot(world)
    schedules = _get(client, keys["b"], "/fhir/Schedule", {"actor": f"Organization/{world.a.uuid}"}).json()
    assert schedules["total"] == 1 and not validate(schedules["entry"][0]["resource"])
    schedule_id = schedules["entry"][0]["resource"]["id"]
    free = _get(client, keys["b"], "/fhir/Slot", {"schedule": f"Schedule/{schedule_id}", "status": "free"}).json()
    assert free["total"] == 4 and not validate(free["entry"][0]["resource"])
    _outcome(_get(client, keys["b"], "/fhir/Slot", {}), 400)  # a slot search names a schedule or a date

    booked = _send(client, keys["b"], "post", "/fhir/Appointment", _appointment(world, slot))
    assert booked.status_code == 201, booked.content
    assert booked.json()["status"] == "booked" and not validate(booked.json())
    booking = Booking.objects.get()
    assert booking.pool.quota is not None and booking.pool.quota.institution_id == world.b.pk  # 号源下沉 first
    # $book with a Parameters body; the same patient twice is a conflict.
    parameters = {"resourceType": "Parameters", "parameter": [{"name": "appointment", "resource": _appointment(world, slot)}]}
    _outcome(_send(client, keys["b"], "post", "/fhir/Appointment/$book", parameters), 409)
    second = _send(
        client,
        keys["b"],
        "post",
        "/fhir/Appointment/$book",
        {**parameters, "parameter": [{"name": "appointment", "resource": _appointment(world, slot, "at_v")}]},
    )
    assert second.status_code == 201, second.content
    assert second.json()["participant"][0]["actor"]["display"] == "陈大明"
    # A full slot.
    SlotPool.objects.filter(slot=slot).update(booked=F("capacity"))
    _outcome(_send(client, keys["b"], "post", "/fhir/Appointment", _appointment(world, slot, "at_b") | {"comment": "x"}), 409)
    assert Booking.objects.count() == 2
    appointments = _get(client, keys["b"], "/fhir/Appointment", {"patient": f"Patient/{world.patients['at_v'].uuid}"}).json()
    assert appointments["total"] == 1


@pytest.mark.parametrize(
    ("change", "status"),
    [
        ({"priority": "whenever"}, 422),
        ({"performer": "A"}, 400),  # not R4: performer is an array
        ({"unknownElement": 1}, 400),
        ({"performer": []}, 422),
        ({"performer": [{"reference": "Organization/00000000-0000-0000-0000-000000000000"}]}, 422),
        ({"performer": [{"reference": "Organization/T"}]}, 422),  # another consortium (filled in)
        ({"note": [{"text": "长" * 1001}]}, 422),
        ({"reasonCode": [{"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "Q99.99X"}], "text": "x"}]}, 422),
        ({"subject": {"reference": "Patient/nobody"}}, 422),
        ({"subject": {"reference": "Patient/AT_T"}}, 422),  # a patient B cannot see
        ({"requester": {"display": "某医生"}}, 422),
        ({"intent": "proposal", "status": "completed"}, 422),
    ],
)
def test_bad_service_requests_are_operation_outcomes_and_write_nothing(
    world: World, keys, client: Client, change, status
) -> None:  # type: ignore[no-untyped-def]
    lookup = {"Organization/T": f"Organization/{world.t.uuid}", "Patient/AT_T": f"Patient/{world.patients['at_t'].uuid}"}
    text = json.dumps(change, ensure_ascii=False)
    for old, new in lookup.items():
        text = text.replace(old, new)
    _outcome(_send(client, keys["b"], "post", "/fhir/ServiceRequest", _service_request(world, **json.loads(text))), status)
    assert not Referral.objects.exists()


def test_bad_tasks_and_wrong_states(world: World, keys, client: Client) -> None:  # type: ignore[no-untyped-def]
    referral = refer_up(world)
    url = f"/fhir/Task/{referral.uuid}"
    _outcome(_send(client, keys["a"], "put", url, _task(str(referral.uuid), "draft")), 422)
    _outcome(_send(client, keys["a"], "put", url, _task(str(referral.uuid), "rejected")), 422)  # a reason is required
    _outcome(
        _send(
            client,
            keys["a"],
            "put",
            url,
            _task(str(referral.uuid), "completed", output=[{"type": {"text": "r"}, "valueString": "x"}]),
        ),
        422,
    )
    _outcome(_send(client, keys["a"], "put", url, _task("00000000-0000-0000-0000-000000000000", "accepted")), 400)  # id ≠ address
    _outcome(
        _send(
            client,
            keys["a"],
            "put",
            "/fhir/Task/00000000-0000-0000-0000-000000000000",
            _task("00000000-0000-0000-0000-000000000000", "accepted"),
        ),
        404,
    )
    broken = client.put(
        url, data=b"{not json", content_type="application/fhir+json", headers={"Authorization": f"Bearer {keys['a']}"}
    )
    _outcome(broken, 400)
    assert Referral.objects.get().status == ReferralStatus.SUBMITTED
    rejected = _send(client, keys["a"], "put", url, _task(str(referral.uuid), "rejected", statusReason={"text": "本科室无床"}))
    assert rejected.status_code == 200 and rejected.json()["status"] == "rejected"
    _outcome(_send(client, keys["a"], "put", url, _task(str(referral.uuid), "accepted")), 422)
    assert _get(client, keys["b"], f"/fhir/ServiceRequest/{referral.uuid}").json()["status"] == "revoked"


def test_capability_statement_lists_referral_and_booking(client: Client, db: None) -> None:
    body = client.get("/fhir/metadata").json()
    resources = {r["type"]: r for r in body["rest"][0]["resource"]}
    assert {"ServiceRequest", "Task", "Schedule", "Slot", "Appointment"} <= set(resources)
    assert {i["code"] for i in resources["ServiceRequest"]["interaction"]} == {"create", "read", "search-type"}
    assert resources["Appointment"]["operation"][0]["name"] == "book"


# --- the matrix: sessions read through their gatekeepers and never write ----------------------------------


def _fhir_endpoint(method: str, url: Any, body: Any = None) -> Endpoint:
    endpoint = Endpoint(method, url)
    if body is not None:
        endpoint.call = lambda client, world: getattr(client, method.lower())(  # type: ignore[method-assign]
            url(world), data=json.dumps(body(world), ensure_ascii=False), content_type="application/fhir+json"
        )
    return endpoint


def test_fhir_referral_matrix(world: World) -> None:
    referral = refer_up(world)
    slot = clinic_slot(world)
    run_matrix(
        world,
        _fhir_endpoint("GET", lambda w: f"/fhir/ServiceRequest/{referral.uuid}"),
        allowed={"lead_clinician": 200, "township_clinician": 200},
        denied_status={p: {403, 404} for p in PERSONAS} | {"anonymous": 401},
        watched=WATCHED,
    )
    for method, url, body in (
        ("POST", lambda w: "/fhir/ServiceRequest", _service_request),
        ("PUT", lambda w: f"/fhir/Task/{referral.uuid}", lambda w: _task(str(referral.uuid), "accepted")),
        ("POST", lambda w: "/fhir/Appointment", lambda w: _appointment(w, slot)),
    ):
        run_matrix(
            world, _fhir_endpoint(method, url, body), allowed={}, denied_status=dict.fromkeys(PERSONAS, 401), watched=WATCHED
        )
