"""Scheduling pages: what each persona sees and may do, bad input, query counts."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import Client
from django.utils import timezone

from yilian.access.models import AccessAction, AccessLog
from yilian.patients.models import Patient
from yilian.scheduling.models import Booking, BookingStatus, ScheduleKind, Slot
from yilian.scheduling.services import bed_reserve, schedule_create, slot_book, slots_generate
from yilian.scheduling.testing import actor_for, bed, coordinator, general_pool, make_clinic, make_ward, next_weekday
from yilian.testing.matrix import Endpoint, run_matrix
from yilian.testing.world import World

WATCHED = (
    "scheduling.Schedule",
    "scheduling.Slot",
    "scheduling.SlotPool",
    "scheduling.Booking",
    "scheduling.Bed",
    "scheduling.BedReservation",
    "access.AccessLog",
)

READERS = ("lead_clinician", "township_clinician", "village_doctor", "consortium_manager", "bureau_supervisor")


@pytest.fixture
def clinic(world: World):  # type: ignore[no-untyped-def]
    made = make_clinic(world)
    day = next_weekday(after=timezone.localdate() + dt.timedelta(days=1), skip_weeks=0)  # within the pages' two weeks
    slots_generate(schedule=made.schedule, start_date=day, end_date=day + dt.timedelta(days=2))
    return made


def _slot(clinic) -> Slot:  # type: ignore[no-untyped-def]
    return Slot.objects.filter(schedule=clinic.schedule).order_by("start").first()  # type: ignore[return-value]


def test_schedule_list_shows_pool_use_of_my_institution(world, clinic, login, django_assert_max_num_queries):
    slot_book(actor=actor_for(world, "township_clinician"), slot=_slot(clinic), patient=world.patients["at_b"], pool="reserved")
    client = login("lead_clinician")
    with django_assert_max_num_queries(12):
        response = client.get("/scheduling/")
    assert response.status_code == 200
    text = response.content.decode()
    assert "心内科普通门诊" in text
    schedule = response.context["schedules"][0]
    # Three days of four slots of four units; one reserved unit of B is booked.
    assert (schedule.slot_count, schedule.capacity_total, schedule.booked_total) == (12, 48, 1)
    assert (schedule.reserved_capacity, schedule.reserved_booked) == (24, 1)


def test_schedule_list_query_count_does_not_grow_with_schedules(
    world, clinic, login, django_assert_num_queries, django_assert_max_num_queries
):
    client = login("lead_clinician")
    client.get("/scheduling/")  # warm the session
    with django_assert_max_num_queries(12) as first:
        client.get("/scheduling/")
    for i in range(5):
        schedule_create(
            actor=coordinator(world), institution=world.a, kind=ScheduleKind.EQUIPMENT, name=f"CT室{i}", capability="ct"
        )
    with django_assert_num_queries(len(first.captured_queries)):
        response = client.get("/scheduling/")
    assert len(response.context["schedules"]) == 6


def test_a_township_sees_the_lead_hospitals_schedules_the_other_consortium_does_not(world, clinic, login):
    response = login("township_clinician").get(f"/scheduling/?institution={world.a.uuid}")
    assert response.status_code == 200 and "心内科普通门诊" in response.content.decode()
    assert login("other_consortium_user").get(f"/scheduling/?institution={world.a.uuid}").status_code == 404
    assert login("other_consortium_user").get(f"/scheduling/schedules/{clinic.schedule.uuid}/").status_code == 404


def test_schedule_detail_lists_slots_with_their_pools_and_refuses_bad_dates(world, clinic, login):
    client = login("township_clinician")
    response = client.get(f"/scheduling/schedules/{clinic.schedule.uuid}/")
    assert response.status_code == 200
    assert len(response.context["slots"]) == 12
    assert "水步镇卫生院 0/1" in response.content.decode()
    bad = client.get(f"/scheduling/schedules/{clinic.schedule.uuid}/?date_from=2026-01-10&date_to=2025-01-01")
    assert bad.status_code == 200 and "结束日期不能早于起始日期" in bad.content.decode()
    assert client.get(f"/scheduling/schedules/{clinic.schedule.uuid}/?date_from=not-a-date").status_code == 200


def test_slot_search_filters_by_pool_and_answers_htmx_with_the_table(world, clinic, login):
    client = login("township_clinician")
    response = client.get("/scheduling/slots/", {"pool": "reserved", "date_from": _slot(clinic).start.date().isoformat()})
    assert response.status_code == 200
    assert len(response.context["slots"]) == 12
    for slot in Slot.objects.filter(schedule=clinic.schedule):
        pool = slot.pools.get(quota=clinic.quota_b)
        pool.booked = 1
        pool.save()
    response = client.get("/scheduling/slots/", {"pool": "reserved", "date_from": _slot(clinic).start.date().isoformat()})
    assert response.context["slots"] == []
    partial = client.get("/scheduling/slots/", headers={"HX-Request": "true"})
    assert partial.status_code == 200 and b"<html" not in partial.content and b'id="slot-table"' in partial.content
    too_long = client.get("/scheduling/slots/", {"date_from": "2026-01-01", "date_to": "2027-01-01"})
    assert too_long.status_code == 200 and "一次最多查询" in too_long.content.decode()


def test_a_township_doctor_books_from_the_patient_through_the_gatekeeper(world, clinic, login):
    client = login("township_clinician")
    patient = world.patients["at_b"]
    page = client.get(f"/scheduling/patients/{patient.uuid}/book/")
    assert page.status_code == 200
    assert AccessLog.objects.filter(patient=patient, action=AccessAction.VIEW_SUMMARY).exists()
    slot = _slot(clinic)
    response = client.post(f"/scheduling/patients/{patient.uuid}/book/", {"slot": str(slot.uuid), "pool": "reserved"})
    assert response.status_code == 302 and response["Location"] == "/scheduling/bookings/"
    booking = Booking.objects.get(patient=patient)
    assert booking.pool.quota == clinic.quota_b and booking.for_institution == world.b
    again = client.post(f"/scheduling/patients/{patient.uuid}/book/", {"slot": str(slot.uuid), "pool": "general"}, follow=True)
    assert "重复预约" in again.content.decode()
    bad = client.post(f"/scheduling/patients/{patient.uuid}/book/", {"slot": "not-a-uuid", "pool": "vip"}, follow=True)
    assert bad.status_code == 200 and "号源无效" in bad.content.decode()
    assert Booking.objects.count() == 1
    # A patient the township does not hold is "not found".
    assert client.get(f"/scheduling/patients/{world.patients['at_a'].uuid}/book/").status_code == 404


def test_booking_list_cancel_and_no_show(world, clinic, login, django_assert_max_num_queries):
    slot = _slot(clinic)
    township = actor_for(world, "township_clinician")
    booking = slot_book(actor=township, slot=slot, patient=world.patients["at_b"], pool="reserved")
    client = login("township_clinician")
    with django_assert_max_num_queries(14):
        listing = client.get("/scheduling/bookings/")
    assert listing.status_code == 200 and "黄美玲" in listing.content.decode()
    assert AccessLog.objects.filter(patient=world.patients["at_b"], action=AccessAction.LIST).exists()
    # The lead hospital sees it among the bookings received.
    received = login("lead_clinician").get("/scheduling/bookings/?side=received")
    assert "黄美玲" in received.content.decode()
    assert client.post(f"/scheduling/bookings/{booking.uuid}/cancel/", {"reason": "改期"}).status_code == 302
    booking.refresh_from_db()
    assert booking.status == BookingStatus.CANCELLED
    other = slot_book(actor=actor_for(world, "lead_clinician"), slot=slot, patient=world.patients["at_a"])
    now = timezone.now()
    Slot.objects.filter(pk=slot.pk).update(start=now - dt.timedelta(minutes=5), end=now + dt.timedelta(minutes=55))
    assert login("lead_clinician").post(f"/scheduling/bookings/{other.uuid}/no-show/").status_code == 302
    other.refresh_from_db()
    assert other.status == BookingStatus.NO_SHOW
    assert general_pool(slot).booked == 0


def test_ward_board_shows_live_bed_status(world, login):
    ward = make_ward(world, beds=4)
    bed_reserve(actor=actor_for(world, "lead_clinician"), bed=bed(ward, "02"), patient=world.patients["at_a"])
    response = login("township_clinician").get(f"/scheduling/wards/?institution={world.a.uuid}")
    assert response.status_code == 200
    board = response.context["boards"][0]
    assert board.counts == {"free": 3, "reserved": 1}
    assert board.occupancy_percent == 25
    assert 'data-status="reserved"' in response.content.decode()


# --- the authorisation matrix over every page ------------------------------------------------


def _clinic_slot(w: World) -> Slot:
    return Slot.objects.order_by("start").first()  # type: ignore[return-value]


@pytest.mark.parametrize(
    ("endpoint", "allowed"),
    [
        (
            Endpoint("GET", lambda w: f"/scheduling/?institution={w.a.uuid}"),
            dict.fromkeys(READERS, 200),
        ),
        (
            Endpoint("GET", lambda w: f"/scheduling/schedules/{_clinic_slot(w).schedule.uuid}/"),
            dict.fromkeys(READERS, 200),
        ),
        (
            Endpoint("GET", lambda w: "/scheduling/slots/"),
            dict.fromkeys((*READERS, "other_consortium_user"), 200),
        ),
        (
            Endpoint("GET", lambda w: f"/scheduling/wards/?institution={w.a.uuid}"),
            dict.fromkeys(READERS, 200),
        ),
        (
            Endpoint("GET", lambda w: "/scheduling/bookings/"),
            dict.fromkeys(("lead_clinician", "township_clinician", "village_doctor", "other_consortium_user"), 200),
        ),
        (
            Endpoint("GET", lambda w: f"/scheduling/patients/{w.patients['at_b'].uuid}/book/"),
            {"township_clinician": 200},
        ),
        (
            Endpoint(
                "POST",
                lambda w: f"/scheduling/patients/{w.patients['at_b'].uuid}/book/",
                data=lambda w: {"slot": str(_clinic_slot(w).uuid), "pool": "reserved"},
            ),
            {"township_clinician": 302},
        ),
    ],
    ids=["schedule-list", "schedule-detail", "slot-search", "ward-board", "booking-list", "book-page", "book-post"],
)
def test_page_matrix(world, clinic, endpoint, allowed):
    make_ward(world)
    run_matrix(world, endpoint, allowed=allowed, denied_status={"anonymous": 302}, watched=WATCHED)


def test_cancel_and_no_show_matrix(world, clinic):
    booking = slot_book(
        actor=actor_for(world, "township_clinician"), slot=_slot(clinic), patient=world.patients["at_b"], pool="reserved"
    )
    run_matrix(
        world,
        Endpoint("POST", lambda w: f"/scheduling/bookings/{booking.uuid}/no-show/"),
        allowed={"lead_clinician": 302},  # the receiving side may try: the slot has not started, so nothing changes
        denied_status={"anonymous": 302},
        watched=WATCHED,
    )
    assert Booking.objects.get(pk=booking.pk).status == BookingStatus.BOOKED
    run_matrix(
        world,
        Endpoint("POST", lambda w: f"/scheduling/bookings/{booking.uuid}/cancel/", data=lambda w: {"reason": "改期"}),
        allowed={"lead_clinician": 302, "township_clinician": 302},  # either side may cancel
        denied_status={"anonymous": 302},
        watched=WATCHED,
    )
    assert Booking.objects.get(pk=booking.pk).status == BookingStatus.CANCELLED


def test_anonymous_is_sent_to_login(world):
    response = Client().get("/scheduling/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    assert Patient.objects.count() == 4


def test_the_institution_picker_names_the_institution_shown_even_without_schedules(world, clinic, login):
    client = login("township_clinician")  # acts for B, which has no schedules of its own
    text = client.get("/scheduling/").content.decode()
    picker = text.split('name="institution"', 1)[1].split("</select>", 1)[0]
    assert f'<option value="{world.b.uuid}" selected>{world.b.name}</option>' in picker
    assert f'value="{world.a.uuid}"' in picker  # the lead hospital's schedules stay one choice away


def test_the_receiving_institution_sees_a_booked_patient_through_an_expiring_grant(world, clinic, login):
    """No exception to the gatekeeper: the lead hospital lists a township's booked patient because
    the booking opened an appointment grant, logged as such; cancelling closes it."""
    from yilian.access.models import AccessBasis, AccessGrant, GrantScope, GrantSource

    slot = _slot(clinic)
    patient = world.patients["at_b"]
    booking = slot_book(actor=actor_for(world, "township_clinician"), slot=slot, patient=patient, pool="reserved")
    grant = AccessGrant.objects.get(source=GrantSource.APPOINTMENT, source_reference=str(booking.uuid))
    assert (grant.patient, grant.grantee_institution, grant.scope) == (patient, world.a, GrantScope.SUMMARY)
    assert grant.expires_at == slot.end + dt.timedelta(days=7)
    lead = login("lead_clinician")
    assert "黄美玲" in lead.get("/scheduling/bookings/?side=received").content.decode()
    assert AccessLog.objects.filter(patient=patient, acting_institution=world.a, basis=AccessBasis.GRANT, grant=grant).exists()
    assert lead.get(f"/api/v1/scheduling/bookings/{booking.uuid}").status_code == 200
    # Without an active grant the receiving side does not list the booking, nor open it.
    AccessGrant.objects.filter(pk=grant.pk).update(revoked_at=timezone.now())
    assert "黄美玲" not in lead.get("/scheduling/bookings/?side=received").content.decode()
    assert lead.get(f"/api/v1/scheduling/bookings/{booking.uuid}").status_code == 404
    AccessGrant.objects.filter(pk=grant.pk).update(revoked_at=None)
    # Cancelling revokes it.
    assert login("township_clinician").post(f"/scheduling/bookings/{booking.uuid}/cancel/", {"reason": "改期"}).status_code == 302
    grant.refresh_from_db()
    assert grant.revoked_at is not None
    assert "黄美玲" not in lead.get("/scheduling/bookings/?side=received").content.decode()


def test_a_bed_reservation_opens_and_its_release_closes_the_grant(world, login):
    from yilian.access.models import AccessGrant, GrantSource
    from yilian.scheduling.services import bed_release

    ward = make_ward(world)
    township = actor_for(world, "township_clinician")
    reservation = bed_reserve(actor=township, bed=bed(ward), patient=world.patients["at_b"], hours=24)
    grant = AccessGrant.objects.get(source=GrantSource.APPOINTMENT, source_reference=str(reservation.uuid))
    assert grant.grantee_institution == ward.institution and grant.revoked_at is None
    bed_release(actor=township, reservation=reservation)
    grant.refresh_from_db()
    assert grant.revoked_at is not None
