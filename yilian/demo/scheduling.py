"""Demo scheduling for the demo county: the consortium leads' clinics, expert clinics and equipment
(CT, MRI, DR, ultrasound, endoscopy, ECG) with realistic capacity for the next two weeks, quotas
reserved for the member townships (号源下沉) and the green channel, wards with live bed occupancy,
and some bookings from the townships through their quota. Deterministic for a seed; everything goes
through yilian.scheduling.services as the referral centre's coordinator, so the demo obeys the
same rules (and constraints) as the pages."""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from yilian.accounts.actors import Actor
from yilian.accounts.models import Membership, Practitioner, User
from yilian.accounts.roles import Role
from yilian.demo import taishan
from yilian.organizations.models import Capability, Consortium, Department, Institution
from yilian.patients.models import Patient
from yilian.scheduling.models import Bed, BedStatus, QuotaKind, Schedule, ScheduleKind
from yilian.scheduling.services import (
    quota_set,
    schedule_create,
    slot_book,
    slot_template_add,
    slots_generate,
    ward_create,
)

DAYS = 14
BOOKINGS_PER_TOWNSHIP = 6


@dataclass(frozen=True)
class _Clinic:
    department: str
    capacity: int  # per 30-minute slot


# 普通门诊 of the lead hospital: Monday–Friday 08:00–12:00 and 14:30–17:30.
_CLINICS = (
    _Clinic("心血管内科", 6),
    _Clinic("呼吸内科", 6),
    _Clinic("神经内科", 5),
    _Clinic("内分泌科", 5),
    _Clinic("消化内科", 5),
    _Clinic("骨科", 6),
)

# Equipment: (capability, name, weekdays, open, close, minutes, capacity, on holidays)
_EQUIPMENT = (
    (Capability.CT, "CT室（64排）", "0123456", dt.time(8), dt.time(18), 20, 2, True),
    (Capability.MRI, "磁共振室（1.5T）", "012345", dt.time(8), dt.time(20), 40, 1, False),
    (Capability.DR, "DR摄片室", "0123456", dt.time(8), dt.time(17), 15, 3, True),
    (Capability.ULTRASOUND, "彩超室", "012345", dt.time(8), dt.time(17), 20, 3, False),
    (Capability.ENDOSCOPY, "胃肠镜室", "01234", dt.time(8), dt.time(12), 30, 2, False),
    (Capability.ECG, "心电图室", "0123456", dt.time(8), dt.time(17), 15, 2, True),
)


def _coordinator(lead: Institution) -> Actor:
    membership = (
        Membership.objects.filter(institution=lead, role=Role.REFERRAL_COORDINATOR).select_related("user", "institution").first()
    )
    if membership is None:
        raise RuntimeError(f"{lead} has no referral coordinator")
    return Actor(user=membership.user, membership=membership)


def _clinician(institution: Institution) -> Actor | None:
    membership = (
        Membership.objects.filter(institution=institution, role__in=[Role.CLINICIAN, Role.VILLAGE_DOCTOR], ended_on__isnull=True)
        .select_related("user", "institution")
        .order_by("pk")
        .first()
    )
    return Actor(user=membership.user, membership=membership) if membership else None


def _lead_doctor(lead: Institution) -> Practitioner | None:
    user = User.objects.filter(username=taishan.PERSONAS[0].username).first()
    if user is None or not Membership.objects.filter(user=user, institution=lead).exists():
        return None
    return Practitioner.objects.filter(user=user).first()


def _generate(schedule: Schedule, today: dt.date, counts: dict[str, int]) -> None:
    result = slots_generate(schedule=schedule, start_date=today, end_date=today + dt.timedelta(days=DAYS - 1))
    counts["号源时段"] += result.created


