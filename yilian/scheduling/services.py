"""Writes of scheduling: schedules and their rules, slot generation, quotas, leave, bookings, beds.

Concurrency (STYLE.md): capacity lives in SlotPool rows with a `booked ≤ capacity` check
constraint; every change of a slot's pools locks the slot row first and then its pools in key
order (`select_for_update`, one lock order everywhere, so no deadlocks), and counters move with
conditional `UPDATE … SET booked = booked + 1 WHERE booked < capacity`. On SQLite `FOR UPDATE` is
ignored, but IMMEDIATE transactions take the write lock at BEGIN, so writers queue. A losing
client gets a ValidationError in Chinese and nothing is changed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from yilian.access.models import AccessGrant, GrantScope, GrantSource
from yilian.access.services import grant_issue
from yilian.accounts.actors import Actor
from yilian.accounts.models import Membership, Practitioner, User
from yilian.accounts.roles import Permission
from yilian.core.rows import fetch, insert, statement_cursor
from yilian.core.services import save_validated, sender_identifier
from yilian.notifications.models import NotificationKind
from yilian.notifications.services import notification_send
from yilian.organizations.access import can_manage_institution, institution_scope_filter
from yilian.organizations.models import Consortium, ConsortiumMembership, Department, Institution
from yilian.patients.access import holds_patient
from yilian.patients.models import Patient
from yilian.scheduling.access import loaded_in_scope
from yilian.scheduling.holidays import DayKind, day_kind
from yilian.scheduling.models import (
    Bed,
    BedReservation,
    BedStatus,
    Booking,
    BookingStatus,
    Leave,
    Quota,
    QuotaKind,
    ReservationStatus,
    Schedule,
    Slot,
    SlotPool,
    SlotTemplate,
    Ward,
)

MAX_GENERATE_DAYS = 366
MAX_WARD_BEDS = 200
MAX_RESERVATION_HOURS = 72
Pool = Literal["general", "reserved", "green_channel"]
POOLS: tuple[str, ...] = ("general", "reserved", "green_channel")


# --- who may do what -------------------------------------------------------------------------


def _require_manage(actor: Actor, institution: Institution) -> None:
    if not can_manage_institution(actor, institution, Permission.SCHEDULE_MANAGE):
        raise PermissionDenied(_("您无权管理该机构的号源与床位。"))


def _require_booking_actor(actor: Actor) -> Institution:
    if not actor.can(Permission.PATIENT_VIEW) or actor.institution is None or actor.api_key is not None:
        raise PermissionDenied(_("您当前的角色无权预约。"))
    return actor.institution


def _require_sees(actor: Actor, institution: Institution) -> None:
    if not Institution.objects.filter(institution_scope_filter(actor), pk=institution.pk).exists():
        raise ValidationError(_("该机构不在您所在医联体内。"), code="scope")


def _require_patient(actor: Actor, patient: Patient) -> None:
    # The usual case, the acting institution holding the record (its own residents), is answered
    # from the patient's home institution without a query; anything else takes the full rule.
    if actor.can(Permission.PATIENT_VIEW) and holds_patient(actor.institution, patient):
        return
    if not Patient.objects.visible_to(actor).filter(pk=patient.pk).exists():
        raise ValidationError(_("您无权为该居民预约。"), code="patient")


def _consortia_of(institution: Institution) -> set[int]:
    return set(ConsortiumMembership.objects.current().filter(institution=institution).values_list("consortium_id", flat=True))


# --- schedules and their rules ---------------------------------------------------------------


def schedule_create(
    *,
    actor: Actor,
    institution: Institution,
    kind: str,
    name: str,
    department: Department | None = None,
    practitioner: Practitioner | None = None,
    capability: str = "",
    location: str = "",
) -> Schedule:
    """Open a schedule (department clinic, practitioner clinic or equipment) at an institution the
    actor manages."""
    _require_manage(actor, institution)
    if department is not None and department.institution_id != institution.pk:
        raise ValidationError({"department": _("科室不属于该机构。")})
    if practitioner is not None and not Membership.objects.filter(user=practitioner.user, institution=institution).exists():
        raise ValidationError({"practitioner": _("该医生不在该机构任职。")})
    schedule = Schedule(
        institution=institution,
        kind=kind,
        name=name,
        department=department,
        practitioner=practitioner,
        capability=capability,
        location=location,
    )
    with transaction.atomic():
        return save_validated(schedule)


def slot_template_add(
    *,
    actor: Actor,
    schedule: Schedule,
    weekdays: str,
    start_time: dt.time,
    end_time: dt.time,
    slot_minutes: int,
    capacity: int,
    valid_from: dt.date,
    valid_until: dt.date | None = None,
    on_public_holidays: bool = False,
    on_makeup_workdays: bool = True,
) -> SlotTemplate:
    """Add a recurring rule to a schedule; slots come from `slots_generate`."""
    _require_manage(actor, schedule.institution)
    template = SlotTemplate(
        schedule=schedule,
        weekdays="".join(sorted(set(weekdays))),
        start_time=start_time,
        end_time=end_time,
        slot_minutes=slot_minutes,
        capacity=capacity,
        valid_from=valid_from,
        valid_until=valid_until,
        on_public_holidays=on_public_holidays,
        on_makeup_workdays=on_makeup_workdays,
    )
    with transaction.atomic():
        return save_validated(template)


def quota_set(
    *,
    actor: Actor,
    schedule: Schedule,
    kind: str,
    units_per_slot: int,
    institution: Institution | None = None,
    consortium: Consortium | None = None,
    release_hours_before: int = 24,
) -> Quota:
    """Reserve units of every slot generated from now on for a member institution, a consortium's
    members or the green channel (号源下沉). The target must belong to one of the schedule's consortia."""
    _require_manage(actor, schedule.institution)
    own = _consortia_of(schedule.institution)
    if kind == QuotaKind.INSTITUTION:
        if institution is None or not (_consortia_of(institution) & own) or institution.pk == schedule.institution_id:
            raise ValidationError({"institution": _("预留机构须为本医联体的其他成员单位。")})
    elif kind == QuotaKind.CONSORTIUM and (consortium is None or consortium.pk not in own):
        raise ValidationError({"consortium": _("只能为本机构所在的医联体预留号源。")})
    quota = Quota(
        schedule=schedule,
        kind=kind,
        institution=institution if kind == QuotaKind.INSTITUTION else None,
        consortium=consortium if kind == QuotaKind.CONSORTIUM else None,
        units_per_slot=units_per_slot,
        release_hours_before=release_hours_before,
    )
    with transaction.atomic():
        return save_validated(quota)


