"""Bed reservations at /fhir: a member HIS reserves a bed of the consortium for its patient as an
Appointment whose participant is the bed (Location, physicalType bd), reads and searches them,
releases them (status cancelled), and reads beds and wards as Locations. The bed's institution gets
the appointment grant as with /api/v1; bad input is an OperationOutcome and changes nothing."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from yilian.access.models import AccessGrant, GrantSource
from yilian.interop.fhir.schema import validate
from yilian.interop.tests.fhir_his import fhir_get as _get
from yilian.interop.tests.fhir_his import fhir_outcome as _outcome
from yilian.interop.tests.fhir_his import fhir_send as _send
from yilian.interop.tests.fhir_his import his_key as _key
from yilian.scheduling.models import Bed, BedReservation, BedStatus, ReservationStatus, Ward
from yilian.scheduling.services import bed_reserve, bed_set_closed
from yilian.scheduling.testing import actor_for, coordinator, make_ward
from yilian.testing.matrix import DEFAULT_WATCHED, Endpoint, run_matrix
from yilian.testing.world import PERSONAS, World

CATEGORY = {"coding": [{"system": "urn:yilian:appointment-kind", "code": "bed-reservation"}]}
HIS_RESERVATION = {"system": "urn:oid:2.16.156.10011.1.440781.b.bed", "value": "CW-2026-0001"}


@pytest.fixture
def keys(world: World) -> dict[str, str]:
    """The HIS keys of township B (reserves), the lead hospital A (the beds' institution) and T
    (another consortium)."""
    return {name: _key(world, name) for name in ("a", "b", "t")}


@pytest.fixture
def ward(world: World) -> Ward:
    return make_ward(world, beds=3)  # 心内科一病区 at A, beds 01–03


def _bed(ward: Ward, code: str = "01") -> Bed:
    return ward.beds.get(code=code)


def _hours(n: float) -> str:
    return (timezone.localtime() + dt.timedelta(hours=n)).isoformat(timespec="seconds")


def _reservation(world: World, bed: Bed, patient: str = "at_b", **change: Any) -> dict[str, Any]:
    body = {
        "resourceType": "Appointment",
        "status": "booked",
        "serviceCategory": [CATEGORY],
        "start": _hours(0),
        "end": _hours(48),
        "participant": [
            {"actor": {"reference": f"Patient/{world.patients[patient].uuid}"}, "status": "accepted"},
            {"actor": {"reference": f"Location/{bed.uuid}"}, "status": "accepted"},
            {"actor": {"reference": f"Practitioner/{world.user('township_clinician').uuid}"}, "status": "accepted"},
        ],
        "comment": "心衰加重，请留床",
    }
    return body | change


def _state() -> dict[str, Any]:
    """What a refused write must leave alone: reservations, bed statuses, grants."""
    return {
        "reservations": sorted(BedReservation.objects.values_list("pk", "status")),
        "beds": sorted(Bed.objects.values_list("pk", "status")),
        "grants": sorted(AccessGrant.objects.values_list("pk", "revoked_at")),
    }


def _grant(reservation: BedReservation) -> AccessGrant:
    return AccessGrant.objects.get(source=GrantSource.APPOINTMENT, source_reference=str(reservation.uuid))


def test_a_member_his_reserves_a_bed_reads_it_and_releases_it(world: World, ward: Ward, keys, client: Client) -> None:  # type: ignore[no-untyped-def]
    bed = _bed(ward)
    body = _reservation(world, bed)
    assert not validate(body)

    created = _send(client, keys["b"], "post", "/fhir/Appointment", body)

    assert created.status_code == 201, created.content
    resource = created.json()
    assert not validate(resource)
    reservation = BedReservation.objects.get()
    assert created["Location"].endswith(f"/fhir/Appointment/{reservation.uuid}")
    assert (reservation.bed, reservation.patient, reservation.for_institution) == (bed, world.patients["at_b"], world.b)
    assert reservation.reserved_by == world.user("township_clinician") and reservation.note == "心衰加重，请留床"
    assert abs((reservation.expires_at - timezone.now()) - dt.timedelta(hours=48)) < dt.timedelta(minutes=1)
    assert Bed.objects.get(pk=bed.pk).status == BedStatus.RESERVED
    assert resource["status"] == "booked" and resource["serviceCategory"][0]["coding"][0]["code"] == "bed-reservation"
    actors = [p["actor"]["reference"] for p in resource["participant"]]
    assert f"Location/{bed.uuid}" in actors and f"Organization/{world.a.uuid}" in actors
    assert resource["extension"][0]["valueReference"]["reference"] == f"Organization/{world.b.uuid}"
    # The bed's institution gets the appointment grant, as the service gives it on every path.
    grant = _grant(reservation)
    assert grant.grantee_institution == world.a and grant.revoked_at is None

    # Both sides read it; the other consortium does not.
    url = f"/fhir/Appointment/{reservation.uuid}"
    assert _get(client, keys["b"], url).json()["id"] == str(reservation.uuid)
    assert _get(client, keys["a"], url).status_code == 200
    assert _get(client, keys["t"], url).status_code == 404
    # The bed reads as a Location, reserved, part of its ward.
    location = _get(client, keys["b"], f"/fhir/Location/{bed.uuid}")
    assert location.status_code == 200 and not validate(location.json())
    assert location.json()["operationalStatus"]["code"] == "reserved"
    assert location.json()["partOf"]["reference"] == f"Location/{ward.uuid}"
    assert _get(client, keys["t"], f"/fhir/Location/{bed.uuid}").status_code == 404

    # B's HIS releases it: the bed is free and A's grant ends; sending it again changes nothing.
    release = {"resourceType": "Appointment", "id": str(reservation.uuid), "status": "cancelled"} | {
        "participant": [body["participant"][2]]
    }
    released = _send(client, keys["b"], "put", url, release)
    assert released.status_code == 200, released.content
    assert released.json()["status"] == "cancelled" and not validate(released.json())
    reservation.refresh_from_db()
    assert reservation.status == ReservationStatus.RELEASED and Bed.objects.get(pk=bed.pk).status == BedStatus.FREE
    assert _grant(reservation).revoked_at is not None
    state = _state()
    assert _send(client, keys["b"], "put", url, release).status_code == 200
    assert _state() == state
    # A released reservation is not taken back into use.
    _outcome(_send(client, keys["b"], "put", url, release | {"status": "booked"}), 422, "Appointment.status")
    assert _state() == state


def test_bed_reservations_are_searched_by_patient_status_and_receiving_organization(  # type: ignore[no-untyped-def]
    world: World, ward: Ward, keys, client: Client
) -> None:
    assert _send(client, keys["b"], "post", "/fhir/Appointment", _reservation(world, _bed(ward))).status_code == 201
    bed_reserve(actor=actor_for(world, "lead_clinician"), bed=_bed(ward, "02"), patient=world.patients["at_a"])
    patient = f"Patient/{world.patients['at_b'].uuid}"

    def found(key: str, **params: str) -> list[str]:
        bundle = _get(client, keys[key], "/fhir/Appointment", params).json()
        assert bundle["resourceType"] == "Bundle", bundle
        assert all(not validate(e["resource"]) for e in bundle["entry"])
        return sorted(e["resource"]["participant"][0]["actor"]["reference"] for e in bundle["entry"])

    everything = {"service-category": "bed-reservation"}
    assert found("b", **everything) == [patient]  # B sees what it reserved
    assert len(found("a", **everything)) == 2  # A sees both: reserved at A
    assert found("a", **everything, patient=patient) == [patient]
    assert found("a", **everything, status="booked") == found("a", **everything)
    assert found("a", **everything, status="cancelled") == []
    assert len(found("a", actor=f"Organization/{world.a.uuid}", **everything)) == 2  # the receiving organization
    assert found("b", actor=f"Organization/{world.b.uuid}", **everything) == []
    assert found("a", location=f"Location/{_bed(ward).uuid}") == [patient]
    assert found("a", actor=f"Location/{_bed(ward, '02').uuid}") == [f"Patient/{world.patients['at_a'].uuid}"]
    assert found("t", **everything) == []
    # Without a bed criterion the search is over slot bookings, as before.
    assert _get(client, keys["b"], "/fhir/Appointment", {"patient": patient}).json()["total"] == 0
    # Beds and wards as Locations: the free beds of the ward, and the ward itself.
    free = _get(client, keys["b"], "/fhir/Location", {"partof": f"Location/{ward.uuid}", "operational-status": "U"}).json()
    assert [e["resource"]["name"] for e in free["entry"]] == ["心内科一病区 03床"]
    wards = _get(client, keys["b"], "/fhir/Location", {"physical-type": "wa", "organization": f"Organization/{world.a.uuid}"})
    assert [e["resource"]["id"] for e in wards.json()["entry"]] == [str(ward.uuid)] and not validate(
        wards.json()["entry"][0]["resource"]
    )
    assert _get(client, keys["t"], "/fhir/Location", {"physical-type": "wa"}).json()["total"] == 0


def _tamper(world: World, ward: Ward, case: str) -> dict[str, Any]:
    """A bad reservation request (and the world changed to make it bad)."""
    body = _reservation(world, _bed(ward))
    patient, bed_participant, practitioner = body["participant"]
    if case == "closed bed":
        bed_set_closed(actor=coordinator(world), bed=_bed(ward), closed=True)
    elif case == "occupied bed":
        bed_reserve(actor=actor_for(world, "lead_clinician"), bed=_bed(ward), patient=world.patients["at_a"])
    elif case == "bed of another consortium":
        other = Ward.objects.create(institution=world.t, name="内科病区", code="NK1")
        outside = Bed.objects.create(ward=other, code="01")
        body["participant"] = [patient, {"actor": {"reference": f"Location/{outside.uuid}"}, "status": "accepted"}, practitioner]
    elif case == "unknown bed":
        body["participant"] = [patient, {"actor": {"reference": "Location/beds-01"}, "status": "accepted"}, practitioner]
    elif case == "two beds":
        second = {"actor": {"reference": f"Location/{_bed(ward, '02').uuid}"}, "status": "accepted"}
        body["participant"] = [patient, bed_participant, second, practitioner]
    elif case == "past expiry":
        body["end"] = _hours(-1)
    elif case == "expiry beyond 72 hours":
        body["end"] = _hours(73)
    elif case == "expiry not an instant":
        body["end"] = "tomorrow"
    elif case == "huge comment":
        body["comment"] = "长" * 201
    elif case == "enormous comment":
        body["comment"] = "长" * 50_000
    elif case == "huge identifier":
        body["identifier"] = [{"system": "urn:x", "value": "x" * 65}]
    elif case == "with a slot":
        body["slot"] = [{"reference": "Slot/00000000-0000-0000-0000-000000000000"}]
    elif case == "based on an unknown referral":
        body["basedOn"] = [{"reference": "ServiceRequest/00000000-0000-0000-0000-000000000000"}]
    elif case == "patient not visible":
        body["participant"] = [{"actor": {"reference": f"Patient/{world.patients['at_t'].uuid}"}}, bed_participant, practitioner]
    elif case == "no patient":
        body["participant"] = [bed_participant, practitioner]
    elif case == "no practitioner":
        body["participant"] = [patient, bed_participant]
    elif case == "cancelled on create":
        body["status"] = "cancelled"
    return body


@pytest.mark.parametrize(
    ("case", "status", "where"),
    [
        ("closed bed", 422, None),
        ("occupied bed", 409, None),
        ("bed of another consortium", 422, "Appointment.participant[1]"),
        ("unknown bed", 422, "Appointment.participant[1]"),
        ("two beds", 422, "Appointment.participant"),
        ("past expiry", 422, "expires_at"),
        ("expiry beyond 72 hours", 422, "expires_at"),
        ("expiry not an instant", 400, None),  # not an R4 instant
        ("huge comment", 422, "note"),
        ("enormous comment", 422, "note"),
        ("huge identifier", 422, "Appointment.identifier[0]"),
        ("with a slot", 422, "Appointment.slot"),
        ("based on an unknown referral", 422, "Appointment.basedOn[0]"),
        ("patient not visible", 422, "Appointment.participant"),
        ("no patient", 422, "Appointment.participant"),
        ("no practitioner", 422, "Appointment.participant"),
        ("cancelled on create", 422, "Appointment.status"),
    ],
)
def test_bad_reservations_are_operation_outcomes_and_change_nothing(  # type: ignore[no-untyped-def]
    world: World, ward: Ward, keys, client: Client, case: str, status: int, where: str | None
) -> None:
    body = _tamper(world, ward, case)
    before = _state()

    answer = _send(client, keys["b"], "post", "/fhir/Appointment", body)

    _outcome(answer, status, where)
    assert _state() == before


def test_only_the_keys_own_practitioners_reserve_and_only_the_two_sides_release(  # type: ignore[no-untyped-def]
    world: World, ward: Ward, keys, client: Client
) -> None:
    before = _state()
    # T's HIS cannot name B's doctor; its own doctor does not see A's beds.
    _outcome(_send(client, keys["t"], "post", "/fhir/Appointment", _reservation(world, _bed(ward))), 403)
    stranger = _reservation(world, _bed(ward), "at_t")
    stranger["participant"][2] = {"actor": {"reference": f"Practitioner/{world.user('other_consortium_user').uuid}"}}
    _outcome(_send(client, keys["t"], "post", "/fhir/Appointment", stranger), 422, "Appointment.participant[1]")
    assert _state() == before
    # The bed's own hospital reserves for its own patient.
    own = _reservation(world, _bed(ward), "at_a")
    own["participant"][2] = {"actor": {"reference": f"Practitioner/{world.user('lead_clinician').uuid}"}}
    made = _send(client, keys["a"], "post", "/fhir/Appointment", own)
    assert made.status_code == 201, made.content
    reservation = BedReservation.objects.get()
    release = {"resourceType": "Appointment", "id": str(reservation.uuid), "status": "cancelled"}
    url = f"/fhir/Appointment/{reservation.uuid}"
    # Neither B (no side of it) nor T release it; the id in the body must be the address's.
    b_release = release | {"participant": [{"actor": {"reference": f"Practitioner/{world.user('township_clinician').uuid}"}}]}
    _outcome(_send(client, keys["b"], "put", url, b_release), 404)
    t_release = release | {"participant": [{"actor": {"reference": f"Practitioner/{world.user('other_consortium_user').uuid}"}}]}
    _outcome(_send(client, keys["t"], "put", url, t_release), 404)
    a_release = release | {"participant": [{"actor": {"reference": f"Practitioner/{world.user('lead_clinician').uuid}"}}]}
    _outcome(_send(client, keys["a"], "put", url, a_release | {"id": "00000000-0000-0000-0000-000000000000"}), 400)
    assert BedReservation.objects.get().status == ReservationStatus.ACTIVE
    assert _send(client, keys["a"], "put", url, a_release).status_code == 200
    assert BedReservation.objects.get().status == ReservationStatus.RELEASED


def test_the_beds_hospital_admits_through_update_the_reserving_side_cannot(  # type: ignore[no-untyped-def]
    world: World, ward: Ward, keys, client: Client
) -> None:
    body = _reservation(world, _bed(ward))
    made = _send(client, keys["b"], "post", "/fhir/Appointment", body)
    assert made.status_code == 201, made.content
    url = f"/fhir/Appointment/{made.json()['id']}"
    admit = made.json() | {"status": "fulfilled"}
    # B reserved it but does not run the ward: refused, nothing changed.
    _outcome(_send(client, keys["b"], "put", url, admit), 403)
    assert BedReservation.objects.get().status == ReservationStatus.ACTIVE and _bed(ward).status == BedStatus.RESERVED
    # A's doctor admits the patient: the bed is occupied; sending it again changes nothing.
    lead = [{"actor": {"reference": f"Practitioner/{world.user('lead_clinician').uuid}"}, "status": "accepted"}]
    admitted = _send(client, keys["a"], "put", url, admit | {"participant": lead})
    assert admitted.status_code == 200, admitted.content
    assert admitted.json()["status"] == "fulfilled" and not validate(admitted.json())
    assert BedReservation.objects.get().status == ReservationStatus.ADMITTED and _bed(ward).status == BedStatus.OCCUPIED
    state = _state()
    assert _send(client, keys["a"], "put", url, admit | {"participant": lead}).status_code == 200
    assert _state() == state
    # An admitted patient's reservation is no longer released.
    _outcome(_send(client, keys["a"], "put", url, admit | {"participant": lead, "status": "cancelled"}), 422)
    assert _state() == state


def test_the_receiver_reserves_a_referrals_bed_by_appointment_or_in_the_accepting_task(  # type: ignore[no-untyped-def]
    world: World, ward: Ward, keys, client: Client
) -> None:
    from yilian.referrals.models import ReferralStatus
    from yilian.referrals.services import referral_accept
    from yilian.referrals.testing import lead, refer_up

    referral = refer_up(world)
    lead_doctor = {"actor": {"reference": f"Practitioner/{world.user('lead_clinician').uuid}"}, "status": "accepted"}
    based_on = [{"reference": f"ServiceRequest/{referral.uuid}"}]

    def reserve(bed: Bed, key: str = "a", **change: Any) -> Any:
        body = _reservation(world, bed, basedOn=based_on, comment="带既往心电图", end=_hours(36))
        body["participant"][2] = lead_doctor
        return _send(client, keys[key], "post", "/fhir/Appointment", body | change)

    # Not accepted yet: refused, nothing reserved.
    _outcome(reserve(_bed(ward)), 422)
    assert not BedReservation.objects.exists()
    referral_accept(actor=lead(world), referral=referral)
    # Refused: another patient, the sender's own identifier, the sending side (not the receiver).
    other = _reservation(world, _bed(ward), "at_a", basedOn=based_on)
    other["participant"][2] = lead_doctor
    _outcome(_send(client, keys["a"], "post", "/fhir/Appointment", other), 422, "Appointment.participant")
    _outcome(reserve(_bed(ward), identifier=[HIS_RESERVATION]), 422, "Appointment.identifier")
    _outcome(_send(client, keys["b"], "post", "/fhir/Appointment", _reservation(world, _bed(ward), basedOn=based_on)), 403)
    assert not BedReservation.objects.exists()

    made = reserve(_bed(ward))
    assert made.status_code == 201, made.content
    assert not validate(made.json()) and made.json()["basedOn"] == based_on
    reservation = BedReservation.objects.get()
    referral.refresh_from_db()
    assert referral.status == ReferralStatus.SCHEDULED and referral.bed_reservation_id == reservation.pk
    assert reservation.patient == world.patients["at_b"] and reservation.reserved_by == world.user("lead_clinician")
    assert abs((reservation.expires_at - timezone.now()) - dt.timedelta(hours=36)) < dt.timedelta(minutes=2)
    # Sent again: the same reservation, nothing new.
    again = reserve(_bed(ward))
    assert again.status_code == 200 and again.json()["id"] == str(reservation.uuid)
    assert BedReservation.objects.count() == 1
    # A closed bed is refused and the reservation held stays as it was.
    bed_set_closed(actor=coordinator(world), bed=_bed(ward, "03"), closed=True)
    _outcome(reserve(_bed(ward, "03")), 422)
    assert _bed(ward).status == BedStatus.RESERVED and BedReservation.objects.get().status == ReservationStatus.ACTIVE
    # Another bed: re-reserved, the first one given back.
    moved = reserve(_bed(ward, "02"))
    assert moved.status_code == 201, moved.content
    assert _bed(ward).status == BedStatus.FREE and _bed(ward, "02").status == BedStatus.RESERVED
    referral.refresh_from_db()
    assert referral.bed_reservation.bed == _bed(ward, "02")  # type: ignore[union-attr]


def test_the_accepting_task_names_a_bed(world: World, ward: Ward, keys, client: Client) -> None:  # type: ignore[no-untyped-def]
    from yilian.interop.tests.test_fhir_workflow import _task
    from yilian.referrals.models import ReferralStatus
    from yilian.referrals.testing import refer_up

    referral = refer_up(world)
    url = f"/fhir/Task/{referral.uuid}"
    unknown = _task(
        str(referral.uuid),
        "accepted",
        input=[{"type": {"text": "bed"}, "valueReference": {"reference": f"Location/{ward.uuid}"}}],
    )
    _outcome(_send(client, keys["a"], "put", url, unknown), 422, "Task.input[0]")  # a ward is not a bed
    bed = _bed(ward, "03")
    accept = _task(
        str(referral.uuid), "accepted", input=[{"type": {"text": "bed"}, "valueReference": {"reference": f"Location/{bed.uuid}"}}]
    )
    accepted = _send(client, keys["a"], "put", url, accept)
    assert accepted.status_code == 200, accepted.content
    referral.refresh_from_db()
    assert referral.status == ReferralStatus.SCHEDULED
    assert referral.bed_reservation is not None and referral.bed_reservation.bed == bed
    assert _bed(ward, "03").status == BedStatus.RESERVED


def test_a_resent_reservation_returns_the_one_it_made(world: World, ward: Ward, keys, client: Client) -> None:  # type: ignore[no-untyped-def]
    body = _reservation(world, _bed(ward), identifier=[HIS_RESERVATION])
    first = _send(client, keys["b"], "post", "/fhir/Appointment", body)
    assert first.status_code == 201, first.content
    reservation = BedReservation.objects.get()
    assert (reservation.source_institution, reservation.source_identifier) == (world.b, HIS_RESERVATION["value"])
    assert first.json()["identifier"] == [HIS_RESERVATION]
    state = _state()

    again = _send(client, keys["b"], "post", "/fhir/Appointment", body)

    assert again.status_code == 200, again.content
    assert again["Location"] == first["Location"] and again.json()["id"] == str(reservation.uuid)
    assert _state() == state
    # The identifier on another reservation is a conflict naming what differs, and changes nothing.
    for change, named in (
        (
            {
                "participant": [
                    body["participant"][0],
                    {"actor": {"reference": f"Location/{_bed(ward, '02').uuid}"}},
                    body["participant"][2],
                ]
            },
            "床位",
        ),
        ({"comment": "另一个备注"}, "备注"),
        ({"end": _hours(24)}, "到期时间"),
    ):
        conflict = _outcome(_send(client, keys["b"], "post", "/fhir/Appointment", body | change), 409)
        assert named in conflict["issue"][0]["diagnostics"] and HIS_RESERVATION["value"] in conflict["issue"][0]["diagnostics"]
        assert _state() == state
    # If-None-Exist on the identifier returns it as it is, whatever the content.
    conditional = client.post(
        "/fhir/Appointment",
        data=json.dumps(body | {"comment": "另一个备注"}, ensure_ascii=False).encode(),
        content_type="application/fhir+json",
        headers={
            "Authorization": f"Bearer {keys['b']}",
            "If-None-Exist": f"identifier={HIS_RESERVATION['system']}|{HIS_RESERVATION['value']}",
        },
    )
    assert conditional.status_code == 200 and conditional.json()["comment"] == "心衰加重，请留床"
    assert _state() == state
    # The HIS finds it by its identifier.
    token = f"{HIS_RESERVATION['system']}|{HIS_RESERVATION['value']}"
    search = _get(client, keys["b"], "/fhir/Appointment", {"service-category": "bed-reservation", "identifier": token})
    assert search.json()["total"] == 1


def test_slot_bookings_refuse_if_none_exist_and_are_cancelled_by_update(world: World, keys, client: Client) -> None:  # type: ignore[no-untyped-def]
    from yilian.interop.tests.test_fhir_workflow import _appointment
    from yilian.referrals.testing import clinic_slot
    from yilian.scheduling.models import Booking, BookingStatus, SlotPool

    slot = clinic_slot(world)
    conditional = client.post(
        "/fhir/Appointment",
        data=json.dumps(_appointment(world, slot), ensure_ascii=False).encode(),
        content_type="application/fhir+json",
        headers={"Authorization": f"Bearer {keys['b']}", "If-None-Exist": "identifier=urn:x|1"},
    )
    _outcome(conditional, 400, "If-None-Exist")
    assert not Booking.objects.exists()
    booked = _send(client, keys["b"], "post", "/fhir/Appointment", _appointment(world, slot))
    assert booked.status_code == 201
    booking = Booking.objects.get()
    path = f"/fhir/Appointment/{booking.uuid}"

    def units() -> int:
        return sum(SlotPool.objects.filter(slot=slot).values_list("booked", flat=True))

    def grant_open() -> bool:
        return AccessGrant.objects.filter(
            source=GrantSource.APPOINTMENT, source_reference=str(booking.uuid), revoked_at__isnull=True
        ).exists()

    assert units() == 1 and grant_open()
    # Refused, nothing changed: a status the HIS cannot set, a malformed reason, a no-show before the
    # slot starts (the receiving institution's step), another institution's practitioner, an unknown id.
    _outcome(_send(client, keys["b"], "put", path, booked.json() | {"status": "fulfilled"}), 422, "Appointment.status")
    bad_reason = booked.json() | {"status": "cancelled", "cancelationReason": "改期"}
    _outcome(_send(client, keys["b"], "put", path, bad_reason), 400, "Appointment.cancelationReason")
    _outcome(_send(client, keys["b"], "put", path, booked.json() | {"status": "noshow"}), 403)
    lead = [{"actor": {"reference": f"Practitioner/{world.user('lead_clinician').uuid}"}, "status": "accepted"}]
    early = booked.json() | {"status": "noshow", "participant": lead}
    assert "尚未开始" in _outcome(_send(client, keys["a"], "put", path, early), 422)["issue"][0]["diagnostics"]
    other = [{"actor": {"reference": f"Practitioner/{world.user('other_consortium_user').uuid}"}, "status": "accepted"}]
    _outcome(_send(client, keys["t"], "put", path, booked.json() | {"status": "cancelled", "participant": other}), 404)
    unknown = "00000000-0000-4000-8000-000000000000"
    _outcome(_send(client, keys["b"], "put", f"/fhir/Appointment/{unknown}", booked.json() | {"id": unknown}), 404)
    assert Booking.objects.get().status == BookingStatus.BOOKED and units() == 1 and grant_open()
    # The booking institution cancels with a reason: the unit goes back, the lead hospital's grant ends.
    cancel = booked.json() | {"status": "cancelled", "cancelationReason": {"text": "患者改期"}}
    cancelled = _send(client, keys["b"], "put", path, cancel)
    assert cancelled.status_code == 200, cancelled.content
    assert cancelled.json()["status"] == "cancelled" and cancelled.json()["cancelationReason"] == {"text": "患者改期"}
    assert not validate(cancelled.json())
    stored = Booking.objects.get()
    assert stored.status == BookingStatus.CANCELLED and stored.cancel_reason == "患者改期"
    assert units() == 0 and not grant_open()
    # Sending it again changes nothing; reopening is refused.
    again = _send(client, keys["b"], "put", path, cancel)
    assert again.status_code == 200 and Booking.objects.get().updated_at == stored.updated_at
    _outcome(_send(client, keys["b"], "put", path, booked.json()), 422, "Appointment.status")


def test_the_capability_statement_documents_bed_reservations(client: Client, db: None) -> None:
    resources = {r["type"]: r for r in client.get("/fhir/metadata").json()["rest"][0]["resource"]}
    appointment = resources["Appointment"]
    assert {i["code"] for i in appointment["interaction"]} == {"create", "update", "read", "search-type"}
    assert appointment["conditionalCreate"] is True and "bed-reservation" in appointment["documentation"]
    assert {"location", "actor", "service-category", "identifier"} <= {p["name"] for p in appointment["searchParam"]}
    assert {i["code"] for i in resources["Location"]["interaction"]} == {"read", "search-type"}
    assert "physicalType bd" in resources["Location"]["documentation"]


def test_fhir_bed_reservation_matrix(world: World, ward: Ward) -> None:
    """Sessions never write at /fhir; a reservation is read by the sides that may see its patient."""
    reservation = bed_reserve(actor=actor_for(world, "township_clinician"), bed=_bed(ward), patient=world.patients["at_b"])
    watched = (*DEFAULT_WATCHED, "scheduling.BedReservation", "scheduling.Bed")
    run_matrix(
        world,
        Endpoint("GET", lambda w: f"/fhir/Appointment/{reservation.uuid}"),
        allowed={"lead_clinician": 200, "township_clinician": 200},
        denied_status={p: {403, 404} for p in PERSONAS} | {"anonymous": 401},
        watched=watched,
    )
    body = json.dumps(_reservation(world, _bed(ward, "02")), ensure_ascii=False)
    write = Endpoint("POST", lambda w: "/fhir/Appointment")
    write.call = lambda client, world: client.post("/fhir/Appointment", data=body, content_type="application/fhir+json")  # type: ignore[method-assign]
    run_matrix(world, write, allowed={}, denied_status=dict.fromkeys(PERSONAS, 401), watched=watched)
