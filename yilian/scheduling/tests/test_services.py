"""Scheduling services: generation (holidays, make-up days, leave), quotas, bookings, beds."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection
from django.utils import timezone

from yilian.notifications.models import Notification
from yilian.patients.models import Patient
from yilian.scheduling.holidays import DayKind, day_kind
from yilian.scheduling.models import (
    BedReservation,
    BedStatus,
    Booking,
    BookingStatus,
    QuotaKind,
    ReservationStatus,
    Slot,
    SlotPool,
)
from yilian.scheduling.services import (
    bed_admit,
    bed_discharge,
    bed_release,
    bed_reserve,
    bed_set_closed,
    booking_cancel,
    booking_mark_no_show,
    leave_record,
    quota_release,
    quota_set,
    reservations_expire,
    slot_book,
    slot_template_add,
    slots_generate,
)
from yilian.scheduling.testing import actor_for, bed, coordinator, general_pool, make_clinic, make_ward, next_weekday
from yilian.testing.world import World

TZ = dt.timezone(dt.timedelta(hours=8))


def _pool_state(slot: Slot) -> list[tuple[int | None, int, int]]:
    return list(SlotPool.objects.filter(slot=slot).order_by("pk").values_list("quota_id", "capacity", "booked"))


def _first_slot(world: World, day: dt.date) -> Slot:
    clinic = make_clinic(world)
    slots_generate(schedule=clinic.schedule, start_date=day, end_date=day)
    return Slot.objects.filter(schedule=clinic.schedule).order_by("start").first()  # type: ignore[return-value]


# --- the calendar and generation -------------------------------------------------------------


def test_calendar_knows_national_day_and_make_up_workdays():
    assert day_kind(dt.date(2026, 10, 1)) == (DayKind.HOLIDAY, True)
    assert day_kind(dt.date(2026, 10, 6)) == (DayKind.HOLIDAY, True)  # a Tuesday in the Golden Week
    assert day_kind(dt.date(2026, 10, 10)) == (DayKind.MAKEUP_WORKDAY, True)  # Saturday worked in lieu
    assert day_kind(dt.date(2026, 10, 14)) == (DayKind.WORKDAY, True)
    assert day_kind(dt.date(2026, 10, 17)) == (DayKind.WEEKEND, True)
    kind, known = day_kind(dt.date(2099, 1, 5))
    assert (kind, known) == (DayKind.WORKDAY, False)


def test_generation_splits_capacity_into_pools_and_is_idempotent(world):
    clinic = make_clinic(world, capacity=4, units_b=1, green=1)
    monday = dt.date(2026, 6, 1)
    result = slots_generate(schedule=clinic.schedule, start_date=monday, end_date=monday + dt.timedelta(days=6))
    assert result.created == 5 * 4  # Monday–Friday, four one-hour slots each
    assert result.unknown_calendar_years == set()
    slot = Slot.objects.filter(schedule=clinic.schedule).order_by("start").first()
    assert slot is not None
    assert timezone.localtime(slot.start).time() == dt.time(8, 0)
    states = set(SlotPool.objects.filter(slot=slot).values_list("quota__kind", "capacity"))
    assert states == {("institution", 1), ("green_channel", 1), (None, 2)}
    release = SlotPool.objects.get(slot=slot, quota=clinic.quota_b).release_at
    assert release == slot.start - dt.timedelta(hours=24)
    again = slots_generate(schedule=clinic.schedule, start_date=monday, end_date=monday + dt.timedelta(days=6))
    assert again.created == 0
    assert Slot.objects.filter(schedule=clinic.schedule).count() == 20
    assert SlotPool.objects.filter(slot__schedule=clinic.schedule).count() == 60


def test_holidays_close_and_make_up_workdays_open(world):
    clinic = make_clinic(world)
    emergency = slot_template_add(
        actor=coordinator(world),
        schedule=clinic.schedule,
        weekdays="0123456",
        start_time=dt.time(20, 0),
        end_time=dt.time(21, 0),
        slot_minutes=60,
        capacity=2,
        valid_from=dt.date(2026, 1, 1),
        on_public_holidays=True,
        on_makeup_workdays=False,
    )
    slots_generate(schedule=clinic.schedule, start_date=dt.date(2026, 9, 28), end_date=dt.date(2026, 10, 11))
    days = {
        (timezone.localtime(s.start).date(), s.template_id)
        for s in Slot.objects.filter(schedule=clinic.schedule).only("start", "template_id")
    }
    clinic_days = {day for day, template in days if template == clinic.template.pk}
    evening_days = {day for day, template in days if template == emergency.pk}
    assert clinic_days == {
        dt.date(2026, 9, 28),
        dt.date(2026, 9, 29),
        dt.date(2026, 9, 30),
        dt.date(2026, 10, 8),
        dt.date(2026, 10, 9),
        dt.date(2026, 10, 10),  # Saturday, a make-up workday
    }
    assert dt.date(2026, 10, 1) in evening_days and dt.date(2026, 10, 3) in evening_days
    assert dt.date(2026, 10, 10) not in evening_days  # this rule stays off on make-up days


def test_generation_reports_years_the_calendar_does_not_know(world):
    clinic = make_clinic(world)
    result = slots_generate(schedule=clinic.schedule, start_date=dt.date(2099, 1, 5), end_date=dt.date(2099, 1, 6))
    assert result.created == 8
    assert result.unknown_calendar_years == {2099}


def test_generation_refuses_absurd_ranges(world):
    clinic = make_clinic(world)
    with pytest.raises(ValidationError):
        slots_generate(schedule=clinic.schedule, start_date=dt.date(2026, 1, 1), end_date=dt.date(2027, 6, 1))
    with pytest.raises(ValidationError):
        slots_generate(schedule=clinic.schedule, start_date=dt.date(2026, 2, 1), end_date=dt.date(2026, 1, 1))
    assert not Slot.objects.exists()


def test_leave_closes_generated_and_later_slots_and_cancels_bookings(world, django_capture_on_commit_callbacks):
    from yilian.scheduling.models import ScheduleKind
    from yilian.scheduling.services import schedule_create

    actor = coordinator(world)
    practitioner = world.user("lead_clinician").practitioner
    schedule = schedule_create(
        actor=actor, institution=world.a, kind=ScheduleKind.PRACTITIONER, name="李志强专家门诊", practitioner=practitioner
    )
    slot_template_add(
        actor=actor,
        schedule=schedule,
        weekdays="2",
        start_time=dt.time(8),
        end_time=dt.time(10),
        slot_minutes=60,
        capacity=3,
        valid_from=dt.date(2025, 1, 1),
    )
    day = next_weekday(weekday=2)
    later = day + dt.timedelta(weeks=1)
    slots_generate(schedule=schedule, start_date=day, end_date=day)
    first = Slot.objects.filter(schedule=schedule).order_by("start").first()
    assert first is not None
    booking = slot_book(actor=actor_for(world, "lead_clinician"), slot=first, patient=world.patients["at_a"])
    with django_capture_on_commit_callbacks(execute=True):
        leave_record(
            actor=actor,
            practitioner=practitioner,
            starts_at=dt.datetime.combine(day, dt.time(0), tzinfo=TZ),
            ends_at=dt.datetime.combine(later, dt.time(23), tzinfo=TZ),
            reason="外出会诊",
        )
    assert set(Slot.objects.filter(schedule=schedule).values_list("is_closed", flat=True)) == {True}
    booking.refresh_from_db()
    assert booking.status == BookingStatus.CANCELLED
    assert general_pool(first).booked == 0
    assert Notification.objects.filter(recipient=world.user("lead_clinician"), title__contains="停诊").exists()
    result = slots_generate(schedule=schedule, start_date=later, end_date=later)
    assert result.created == 2 and result.closed_by_leave == 2
    with pytest.raises(ValidationError, match="停诊"):
        slot_book(actor=actor_for(world, "lead_clinician"), slot=first, patient=world.patients["at_a"])


def test_only_managers_of_the_institution_change_schedules(world):
    clinic = make_clinic(world)
    for persona in ("lead_clinician", "township_clinician", "bureau_supervisor", "other_consortium_user"):
        with pytest.raises(PermissionDenied):
            quota_set(actor=actor_for(world, persona), schedule=clinic.schedule, kind=QuotaKind.GREEN_CHANNEL, units_per_slot=1)
    # The consortium manager of A manages A's schedules.
    quota_set(
        actor=actor_for(world, "consortium_manager"), schedule=clinic.schedule, kind=QuotaKind.GREEN_CHANNEL, units_per_slot=1
    )


def test_quota_only_for_members_of_the_schedules_consortium(world):
    clinic = make_clinic(world)
    with pytest.raises(ValidationError):
        quota_set(
            actor=coordinator(world), schedule=clinic.schedule, kind=QuotaKind.INSTITUTION, institution=world.d, units_per_slot=1
        )
    with pytest.raises(ValidationError):
        quota_set(
            actor=coordinator(world), schedule=clinic.schedule, kind=QuotaKind.CONSORTIUM, consortium=world.k2, units_per_slot=1
        )


# --- bookings ----------------------------------------------------------------------------------


def test_general_booking_and_the_bad_inputs_change_nothing(world):
    slot = _first_slot(world, next_weekday())
    lead = actor_for(world, "lead_clinician")
    booking = slot_book(actor=lead, slot=slot, patient=world.patients["at_a"])
    assert booking.status == BookingStatus.BOOKED and booking.pool.quota_id is None
    assert booking.for_institution == world.a
    state = _pool_state(slot)
    with pytest.raises(ValidationError, match="重复预约"):
        slot_book(actor=lead, slot=slot, patient=world.patients["at_a"])
    with pytest.raises(ValidationError, match="预留范围"):
        slot_book(actor=lead, slot=slot, patient=world.patients["at_a"], pool="reserved")
    with pytest.raises(ValidationError, match="无权为该居民"):
        slot_book(actor=lead, slot=slot, patient=world.patients["at_b"])
    with pytest.raises(ValidationError, match="不在您所在医联体"):
        slot_book(actor=actor_for(world, "other_consortium_user"), slot=slot, patient=world.patients["at_t"])
    with pytest.raises(ValidationError):
        slot_book(actor=lead, slot=slot, patient=world.patients["at_a"], pool="vip")  # type: ignore[arg-type]
    with pytest.raises(PermissionDenied):
        slot_book(actor=actor_for(world, "consortium_manager"), slot=slot, patient=world.patients["at_a"])
    assert _pool_state(slot) == state
    assert Booking.objects.count() == 1


def test_a_full_pool_refuses_and_a_past_slot_refuses(world):
    slot = _first_slot(world, next_weekday())
    lead = actor_for(world, "lead_clinician")
    extra = [Patient.objects.create(name=f"患者{i}", home_institution=world.a) for i in range(3)]
    slot_book(actor=lead, slot=slot, patient=extra[0])
    slot_book(actor=lead, slot=slot, patient=extra[1])
    with pytest.raises(ValidationError, match="约满"):
        slot_book(actor=lead, slot=slot, patient=extra[2])
    assert general_pool(slot).booked == 2
    past = _first_slot_past(world)
    with pytest.raises(ValidationError, match="已过"):
        slot_book(actor=lead, slot=past, patient=extra[2])


def _first_slot_past(world: World) -> Slot:
    clinic = make_clinic(world) if not Slot.objects.exists() else None
    schedule = clinic.schedule if clinic else Slot.objects.first().schedule  # type: ignore[union-attr]
    day = timezone.localdate() - dt.timedelta(days=14)
    while day.weekday() > 3:
        day -= dt.timedelta(days=1)
    slots_generate(schedule=schedule, start_date=day, end_date=day)
    return Slot.objects.filter(schedule=schedule, start__date__lte=day).order_by("start").first()  # type: ignore[return-value]


def test_a_refused_booking_commits_nothing_and_keeps_prepared_statements(world):
    """A refusal decided under the slot's lock ends the transaction without a rollback (psycopg
    drops every prepared statement of the connection on a rollback, so each refusal would make
    PostgreSQL plan the booking's statements anew)."""
    slot = _first_slot(world, next_weekday())
    lead = actor_for(world, "lead_clinician")
    extra = [Patient.objects.create(name=f"患者{i}", home_institution=world.a) for i in range(3)]

    def prepared() -> int:
        if connection.vendor != "postgresql":
            return 0
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_prepared_statements")
            return int(cursor.fetchone()[0])

    slot_book(actor=lead, slot=slot, patient=extra[0])
    before = prepared()
    assert before > 0 or connection.vendor != "postgresql"
    for patient, match in ((extra[0], "重复预约"), (extra[1], None), (extra[2], "约满")):
        state = _pool_state(slot)
        if match is None:
            slot_book(actor=lead, slot=slot, patient=patient)  # the last unit
            continue
        with pytest.raises(ValidationError, match=match):
            slot_book(actor=lead, slot=slot, patient=patient)
        assert _pool_state(slot) == state
        assert prepared() >= before
    assert Booking.objects.filter(slot=slot).count() == 2