# --- slot generation ---------------------------------------------------------------------------


@dataclass
class GenerationResult:
    created: int = 0
    closed_by_leave: int = 0
    unknown_calendar_years: set[int] = field(default_factory=set)


def template_runs_on(template: SlotTemplate, day: dt.date, kind: DayKind) -> bool:
    """Whether a rule opens slots on `day`: its weekdays on ordinary days; on a public holiday only
    when it runs on holidays; on a make-up workday when it runs on make-up days and on any weekday."""
    if not template.applies_on(day):
        return False
    if kind == DayKind.HOLIDAY:
        return template.on_public_holidays and str(day.weekday()) in template.weekdays
    if kind == DayKind.MAKEUP_WORKDAY:
        return template.on_makeup_workdays and any(d in template.weekdays for d in "01234")
    return str(day.weekday()) in template.weekdays


def _slot_times(template: SlotTemplate, day: dt.date) -> Iterable[tuple[dt.datetime, dt.datetime]]:
    tz = timezone.get_current_timezone()
    start = dt.datetime.combine(day, template.start_time, tzinfo=tz)
    close = dt.datetime.combine(day, template.end_time, tzinfo=tz)
    step = dt.timedelta(minutes=template.slot_minutes)
    while start + step <= close:
        yield start, start + step
        start += step


def _leave_periods(schedule: Schedule, first: dt.datetime, last: dt.datetime) -> list[Leave]:
    if schedule.practitioner_id is None:
        return []
    return list(Leave.objects.filter(practitioner_id=schedule.practitioner_id, starts_at__lt=last, ends_at__gt=first))


def _pools_for(slot: Slot, capacity: int, quotas: list[Quota]) -> list[SlotPool]:
    """Split a slot's capacity: quotas in order take their units while any remain, the general
    pool keeps the rest (it always exists, possibly empty, so released units have a home)."""
    pools = []
    remaining = capacity
    for quota in quotas:
        units = min(quota.units_per_slot, remaining)
        if units <= 0:
            break
        remaining -= units
        release_at = slot.start - dt.timedelta(hours=quota.release_hours_before)
        pools.append(SlotPool(slot=slot, quota=quota, capacity=units, release_at=release_at))
    pools.append(SlotPool(slot=slot, quota=None, capacity=remaining))
    return pools


