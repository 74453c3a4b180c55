"""/api/v1/scheduling: search, booking, cancelling, beds; the error shape; the authorisation matrix."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.test import Client

from yilian.access.models import AccessAction, AccessLog
from yilian.accounts.models import ApiKey, hash_api_key
from yilian.patients.models import Patient
from yilian.scheduling.models import BedStatus, Booking, Slot
from yilian.scheduling.services import slot_book, slots_generate
from yilian.scheduling.testing import actor_for, bed, make_clinic, make_ward, next_weekday
from yilian.testing.matrix import Endpoint, run_matrix
from yilian.testing.world import PERSONAS, World

WATCHED = (
    "scheduling.Schedule",
    "scheduling.Slot",
    "scheduling.SlotPool",
    "scheduling.Booking",
    "scheduling.Bed",
    "scheduling.BedReservation",
    "access.AccessLog",
)
STRUCTURE_READERS = ("lead_clinician", "township_clinician", "village_doctor", "consortium_manager", "bureau_supervisor")
ALL_STAFF = (*STRUCTURE_READERS, "other_consortium_user")


@pytest.fixture
def clinic(world: World):  # type: ignore[no-untyped-def]
    made = make_clinic(world)
    day = next_weekday()
    slots_generate(schedule=made.schedule, start_date=day, end_date=day)
    made.day = day  # type: ignore[attr-defined]
    return made


def _slot(w: World | None = None) -> Slot:
    return Slot.objects.order_by("start").first()  # type: ignore[return-value]


def _post(client: Client, url: str, body: dict) -> object:
    return client.post(url, data=json.dumps(body), content_type="application/json")


def test_slot_search_by_department_date_and_pool(world, clinic, login, django_assert_max_num_queries):
    client = login("township_clinician")
    query = {"department": str(world.cardiology.uuid), "date_from": clinic.day.isoformat(), "pool": "reserved"}
    with django_assert_max_num_queries(8):
        response = client.get("/api/v1/scheduling/slots", query)
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 4
    first = body["items"][0]
    assert first["schedule"]["institution"]["name"] == "台山市人民医院"
    kinds = {p["kind"]: (p["capacity"], p["booked"], p["free"]) for p in first["pools"]}
    assert kinds == {"general": (2, 0, 2), "institution": (1, 0, 1), "green_channel": (1, 0, 1)}
    assert client.get("/api/v1/scheduling/slots", {"capability": "mri", "date_from": clinic.day.isoformat()}).json()["count"] == 0
    # The lead hospital holds no reservation on its own slots; the village clinic shares B's.
    assert login("lead_clinician").get("/api/v1/scheduling/slots", query).json()["count"] == 0
    assert login("village_doctor").get("/api/v1/scheduling/slots", query).json()["count"] == 4


def test_slot_search_refuses_bad_input_in_the_error_shape(world, clinic, login):
    client = login("township_clinician")
    for query in (
        {"date_from": "2026-13-01"},
        {"date_from": "2026-01-10", "date_to": "2026-01-01"},
        {"date_from": "2026-01-01", "date_to": "2027-01-01"},
        {"pool": "vip"},
        {"capability": "pci"},
        {"department": "00000000-0000-0000-0000-000000000000"},
    ):
        response = client.get("/api/v1/scheduling/slots", query)
        assert response.status_code == 422, query
        assert set(response.json()) == {"code", "message", "message_en", "fields"}
    assert client.get("/api/v1/scheduling/slots", {"page_size": 100000}).status_code == 400


def test_booking_through_the_api_and_its_conflicts(world, clinic, login):
    client = login("township_clinician")
    body = {"slot": str(_slot().uuid), "patient": str(world.patients["at_b"].uuid), "pool": "reserved", "note": "转诊复查"}
    response = _post(client, "/api/v1/scheduling/bookings", body)
    assert response.status_code == 201, response.content  # type: ignore[attr-defined]
    created = response.json()  # type: ignore[attr-defined]
    assert created["pool"] == "institution" and created["for_institution"]["name"] == "水步镇卫生院"
    duplicate = _post(client, "/api/v1/scheduling/bookings", body | {"pool": "general"})
    assert duplicate.status_code == 409 and "重复预约" in duplicate.json()["message"]  # type: ignore[attr-defined]
    full = _post(client, "/api/v1/scheduling/bookings", body | {"patient": str(world.patients["at_v"].uuid)})
    assert full.status_code == 409 and "约满" in full.json()["message"]  # type: ignore[attr-defined]
    assert full.json()["message_en"] == "This slot is fully booked; choose another time."  # type: ignore[attr-defined]
    hidden = _post(client, "/api/v1/scheduling/bookings", body | {"patient": str(world.patients["at_a"].uuid)})
    assert hidden.status_code == 422 and "patient" in hidden.json()["fields"]  # type: ignore[attr-defined]
    too_long = _post(client, "/api/v1/scheduling/bookings", body | {"note": "长" * 201})
    assert too_long.status_code == 422  # type: ignore[attr-defined]
    extra = _post(client, "/api/v1/scheduling/bookings", body | {"capacity": 99})
    assert extra.status_code == 422  # type: ignore[attr-defined]
    assert Booking.objects.count() == 1
    listing = client.get("/api/v1/scheduling/bookings", {"side": "made"}).json()
    assert listing["count"] == 1 and listing["items"][0]["patient"]["name"] == "黄美玲"
    assert AccessLog.objects.filter(patient=world.patients["at_b"], action=AccessAction.LIST).exists()
    cancelled = _post(client, f"/api/v1/scheduling/bookings/{created['id']}/cancel", {"reason": "改期"})
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"  # type: ignore[attr-defined]
    again = _post(client, f"/api/v1/scheduling/bookings/{created['id']}/cancel", {})
    assert again.status_code == 422  # type: ignore[attr-defined]


def test_a_full_slot_is_refused_before_the_patient_is_read(world, login):
    clinic = make_clinic(world, capacity=2, units_b=1, green=1)  # one green-channel unit, one reserved for B
    day = next_weekday()
    slots_generate(schedule=clinic.schedule, start_date=day, end_date=day)
    client = login("township_clinician")
    body = {"slot": str(_slot().uuid), "patient": str(world.patients["at_b"].uuid), "pool": "reserved"}
    for pool, patient in (("reserved", "at_b"), ("green_channel", "at_v")):
        made = _post(client, "/api/v1/scheduling/bookings", body | {"pool": pool, "patient": str(world.patients[patient].uuid)})
        assert made.status_code == 201, made.content  # type: ignore[attr-defined]
    logged = AccessLog.objects.count()
    full = _post(client, "/api/v1/scheduling/bookings", body | {"pool": "general"})
    assert full.status_code == 409 and "约满" in full.json()["message"]  # type: ignore[attr-defined]
    assert AccessLog.objects.count() == logged  # refused without reading (or logging) the patient
    assert Booking.objects.count() == 2


def test_a_past_slot_is_refused(world, clinic, login):
    past_day = clinic.day - dt.timedelta(weeks=3)
    slots_generate(schedule=clinic.schedule, start_date=past_day, end_date=past_day)
    past = Slot.objects.order_by("start").first()
    assert past is not None
    response = _post(
        login("lead_clinician"),
        "/api/v1/scheduling/bookings",
        {"slot": str(past.uuid), "patient": str(world.patients["at_a"].uuid)},
    )
    assert response.status_code == 422 and "已过" in response.json()["message"]  # type: ignore[attr-defined]


def test_beds_wards_and_reservations(world, login):
    ward = make_ward(world, beds=3)
    client = login("township_clinician")
    wards = client.get("/api/v1/scheduling/wards", {"institution": str(world.a.uuid)}).json()
    assert wards["items"][0]["beds"] == 3 and wards["items"][0]["free"] == 3
    target = bed(ward, "01")
    body = {"bed": str(target.uuid), "patient": str(world.patients["at_b"].uuid), "hours": 6}
    created = _post(client, "/api/v1/scheduling/bed-reservations", body)
    assert created.status_code == 201  # type: ignore[attr-defined]
    taken = _post(
        login("lead_clinician"), "/api/v1/scheduling/bed-reservations", body | {"patient": str(world.patients["at_a"].uuid)}
    )
    assert taken.status_code == 409  # type: ignore[attr-defined]
    assert _post(client, "/api/v1/scheduling/bed-reservations", body | {"hours": 1000}).status_code == 422  # type: ignore[attr-defined]
    beds = client.get(f"/api/v1/scheduling/wards/{ward.uuid}/beds", {"status": "reserved"}).json()
    assert [b["code"] for b in beds["items"]] == ["01"]
    reservation_id = created.json()["id"]  # type: ignore[attr-defined]
    released = _post(client, f"/api/v1/scheduling/bed-reservations/{reservation_id}/release", {})
    assert released.status_code == 200 and released.json()["status"] == "released"  # type: ignore[attr-defined]
    target.refresh_from_db()
    assert target.status == BedStatus.FREE


def test_a_member_system_reads_slots_but_cannot_book(world, clinic):
    prefix, raw = ApiKey.generate_raw_key()
    ApiKey.objects.create(institution=world.b, name="HIS", prefix=prefix, key_digest=hash_api_key(raw))
    client = Client(headers={"Authorization": f"Bearer {raw}"})
    assert client.get("/api/v1/scheduling/slots", {"date_from": clinic.day.isoformat()}).json()["count"] == 4
    body = {"slot": str(_slot().uuid), "patient": str(world.patients["at_b"].uuid)}
    assert _post(client, "/api/v1/scheduling/bookings", body).status_code == 403  # type: ignore[attr-defined]


# --- the authorisation matrix ---------------------------------------------------------------------


def _booking(w: World) -> Booking:
    return Booking.objects.get()


@pytest.mark.parametrize(
    ("endpoint", "allowed"),
    [
        (
            Endpoint("GET", lambda w: "/api/v1/scheduling/schedules"),
            dict.fromkeys(ALL_STAFF, 200),
        ),
        (
            Endpoint("GET", lambda w: f"/api/v1/scheduling/schedules/{_slot(w).schedule.uuid}"),
            dict.fromkeys(STRUCTURE_READERS, 200),
        ),
        (Endpoint("GET", lambda w: "/api/v1/scheduling/slots"), dict.fromkeys(ALL_STAFF, 200)),
        (Endpoint("GET", lambda w: "/api/v1/scheduling/wards"), dict.fromkeys(ALL_STAFF, 200)),
        (
            Endpoint("GET", lambda w: f"/api/v1/scheduling/wards/{w.a.wards.get().uuid}/beds"),
            dict.fromkeys(STRUCTURE_READERS, 200),
        ),
        (
            Endpoint("GET", lambda w: "/api/v1/scheduling/bookings"),
            dict.fromkeys(("lead_clinician", "township_clinician", "village_doctor", "other_consortium_user"), 200),
        ),
        (
            Endpoint("GET", lambda w: f"/api/v1/scheduling/bookings/{_booking(w).uuid}"),
            {"lead_clinician": 200, "township_clinician": 200},
        ),
        (
            Endpoint(
                "POST",
                lambda w: "/api/v1/scheduling/bookings",
                data=lambda w: {
                    "slot": str(_slot(w).uuid),
                    "patient": str(Patient.objects.get(name="新来者").uuid),
                    "pool": "general",
                },
                json_body=True,
            ),
            {"township_clinician": 201},
        ),
        (
            Endpoint(
                "POST",
                lambda w: "/api/v1/scheduling/bed-reservations",
                data=lambda w: {"bed": str(w.a.wards.get().beds.get(code="01").uuid), "patient": str(w.patients["at_a"].uuid)},
                json_body=True,
            ),
            {"lead_clinician": 201},
        ),
        (
            Endpoint(
                "POST", lambda w: f"/api/v1/scheduling/bookings/{_booking(w).uuid}/cancel", data=lambda w: {}, json_body=True
            ),
            {"lead_clinician": 200, "township_clinician": 422},  # the receiving side cancels first; then it is no longer booked
        ),
    ],
    ids=[
        "schedules",
        "schedule",
        "slots",
        "wards",
        "beds",
        "bookings",
        "booking",
        "book",
        "reserve-bed",
        "cancel",
    ],
)
def test_api_matrix(world, clinic, endpoint, allowed):
    make_ward(world)
    slot_book(actor=actor_for(world, "township_clinician"), slot=_slot(), patient=world.patients["at_b"], pool="reserved")
    Patient.objects.create(name="新来者", home_institution=world.b)
    denied: dict[str, int | set[int]] = {persona: {403, 404, 422} for persona in PERSONAS} | {"anonymous": 401}
    run_matrix(world, endpoint, allowed=allowed, denied_status=denied, watched=WATCHED)