def test_member_quota_is_for_the_township_and_its_village_clinics(world):
    slot = _first_slot(world, next_weekday())
    township = actor_for(world, "township_clinician")
    booking = slot_book(actor=township, slot=slot, patient=world.patients["at_b"], pool="reserved")
    assert booking.pool.quota.institution == world.b  # type: ignore[union-attr]
    assert booking.for_institution == world.b
    village = actor_for(world, "village_doctor")
    with pytest.raises(ValidationError, match="约满"):  # B's one unit is taken, V shares it through B
        slot_book(actor=village, slot=slot, patient=world.patients["at_v"], pool="reserved")
    green = slot_book(actor=village, slot=slot, patient=world.patients["at_v"], pool="green_channel")
    assert green.pool.quota.kind == QuotaKind.GREEN_CHANNEL  # type: ignore[union-attr]


def test_coordinator_books_a_members_quota_on_its_behalf_others_cannot(world):
    slot = _first_slot(world, next_weekday())
    # The coordinator sees the patient through a grant, as a referral would give.
    from yilian.access.models import AccessGrant, GrantSource

    AccessGrant.objects.create(
        patient=world.patients["at_b"],
        grantee_institution=world.a,
        source=GrantSource.REFERRAL,
        starts_at=timezone.now(),
        expires_at=timezone.now() + dt.timedelta(days=2),
        reason="转诊",
    )
    booking = slot_book(
        actor=coordinator(world), slot=slot, patient=world.patients["at_b"], pool="reserved", for_institution=world.b
    )
    assert booking.for_institution == world.b
    with pytest.raises(ValidationError, match="调度员"):
        slot_book(
            actor=actor_for(world, "township_clinician"), slot=slot, patient=world.patients["at_b"], for_institution=world.c
        )