def slots_generate(*, schedule: Schedule, start_date: dt.date, end_date: dt.date) -> GenerationResult:
    """Create the slots of `schedule` from its rules for every day from `start_date` to `end_date`
    (inclusive), skipping public holidays (unless a rule runs on them), opening make-up workdays,
    and closing slots in the practitioner's leave. Idempotent: slots that exist are left alone."""
    if end_date < start_date:
        raise ValidationError({"end_date": _("结束日期不能早于开始日期。")})
    if (end_date - start_date).days >= MAX_GENERATE_DAYS:
        raise ValidationError({"end_date": _("一次最多生成 %(days)d 天的号源。") % {"days": MAX_GENERATE_DAYS}})
    result = GenerationResult()
    templates = list(schedule.templates.all())
    quotas = list(schedule.quotas.filter(is_active=True).order_by("kind", "pk"))
    tz = timezone.get_current_timezone()
    first = dt.datetime.combine(start_date, dt.time.min, tzinfo=tz)
    last = dt.datetime.combine(end_date + dt.timedelta(days=1), dt.time.min, tzinfo=tz)
    leaves = _leave_periods(schedule, first, last)
    with transaction.atomic():
        existing = set(schedule.slots.filter(start__gte=first, start__lt=last).values_list("start", flat=True))
        new: list[tuple[Slot, int]] = []
        day = start_date
        while day <= end_date:
            kind, known = day_kind(day)
            if not known:
                result.unknown_calendar_years.add(day.year)
            for template in templates:
                if not template_runs_on(template, day, kind):
                    continue
                for start, end in _slot_times(template, day):
                    if start in existing:
                        continue
                    existing.add(start)
                    on_leave = next((leave for leave in leaves if leave.starts_at < end and leave.ends_at > start), None)
                    slot = Slot(
                        schedule=schedule,
                        template=template,
                        start=start,
                        end=end,
                        is_closed=on_leave is not None,
                        closed_reason=_("医生停诊：%(reason)s") % {"reason": on_leave.reason} if on_leave else "",
                    )
                    new.append((slot, template.capacity))
                    result.closed_by_leave += on_leave is not None
            day += dt.timedelta(days=1)
        Slot.objects.bulk_create([slot for slot, _capacity in new], batch_size=500)
        SlotPool.objects.bulk_create(
            [pool for slot, capacity in new for pool in _pools_for(slot, capacity, quotas)], batch_size=500
        )
    result.created = len(new)
    return result


# --- leave -------------------------------------------------------------------------------------


def leave_record(*, actor: Actor, practitioner: Practitioner, starts_at: dt.datetime, ends_at: dt.datetime, reason: str) -> Leave:
    """Record a practitioner's absence: their slots in it close, and the bookings on them are
    cancelled (the bookers are told), so nobody travels to an empty clinic."""
    institutions = Institution.objects.filter(
        Q(schedules__practitioner=practitioner) | Q(staff_memberships__user=practitioner.user)
    ).distinct()
    if not any(can_manage_institution(actor, institution, Permission.SCHEDULE_MANAGE) for institution in institutions):
        raise PermissionDenied(_("您无权登记该医生的停诊。"))
    leave = Leave(practitioner=practitioner, starts_at=starts_at, ends_at=ends_at, reason=reason, recorded_by=actor.user)
    with transaction.atomic():
        save_validated(leave)
        slot_ids = list(
            Slot.objects.filter(
                schedule__practitioner=practitioner, start__lt=ends_at, end__gt=starts_at, is_closed=False
            ).values_list("pk", flat=True)
        )
        closed_reason = _("医生停诊：%(reason)s") % {"reason": reason}
        for slot_id in slot_ids:
            _slot_close(slot_id=slot_id, reason=closed_reason)
    return leave


def _slot_close(*, slot_id: int, reason: str) -> None:
    slot = Slot.objects.select_for_update().get(pk=slot_id)
    list(SlotPool.objects.select_for_update().filter(slot_id=slot_id).order_by("pk"))
    Slot.objects.filter(pk=slot_id).update(is_closed=True, closed_reason=reason[:200])
    bookings = list(Booking.objects.filter(slot_id=slot_id, status=BookingStatus.BOOKED).select_related("booked_by"))
    now = timezone.now()
    for booking in bookings:
        Booking.objects.filter(pk=booking.pk).update(
            status=BookingStatus.CANCELLED, cancelled_at=now, cancel_reason=reason[:200], updated_at=now
        )
        SlotPool.objects.filter(pk=booking.pool_id).update(booked=F("booked") - 1)
    recipients: list[User] = [b.booked_by for b in bookings if b.booked_by is not None]
    if recipients:
        notification_send(
            recipients=recipients,
            kind=NotificationKind.SYSTEM,
            title=_("预约已因停诊取消：%(slot)s") % {"slot": slot},
            link=reverse("scheduling:booking_list"),
            body=reason,
        )


# --- bookings ------------------------------------------------------------------------------------


def _eligible_quota(quota: Quota | None, institution: Institution, consortia: Callable[[], set[int]]) -> bool:
    if quota is None:
        return False
    if quota.kind == QuotaKind.INSTITUTION:
        return quota.institution_id in {institution.pk, institution.parent_id}
    if quota.kind == QuotaKind.CONSORTIUM:
        return quota.consortium_id in consortia()
    return False