def _lead_schedules(lead: Institution, consortium: Consortium, actor: Actor, today: dt.date, counts: dict[str, int]) -> None:
    departments = {d.name: d for d in Department.objects.filter(institution=lead)}
    capabilities = set(lead.capabilities.values_list("capability", flat=True))
    for clinic in _CLINICS:
        department = departments.get(clinic.department)
        if department is None:
            continue
        schedule = schedule_create(
            actor=actor,
            institution=lead,
            kind=ScheduleKind.DEPARTMENT,
            name=f"{clinic.department}普通门诊",
            department=department,
            location=f"门诊楼 {clinic.department}诊区",
        )
        for start, end in ((dt.time(8), dt.time(12)), (dt.time(14, 30), dt.time(17, 30))):
            slot_template_add(
                actor=actor,
                schedule=schedule,
                weekdays="01234",
                start_time=start,
                end_time=end,
                slot_minutes=30,
                capacity=clinic.capacity,
                valid_from=today,
            )
        quota_set(actor=actor, schedule=schedule, kind=QuotaKind.CONSORTIUM, consortium=consortium, units_per_slot=2)
        quota_set(actor=actor, schedule=schedule, kind=QuotaKind.GREEN_CHANNEL, units_per_slot=1, release_hours_before=4)
        _generate(schedule, today, counts)
        counts["排班"] += 1
    practitioner = _lead_doctor(lead)
    if practitioner is not None and "心血管内科" in departments:
        expert = schedule_create(
            actor=actor,
            institution=lead,
            kind=ScheduleKind.PRACTITIONER,
            name=f"{practitioner.user}主任专家门诊",
            department=departments["心血管内科"],
            practitioner=practitioner,
            location="门诊楼三楼专家诊区",
        )
        slot_template_add(
            actor=actor,
            schedule=expert,
            weekdays="13",
            start_time=dt.time(8),
            end_time=dt.time(12),
            slot_minutes=30,
            capacity=3,
            valid_from=today,
        )
        townships = Institution.objects.filter(
            consortium_memberships__consortium=consortium, kind="township_centre", is_active=True
        ).order_by("name")[:1]
        for township in townships:
            quota_set(actor=actor, schedule=expert, kind=QuotaKind.INSTITUTION, institution=township, units_per_slot=1)
        _generate(expert, today, counts)
        counts["排班"] += 1
    for capability, name, weekdays, opens, closes, minutes, capacity, on_holidays in _EQUIPMENT:
        if capability not in capabilities:
            continue
        schedule = schedule_create(
            actor=actor, institution=lead, kind=ScheduleKind.EQUIPMENT, name=name, capability=capability, location="医技楼"
        )
        slot_template_add(
            actor=actor,
            schedule=schedule,
            weekdays=weekdays,
            start_time=opens,
            end_time=closes,
            slot_minutes=minutes,
            capacity=capacity,
            valid_from=today,
            on_public_holidays=on_holidays,
        )
        quota_set(actor=actor, schedule=schedule, kind=QuotaKind.CONSORTIUM, consortium=consortium, units_per_slot=1)
        _generate(schedule, today, counts)
        counts["排班"] += 1


def _wards(lead: Institution, actor: Actor, rng: random.Random, counts: dict[str, int]) -> None:
    inpatient = Department.objects.filter(institution=lead, is_clinical=True, beds__gt=0).order_by("code")
    for number, department in enumerate(inpatient, start=1):
        ward = ward_create(
            actor=actor,
            institution=lead,
            name=f"{department.name}病区",
            code=f"W{number:02d}",
            beds=min(department.beds, 60),
            department=department,
        )
        beds = list(ward.beds.order_by("code"))
        occupied = [b.pk for b in beds if rng.random() < 0.82]
        closed = [b.pk for b in beds if b.pk not in occupied and rng.random() < 0.1]
        # Occupancy comes from admissions the demo does not model; set it as the HIS would report it.
        Bed.objects.filter(pk__in=occupied).update(status=BedStatus.OCCUPIED)
        Bed.objects.filter(pk__in=closed).update(status=BedStatus.CLOSED)
        counts["病区"] += 1
        counts["床位"] += len(beds)


def _bookings(lead: Institution, consortium: Consortium, rng: random.Random, counts: dict[str, int]) -> None:
    """Township doctors book a few of their residents into the lead hospital's clinics, through
    their reserved units first and the general pool when those are gone."""
    schedules = list(Schedule.objects.filter(institution=lead, kind=ScheduleKind.DEPARTMENT).order_by("pk"))
    townships = Institution.objects.filter(
        consortium_memberships__consortium=consortium, kind="township_centre", is_active=True
    ).order_by("name")
    now = timezone.now()
    for township in townships:
        actor = _clinician(township)
        if actor is None:
            continue
        held = Q(home_institution=township) | Q(home_institution__parent=township)  # its village clinics' residents too
        patients = list(Patient.objects.filter(held).order_by("pk")[:BOOKINGS_PER_TOWNSHIP])
        for patient in patients:
            schedule = rng.choice(schedules)
            slots = list(schedule.slots.filter(start__gt=now + dt.timedelta(days=1), is_closed=False).order_by("start")[:40])
            if not slots:
                continue
            slot = rng.choice(slots)
            try:
                slot_book(actor=actor, slot=slot, patient=patient, pool="reserved", note="演示：基层预约上级门诊")
            except ValidationError:  # the reserved units of that slot are gone: the general pool then
                try:
                    slot_book(actor=actor, slot=slot, patient=patient, pool="general")
                except ValidationError:  # a full slot in the demo is no reason to stop
                    continue
            counts["预约"] += 1


def demo_scheduling_load(*, seed: int) -> dict[str, int]:
    """Schedules, slots, quotas, wards and bookings for each consortium lead of the demo county."""
    rng = random.Random(f"yilian-demo:{seed}:scheduling")
    counts = {"排班": 0, "号源时段": 0, "病区": 0, "床位": 0, "预约": 0}
    today = timezone.localdate()
    with transaction.atomic():
        for spec in taishan.CONSORTIA:
            consortium = Consortium.objects.filter(name=spec.name).select_related("lead_institution").first()
            if consortium is None:
                continue
            lead = consortium.lead_institution
            if not Membership.objects.filter(institution=lead, role=Role.REFERRAL_COORDINATOR).exists():
                continue
            actor = _coordinator(lead)
            _lead_schedules(lead, consortium, actor, today, counts)
            _wards(lead, actor, rng, counts)
            _bookings(lead, consortium, rng, counts)
    return counts