def test_cancel_gives_the_unit_back_to_its_pool(world):
    slot = _first_slot(world, next_weekday())
    township = actor_for(world, "township_clinician")
    booking = slot_book(actor=township, slot=slot, patient=world.patients["at_b"], pool="reserved")
    before = _pool_state(slot)
    with pytest.raises(PermissionDenied):
        booking_cancel(actor=actor_for(world, "village_doctor"), booking=booking)
    booking_cancel(actor=township, booking=booking, reason="患者改期")
    assert booking.status == BookingStatus.CANCELLED
    after = _pool_state(slot)
    assert sum(b for _q, _c, b in after) == sum(b for _q, _c, b in before) - 1
    with pytest.raises(ValidationError, match="状态"):
        booking_cancel(actor=township, booking=booking)
    again = slot_book(actor=township, slot=slot, patient=world.patients["at_b"], pool="reserved")  # the unit is back
    assert again.pool_id == booking.pool_id


def test_no_show_after_start_frees_the_unit_for_a_walk_in(world):
    slot = _first_slot(world, next_weekday())
    lead = actor_for(world, "lead_clinician")
    walk_ins = [Patient.objects.create(name=f"候诊{i}", home_institution=world.a) for i in range(2)]
    first = slot_book(actor=lead, slot=slot, patient=world.patients["at_a"])
    slot_book(actor=lead, slot=slot, patient=walk_ins[0])
    with pytest.raises(ValidationError, match="尚未开始"):
        booking_mark_no_show(actor=lead, booking=first)
    now = timezone.now()
    Slot.objects.filter(pk=slot.pk).update(start=now - dt.timedelta(minutes=10), end=now + dt.timedelta(minutes=50))
    first.refresh_from_db()
    with pytest.raises(PermissionDenied):
        booking_mark_no_show(actor=actor_for(world, "township_clinician"), booking=first)
    booking_mark_no_show(actor=lead, booking=first)
    assert first.status == BookingStatus.NO_SHOW
    assert general_pool(slot).booked == 1
    slot.refresh_from_db()
    slot_book(actor=lead, slot=slot, patient=walk_ins[1])
    assert general_pool(slot).booked == 2