def slot_book(
    *,
    actor: Actor,
    slot: Slot,
    patient: Patient,
    pool: Pool = "general",
    for_institution: Institution | None = None,
    note: str = "",
) -> Booking:
    """Book one unit of `slot` for `patient` from a pool: the general pool, the quota reserved for
    `for_institution` (by default the acting institution; a coordinator of the schedule's
    institution may book on a member's behalf, as when accepting a referral), or the green channel.
    Never a double booking (one open booking per slot and patient) or an overbooking.

    The booking keeps the given `slot` (and its loaded schedule) and the chosen pool with its quota,
    so an answer can show them without reading them again."""
    acting = _require_booking_actor(actor)
    if pool not in POOLS:
        raise ValidationError({"pool": _("号池无效，可选：general、reserved、green_channel。")})
    schedule = slot.schedule
    if not loaded_in_scope(actor, slot):
        _require_sees(actor, schedule.institution)
    _require_patient(actor, patient)
    institution = for_institution or acting
    if institution.pk != acting.pk and not can_manage_institution(actor, schedule.institution, Permission.SCHEDULE_MANAGE):
        raise ValidationError({"for_institution": _("只有号源所在机构的调度员可以代其他机构预约。")})
    if len(note) > 200:
        raise ValidationError({"note": _("备注最多 200 个字。")})
    consortia: list[set[int]] = []

    def consortia_of_institution() -> set[int]:
        if not consortia:
            consortia.append(_consortia_of(institution))
        return consortia[0]

    with transaction.atomic():
        # Every booking of a slot locks the slot first, so what the statements after that lock read
        # holds until the end. A refusal decided here leaves the block without an exception: nothing
        # is written yet, and the empty transaction commits instead of rolling back (a rollback also
        # drops the connection's prepared statements, see core.rows.statement_cursor).
        # Whether the patient already holds an open booking of the slot is read along with the lock,
        # from that statement's snapshot, which may predate its wait for the lock: the same patient
        # booked by a concurrent request that committed meanwhile is caught by the insert's ON
        # CONFLICT below (and that rare case rolls back).
        locked = fetch(
            Slot,
            "t0.id = %s",
            [slot.pk],
            for_update=True,
            extra={_PATIENT_BOOKED: _PATIENT_BOOKED_SQL},
            extra_params=[patient.pk],
        )[0]
        # Only the pool rows are locked (the quota is read along, it does not change here).
        pools = fetch(SlotPool, "t0.slot_id = %s", [slot.pk], related=("quota",), for_update=True, tail="ORDER BY t0.id")
        chosen = _choose_pool(locked, schedule, pools, pool, institution, consortia_of_institution)
        if isinstance(chosen, SlotPool) and _take_unit(chosen):
            booking = Booking(
                slot=slot,
                pool=chosen,
                patient=patient,
                for_institution=institution,
                booked_by=actor.user,
                note=note,
            )
            if not insert(booking, skip_conflict=True):  # the same patient, committed while this one waited
                raise _already_booked()
            _appointment_grant_open(
                patient=patient, institution=schedule.institution, until=locked.end, reference=booking.uuid, actor=actor
            )
            return booking
    raise chosen if isinstance(chosen, ValidationError) else _slot_full()


# The patient's open booking of the locked slot, read along with the lock.
_PATIENT_BOOKED = "patient_booked"
_PATIENT_BOOKED_SQL = (
    f"EXISTS (SELECT 1 FROM {Booking._meta.db_table} b"  # noqa: S608 - names from the model
    f" WHERE b.slot_id = t0.id AND b.patient_id = %s AND b.status = '{BookingStatus.BOOKED.value}')"
)


def _slot_full() -> ValidationError:
    return ValidationError(_("该号源已约满，请选择其他时间。"), code="conflict")


def _already_booked() -> ValidationError:
    return ValidationError(_("该居民已预约此号源，不能重复预约。"), code="conflict")


def _choose_pool(
    locked: Slot,
    schedule: Schedule,
    pools: list[SlotPool],
    pool: Pool,
    institution: Institution,
    consortia: Callable[[], set[int]],
) -> SlotPool | ValidationError:
    """The pool a booking takes its unit from (it has one free), or why the slot can't be booked."""
    if locked.is_closed or not schedule.is_active:
        return ValidationError(_("该号源已停诊，不能预约。"), code="closed")
    if locked.end <= timezone.now():
        return ValidationError(_("该号源时间已过，不能预约。"), code="past")
    if pool == "general":
        candidates = [p for p in pools if p.quota is None]
    elif pool == "green_channel":
        candidates = [p for p in pools if p.quota is not None and p.quota.kind == QuotaKind.GREEN_CHANNEL]
        candidates = [p for p in candidates if p.released_at is None]
        if not candidates:
            return ValidationError(_("该号源没有绿色通道预留。"), code="pool")
    else:
        candidates = [p for p in pools if p.released_at is None and _eligible_quota(p.quota, institution, consortia)]
        if not candidates:
            return ValidationError(_("%(institution)s 不在该号源的预留范围内。") % {"institution": institution}, code="pool")
        # The institution's own reservation before the consortium-wide one.
        candidates.sort(key=lambda p: p.quota is None or p.quota.kind != QuotaKind.INSTITUTION)
    chosen = next((p for p in candidates if p.booked < p.capacity), None)
    if chosen is None:
        return _slot_full()
    if getattr(locked, _PATIENT_BOOKED):
        return _already_booked()
    return chosen