# --- quota release -----------------------------------------------------------------------------


def test_unused_quota_is_released_to_the_general_pool_at_its_time(world):
    slot = _first_slot(world, next_weekday())
    township = actor_for(world, "township_clinician")
    lead = actor_for(world, "lead_clinician")
    assert quota_release(now=slot.start - dt.timedelta(hours=25)) == 0
    assert general_pool(slot).capacity == 2
    # B used its unit; the green channel unit is unused.
    slot_book(actor=township, slot=slot, patient=world.patients["at_b"], pool="reserved")
    # Half an hour past this slot's release time, before the next slot's (an hour later).
    assert quota_release(now=slot.start - dt.timedelta(hours=23, minutes=30)) == 1
    assert quota_release(now=slot.start - dt.timedelta(hours=23, minutes=20)) == 0  # idempotent
    general = general_pool(slot)
    assert (general.capacity, general.booked) == (3, 0)
    assert SlotPool.objects.get(slot=slot, quota=make_quota_green(slot)).capacity == 0
    with pytest.raises(ValidationError, match="绿色通道"):
        slot_book(actor=lead, slot=slot, patient=world.patients["at_a"], pool="green_channel")
    extra = [Patient.objects.create(name=f"普通{i}", home_institution=world.a) for i in range(3)]
    for patient in extra:
        slot_book(actor=lead, slot=slot, patient=patient)
    with pytest.raises(ValidationError, match="约满"):
        slot_book(actor=lead, slot=slot, patient=world.patients["at_a"])


def make_quota_green(slot: Slot):  # type: ignore[no-untyped-def]
    return slot.schedule.quotas.get(kind=QuotaKind.GREEN_CHANNEL)


def test_cancelling_a_released_quota_booking_gives_the_unit_to_the_general_pool(world):
    slot = _first_slot(world, next_weekday())
    township = actor_for(world, "township_clinician")
    booking = slot_book(actor=township, slot=slot, patient=world.patients["at_b"], pool="reserved")
    quota_release(now=slot.start - dt.timedelta(hours=1))
    booking_cancel(actor=township, booking=booking)
    quota_pool = SlotPool.objects.get(pk=booking.pool_id)
    assert (quota_pool.capacity, quota_pool.booked) == (0, 0)
    assert general_pool(slot).capacity == 4


# --- beds --------------------------------------------------------------------------------------


def test_bed_reserve_release_admit_discharge(world):
    ward = make_ward(world)
    lead = actor_for(world, "lead_clinician")
    first = bed(ward, "01")
    reservation = bed_reserve(actor=lead, bed=first, patient=world.patients["at_a"], hours=4)
    first.refresh_from_db()
    assert first.status == BedStatus.RESERVED
    with pytest.raises(ValidationError, match="已被占用或预留"):
        bed_reserve(actor=lead, bed=first, patient=Patient.objects.create(name="另一位", home_institution=world.a))
    with pytest.raises(ValidationError, match="已有一张"):
        bed_reserve(actor=lead, bed=bed(ward, "02"), patient=world.patients["at_a"])
    assert bed(ward, "02").status == BedStatus.FREE  # the refused reservation left the bed alone
    bed_release(actor=lead, reservation=reservation)
    assert bed(ward, "01").status == BedStatus.FREE
    again = bed_reserve(actor=lead, bed=first, patient=world.patients["at_a"])
    bed_admit(actor=lead, reservation=again)
    assert bed(ward, "01").status == BedStatus.OCCUPIED
    bed_discharge(actor=lead, bed=bed(ward, "01"))
    assert bed(ward, "01").status == BedStatus.FREE