def _take_unit(pool: SlotPool) -> bool:
    """Count one more unit booked in `pool` unless it is full (the caller holds its lock): one
    conditional UPDATE in plain SQL."""
    connection = transaction.get_connection()
    quote = connection.ops.quote_name
    table, booked, capacity = quote(SlotPool._meta.db_table), quote("booked"), quote("capacity")
    with statement_cursor(connection) as cursor:
        cursor.execute(
            f"UPDATE {table} SET {booked} = {booked} + 1 WHERE {quote('id')} = %s AND {booked} < {capacity}",  # noqa: S608 - names from the model
            [pool.pk],
        )
        taken = cursor.rowcount == 1
    if taken:
        pool.booked += 1
    return taken


# --- the receiving institution's access to a booked patient ---------------------------------------
#
# A booking or bed reservation is a care relationship: the institution that will see the patient gets
# an expiring summary grant (access.AccessGrant, source "appointment") so its staff can list and read
# who is coming. It lasts until SCHEDULING_GRANT_DAYS after the slot ends or the reservation expires;
# cancelling or releasing revokes it. No grant when that institution already holds the record.


def _appointment_grant_open(
    *, patient: Patient, institution: Institution, until: dt.datetime, reference: object, actor: Actor
) -> None:
    home = patient.home_institution
    if institution.pk in (home.pk, home.parent_id):
        return
    grant_issue(
        patient=patient,
        source=GrantSource.APPOINTMENT,
        source_reference=str(reference),
        grantee_institution=institution,
        scope=GrantScope.SUMMARY,
        expires_at=until + dt.timedelta(days=settings.SCHEDULING_GRANT_DAYS),
        granted_by=actor.user,
        acting_institution=actor.institution,
        validate=False,
    )


def _appointment_grant_close(reference: object) -> None:
    AccessGrant.objects.filter(source=GrantSource.APPOINTMENT, source_reference=str(reference), revoked_at__isnull=True).update(
        revoked_at=timezone.now(), updated_at=timezone.now()
    )


def _give_back(booking: Booking) -> None:
    """Return a booking's unit to its pool; a quota pool already released hands it to the general
    pool, as its other unused units went. Caller holds the slot's locks."""
    pool = SlotPool.objects.select_for_update().get(pk=booking.pool_id)
    if pool.quota_id is not None and pool.released_at is not None:
        SlotPool.objects.filter(pk=pool.pk).update(booked=F("booked") - 1, capacity=F("capacity") - 1)
        SlotPool.objects.filter(slot_id=pool.slot_id, quota__isnull=True).update(capacity=F("capacity") + 1)
    else:
        SlotPool.objects.filter(pk=pool.pk).update(booked=F("booked") - 1)


def _lock_slot(slot_id: int) -> Slot:
    slot = Slot.objects.select_for_update().get(pk=slot_id)
    list(SlotPool.objects.select_for_update().filter(slot_id=slot_id).order_by("pk"))
    return slot


def _end_booking(booking: Booking, status: str, reason: str) -> bool:
    now = timezone.now()
    return bool(
        Booking.objects.filter(pk=booking.pk, status=BookingStatus.BOOKED).update(
            status=status, cancelled_at=now, cancel_reason=reason[:200], updated_at=now
        )
    )


def booking_cancel(*, actor: Actor, booking: Booking, reason: str = "") -> Booking:
    """Cancel a booking before its slot ends; the unit goes back to the pool it came from. The
    booking institution or the schedule's institution may cancel."""
    acting = _require_booking_actor(actor)
    if acting.pk not in (booking.for_institution_id, booking.slot.schedule.institution_id):
        raise PermissionDenied(_("您无权取消该预约。"))
    if len(reason) > 200:
        raise ValidationError({"reason": _("取消原因最多 200 个字。")})
    with transaction.atomic():
        slot = _lock_slot(booking.slot_id)
        if slot.end <= timezone.now():
            raise ValidationError(_("号源时间已过，不能取消；未到诊请标记爽约。"), code="past")
        if not _end_booking(booking, BookingStatus.CANCELLED, reason):
            raise ValidationError(_("该预约已不是“已预约”状态。"), code="state")
        _give_back(booking)
        _appointment_grant_close(booking.uuid)
    booking.refresh_from_db()
    return booking