def test_a_closed_bed_cannot_be_reserved(world):
    ward = make_ward(world)
    closed = bed_set_closed(actor=coordinator(world), bed=bed(ward, "03"), closed=True)
    assert closed.status == BedStatus.CLOSED
    with pytest.raises(ValidationError, match="停用"):
        bed_reserve(actor=actor_for(world, "lead_clinician"), bed=closed, patient=world.patients["at_a"])
    with pytest.raises(PermissionDenied):
        bed_set_closed(actor=actor_for(world, "lead_clinician"), bed=closed, closed=False)
    assert not BedReservation.objects.exists()


def test_township_reserves_a_lead_hospital_bed_and_expiry_frees_it(world):
    ward = make_ward(world)
    township = actor_for(world, "township_clinician")
    reservation = bed_reserve(actor=township, bed=bed(ward, "01"), patient=world.patients["at_b"], hours=2)
    assert reservation.for_institution == world.b
    with pytest.raises(ValidationError):
        bed_reserve(actor=township, bed=bed(ward, "02"), patient=world.patients["at_b"], hours=500)
    assert reservations_expire(now=reservation.expires_at - dt.timedelta(minutes=1)) == 0
    assert reservations_expire(now=reservation.expires_at) == 1
    reservation.refresh_from_db()
    assert reservation.status == ReservationStatus.EXPIRED
    assert bed(ward, "01").status == BedStatus.FREE
    assert reservations_expire(now=reservation.expires_at + dt.timedelta(hours=1)) == 0
    with pytest.raises(PermissionDenied):
        bed_reserve(actor=actor_for(world, "bureau_supervisor"), bed=bed(ward, "01"), patient=world.patients["at_b"])


def test_the_tick_command_and_the_tasks_release_and_expire(world):
    from io import StringIO

    from django.core.management import call_command

    from yilian.scheduling import tasks

    clinic = make_clinic(world)
    # A consortium-wide reservation released 30 days ahead: due at once for next week's four slots.
    quota_set(
        actor=coordinator(world),
        schedule=clinic.schedule,
        kind=QuotaKind.CONSORTIUM,
        consortium=world.k1,
        units_per_slot=1,
        release_hours_before=24 * 30,
    )
    day = next_weekday()
    slots_generate(schedule=clinic.schedule, start_date=day, end_date=day)
    ward = make_ward(world)
    reservation = bed_reserve(actor=actor_for(world, "lead_clinician"), bed=bed(ward, "01"), patient=world.patients["at_a"])
    BedReservation.objects.filter(pk=reservation.pk).update(expires_at=timezone.now() - dt.timedelta(minutes=1))
    out = StringIO()
    call_command("scheduling_tick", stdout=out)
    assert "释放预留号源 4 个" in out.getvalue() and "过期床位预留 1 个" in out.getvalue()
    assert set(SlotPool.objects.filter(quota__isnull=True).values_list("capacity", flat=True)) == {2}
    assert bed(ward, "01").status == BedStatus.FREE
    assert tasks.quota_release.call() == 0 and tasks.reservations_expire.call() == 0  # nothing left to do