def booking_mark_no_show(*, actor: Actor, booking: Booking) -> Booking:
    """爽约: the patient did not come. Only the schedule's institution marks it, once the slot has
    started; the unit goes back to its pool for walk-ins until the slot ends."""
    acting = _require_booking_actor(actor)
    if acting.pk != booking.slot.schedule.institution_id:
        raise PermissionDenied(_("只有接诊机构可以标记爽约。"))
    with transaction.atomic():
        slot = _lock_slot(booking.slot_id)
        if slot.start > timezone.now():
            raise ValidationError(_("号源尚未开始，不能标记爽约。"), code="early")
        if not _end_booking(booking, BookingStatus.NO_SHOW, ""):
            raise ValidationError(_("该预约已不是“已预约”状态。"), code="state")
        _give_back(booking)
    booking.refresh_from_db()
    return booking


def quota_release(*, now: dt.datetime | None = None) -> int:
    """Hand the unused units of every quota whose release time has come to the general pool of its
    slot (号源释放). Returns the number of units released. Safe to run concurrently and repeatedly."""
    now = now or timezone.now()
    slot_ids = list(
        SlotPool.objects.filter(quota__isnull=False, released_at__isnull=True, release_at__lte=now, slot__end__gt=now)
        .values_list("slot_id", flat=True)
        .distinct()
    )
    released = 0
    for slot_id in slot_ids:
        with transaction.atomic():
            _lock_slot(slot_id)
            due = SlotPool.objects.filter(slot_id=slot_id, quota__isnull=False, released_at__isnull=True, release_at__lte=now)
            for pool in due:
                free = pool.capacity - pool.booked
                SlotPool.objects.filter(pk=pool.pk).update(capacity=F("booked"), released_at=now)
                SlotPool.objects.filter(slot_id=slot_id, quota__isnull=True).update(capacity=F("capacity") + free)
                released += free
    return released


# --- wards and beds -------------------------------------------------------------------------------


def ward_create(
    *,
    actor: Actor,
    institution: Institution,
    name: str,
    code: str,
    beds: int,
    department: Department | None = None,
) -> Ward:
    """Open a ward with `beds` free beds numbered 01, 02 …"""
    _require_manage(actor, institution)
    if not 0 <= beds <= MAX_WARD_BEDS:
        raise ValidationError({"beds": _("床位数应在 0 到 %(max)d 之间。") % {"max": MAX_WARD_BEDS}})
    if department is not None and department.institution_id != institution.pk:
        raise ValidationError({"department": _("科室不属于该机构。")})
    with transaction.atomic():
        ward = save_validated(Ward(institution=institution, department=department, name=name, code=code))
        Bed.objects.bulk_create([Bed(ward=ward, code=f"{n:02d}") for n in range(1, beds + 1)])
    return ward


def bed_set_closed(*, actor: Actor, bed: Bed, closed: bool) -> Bed:
    """Close a free bed (maintenance, infection control) or reopen a closed one."""
    _require_manage(actor, bed.ward.institution)
    source, target = (BedStatus.FREE, BedStatus.CLOSED) if closed else (BedStatus.CLOSED, BedStatus.FREE)
    with transaction.atomic():
        if not Bed.objects.filter(pk=bed.pk, status=source).update(status=target, updated_at=timezone.now()):
            raise ValidationError(_("只有空闲床位可以停用，只有停用床位可以启用。"), code="state")
    bed.refresh_from_db()
    return bed


def _reservation_source(system: str, identifier: str) -> tuple[str, str]:
    system, identifier = (system or "").strip(), (identifier or "").strip()
    if len(system) > 200 or len(identifier) > 64 or "\x00" in system + identifier:
        raise ValidationError({"source_identifier": _("发送方床位预留标识无效：标识系统最多 200 个字符，标识最多 64 个字符。")})
    if system and not identifier:
        raise ValidationError({"source_identifier": _("请填写发送方床位预留标识。")})
    return system, identifier


def bed_reserve(
    *,
    actor: Actor,
    bed: Bed,
    patient: Patient,
    hours: int = 24,
    expires_at: dt.datetime | None = None,
    for_institution: Institution | None = None,
    note: str = "",
    source_system: str = "",
    source_identifier: str = "",
) -> BedReservation:
    """Hold a free bed for a patient for `hours`, or until `expires_at`, at most
    MAX_RESERVATION_HOURS from now; `reservations_expire` frees it after. `source_*`: the sending
    system's own identifier of the reservation (see `bed_reserve_once`)."""
    acting = _require_booking_actor(actor)
    ward_institution = bed.ward.institution
    _require_sees(actor, ward_institution)
    _require_patient(actor, patient)
    institution = for_institution or acting
    if institution.pk != acting.pk and not can_manage_institution(actor, ward_institution, Permission.SCHEDULE_MANAGE):
        raise ValidationError({"for_institution": _("只有床位所在机构的调度员可以代其他机构预留。")})
    now = timezone.now()
    if expires_at is None:
        if not 1 <= hours <= MAX_RESERVATION_HOURS:
            raise ValidationError({"hours": _("预留时长应在 1 到 %(max)d 小时之间。") % {"max": MAX_RESERVATION_HOURS}})
        expires_at = now + dt.timedelta(hours=hours)
    elif not now < expires_at <= now + dt.timedelta(hours=MAX_RESERVATION_HOURS):
        raise ValidationError({"expires_at": _("预留到期时间应在现在之后 %(max)d 小时之内。") % {"max": MAX_RESERVATION_HOURS}})
    if len(note) > 200:
        raise ValidationError({"note": _("备注最多 200 个字。")})
    if "\x00" in note:
        raise ValidationError({"note": _("含有无效字符。")})
    source_system, source_identifier = _reservation_source(source_system, source_identifier)
    with transaction.atomic():
        locked = Bed.objects.select_for_update().get(pk=bed.pk)
        if locked.status == BedStatus.CLOSED or not bed.ward.is_active:
            raise ValidationError(_("该床位已停用，不能预留。"), code="closed")
        if locked.status != BedStatus.FREE or not Bed.objects.filter(pk=bed.pk, status=BedStatus.FREE).update(
            status=BedStatus.RESERVED, updated_at=timezone.now()
        ):
            raise ValidationError(_("该床位已被占用或预留，请选择其他床位。"), code="conflict")
        reservation = BedReservation(
            bed=locked,
            patient=patient,
            for_institution=institution,
            reserved_by=actor.user,
            expires_at=expires_at,
            note=note,
            source_institution=acting if source_identifier else None,
            source_system=source_system,
            source_identifier=source_identifier,
        )
        try:
            with transaction.atomic():
                reservation.save()
        except IntegrityError as exc:
            if source_identifier and _reservation_by_source(acting, source_system, source_identifier) is not None:
                message = _("发送方床位预留标识 %(identifier)s 已被使用。") % {
                    "identifier": sender_identifier(source_system, source_identifier)
                }
                raise ValidationError(message, code="conflict") from exc
            raise ValidationError(_("该居民已有一张预留床位。"), code="conflict") from exc
        _appointment_grant_open(
            patient=patient, institution=ward_institution, until=reservation.expires_at, reference=reservation.uuid, actor=actor
        )
    return reservation


def _reservation_by_source(institution: Institution, system: str, identifier: str) -> BedReservation | None:
    return (
        BedReservation.objects.select_related("bed")
        .filter(source_institution=institution, source_system=system, source_identifier=identifier)
        .first()
    )


def bed_reserve_once(
    *,
    actor: Actor,
    bed: Bed,
    patient: Patient,
    source_system: str,
    source_identifier: str,
    expires_at: dt.datetime | None = None,
    note: str = "",
    conditional: bool = False,
) -> tuple[BedReservation, bool]:
    """`bed_reserve` for a member system that names its own identifier of the reservation (FHIR
    Appointment.identifier): sending the same reservation again returns the one it made, unchanged
    (created False), whatever has happened to it since; the identifier on a different reservation
    (another bed, patient, note, expiry when one is named, or practitioner) is a conflict.
    Identifiers are per sending (acting) institution; a send racing another for the same bed or
    identifier finds the reservation the other made. `conditional` (FHIR If-None-Exist) returns the
    reservation the identifier names whatever the content."""
    institution = _require_booking_actor(actor)
    source_system, source_identifier = _reservation_source(source_system, source_identifier)
    if not source_identifier:
        raise ValidationError({"source_identifier": _("请填写发送方床位预留标识。")})
    existing = _reservation_by_source(institution, source_system, source_identifier)
    if existing is None:
        try:
            reservation = bed_reserve(
                actor=actor,
                bed=bed,
                patient=patient,
                expires_at=expires_at,
                note=note,
                source_system=source_system,
                source_identifier=source_identifier,
            )
        except ValidationError as exc:
            # The bed taken, or the identifier used, by a send that got there first: its reservation.
            if getattr(exc, "code", None) != "conflict":
                raise
            existing = _reservation_by_source(institution, source_system, source_identifier)
            if existing is None:
                raise
        else:
            return reservation, True
    differences = [] if conditional else _reservation_differences(existing, actor, bed, patient, expires_at, note)
    if differences:
        raise ValidationError(
            _("发送方床位预留标识 %(identifier)s 已用于另一床位预留，本次内容不同（%(fields)s）；新的预留请使用新的标识。")
            % {"identifier": sender_identifier(source_system, source_identifier), "fields": "、".join(differences)},
            code="conflict",
        )
    return existing, False


def _reservation_differences(
    reservation: BedReservation, actor: Actor, bed: Bed, patient: Patient, expires_at: dt.datetime | None, note: str
) -> list[str]:
    """The fields in which a resent reservation differs from the one its identifier names (labels)."""
    wanted: dict[str, object] = {
        "bed": bed.pk,
        "patient": patient.pk,
        "note": note.strip(),
        "reserved_by": actor.user.pk if actor.user is not None else None,
    }
    current: dict[str, object] = {
        "bed": reservation.bed_id,
        "patient": reservation.patient_id,
        "note": reservation.note.strip(),
        "reserved_by": reservation.reserved_by_id,
    }
    if expires_at is not None:
        wanted["expires_at"], current["expires_at"] = expires_at, reservation.expires_at
    fields = [BedReservation._meta.get_field(name) for name in wanted if wanted[name] != current[name]]
    return [str(getattr(field, "verbose_name", field.name)) for field in fields]


def _end_reservation(reservation: BedReservation, status: str, bed_status: str) -> bool:
    now = timezone.now()
    Bed.objects.select_for_update().get(pk=reservation.bed_id)
    if not BedReservation.objects.filter(pk=reservation.pk, status=ReservationStatus.ACTIVE).update(
        status=status, ended_at=now, updated_at=now
    ):
        return False
    Bed.objects.filter(pk=reservation.bed_id, status=BedStatus.RESERVED).update(status=bed_status, updated_at=now)
    return True


def _require_reservation_side(actor: Actor, reservation: BedReservation) -> None:
    _require_booking_actor(actor)
    sides = {reservation.for_institution_id, reservation.bed.ward.institution_id}
    if actor.institution is None or actor.institution.pk not in sides:
        raise PermissionDenied(_("您无权处理该床位预留。"))


def bed_release(*, actor: Actor, reservation: BedReservation) -> BedReservation:
    """Give a reserved bed back (the patient will not come); the bed is free again."""
    _require_reservation_side(actor, reservation)
    with transaction.atomic():
        if not _end_reservation(reservation, ReservationStatus.RELEASED, BedStatus.FREE):
            raise ValidationError(_("该床位预留已结束。"), code="state")
        _appointment_grant_close(reservation.uuid)
    reservation.refresh_from_db()
    return reservation


def bed_admit(*, actor: Actor, reservation: BedReservation) -> BedReservation:
    """The patient arrived: the reserved bed becomes occupied. Only the ward's institution admits."""
    _require_reservation_side(actor, reservation)
    if actor.institution is None or actor.institution.pk != reservation.bed.ward.institution_id:
        raise PermissionDenied(_("只有床位所在机构可以办理入住。"))
    with transaction.atomic():
        if not _end_reservation(reservation, ReservationStatus.ADMITTED, BedStatus.OCCUPIED):
            raise ValidationError(_("该床位预留已结束。"), code="state")
    reservation.refresh_from_db()
    return reservation


def bed_discharge(*, actor: Actor, bed: Bed) -> Bed:
    """The patient left: an occupied bed is free again."""
    _require_booking_actor(actor)
    if actor.institution is None or actor.institution.pk != bed.ward.institution_id:
        raise PermissionDenied(_("只有床位所在机构可以办理出院。"))
    with transaction.atomic():
        if not Bed.objects.filter(pk=bed.pk, status=BedStatus.OCCUPIED).update(status=BedStatus.FREE, updated_at=timezone.now()):
            raise ValidationError(_("该床位未被占用。"), code="state")
    bed.refresh_from_db()
    return bed


def reservations_expire(*, now: dt.datetime | None = None) -> int:
    """Free every bed whose reservation has passed its expiry; returns how many expired."""
    now = now or timezone.now()
    expired = 0
    for reservation in BedReservation.objects.filter(status=ReservationStatus.ACTIVE, expires_at__lte=now).order_by("pk"):
        with transaction.atomic():
            expired += _end_reservation(reservation, ReservationStatus.EXPIRED, BedStatus.FREE)
    return expired


# --- on behalf of a care workflow ----------------------------------------------------------------


def booking_release_for(*, booking: Booking, reason: str) -> bool:
    """Give a future booking's unit back for a care workflow that has already checked its own side
    (a referral cancelled by its sender, or re-booked by its receiver). False when there was
    nothing to give back (the booking ended, or its slot has begun)."""
    with transaction.atomic():
        slot = _lock_slot(booking.slot_id)
        if slot.start <= timezone.now() or not _end_booking(booking, BookingStatus.CANCELLED, reason):
            return False
        _give_back(booking)
        _appointment_grant_close(booking.uuid)
    return True


def reservation_release_for(*, reservation: BedReservation) -> bool:
    """Free a reserved bed for a care workflow that has already checked its own side."""
    with transaction.atomic():
        released = _end_reservation(reservation, ReservationStatus.RELEASED, BedStatus.FREE)
        if released:
            _appointment_grant_close(reservation.uuid)
        return released


def reservation_admit_for(*, reservation: BedReservation) -> bool:
    """The patient of a reserved bed was admitted (seen in the shared record): the bed is occupied."""
    with transaction.atomic():
        return _end_reservation(reservation, ReservationStatus.ADMITTED, BedStatus.OCCUPIED)
