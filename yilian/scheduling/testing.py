"""Factories for scheduling tests: a cardiology clinic at the lead hospital with quotas for the
township B and the green channel, and a ward with beds. Built on the shared persona world."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.utils import timezone

from yilian.accounts.actors import Actor
from yilian.accounts.selectors import current_memberships
from yilian.scheduling.models import Bed, Quota, QuotaKind, Schedule, ScheduleKind, Slot, SlotPool, SlotTemplate, Ward
from yilian.scheduling.services import quota_set, schedule_create, slot_template_add, ward_create
from yilian.testing.world import World, add_membership, make_user

MORNING = (dt.time(8, 0), dt.time(12, 0))


def actor_for(world: World, persona: str) -> Actor:
    """The persona's Actor through its first current membership (as the header switcher would)."""
    user = world.user(persona)
    memberships = current_memberships(user)
    return Actor(user=user, membership=memberships[0] if memberships else None, ip_address="10.0.0.8")


def coordinator(world: World) -> Actor:
    """转诊调度员 at the lead hospital A (added to the world once)."""
    if "coordinator" not in world.users:
        user = make_user("coordinator", "周调度")
        add_membership(user, "referral_coordinator", institution=world.a)
        world.users["coordinator"] = user
    return actor_for(world, "coordinator")


@dataclass
class Clinic:
    schedule: Schedule
    template: SlotTemplate
    quota_b: Quota
    green: Quota


def make_clinic(world: World, *, capacity: int = 4, units_b: int = 1, green: int = 1, slot_minutes: int = 60) -> Clinic:
    """心内科普通门诊 at A: Monday–Friday 08:00–12:00, `capacity` per slot; `units_b` reserved for B,
    `green` for the green channel, each released 24 hours before."""
    actor = coordinator(world)
    schedule = schedule_create(
        actor=actor, institution=world.a, kind=ScheduleKind.DEPARTMENT, name="心内科普通门诊", department=world.cardiology
    )
    template = slot_template_add(
        actor=actor,
        schedule=schedule,
        weekdays="01234",
        start_time=MORNING[0],
        end_time=MORNING[1],
        slot_minutes=slot_minutes,
        capacity=capacity,
        valid_from=dt.date(2025, 1, 1),
    )
    quota_b = quota_set(actor=actor, schedule=schedule, kind=QuotaKind.INSTITUTION, institution=world.b, units_per_slot=units_b)
    green_quota = quota_set(actor=actor, schedule=schedule, kind=QuotaKind.GREEN_CHANNEL, units_per_slot=green)
    return Clinic(schedule, template, quota_b, green_quota)


def next_weekday(after: dt.date | None = None, weekday: int = 2, skip_weeks: int = 1) -> dt.date:
    """A plain weekday at least a week ahead (clear of 'now', in tests that book)."""
    day = (after or timezone.localdate()) + dt.timedelta(weeks=skip_weeks)
    while day.weekday() != weekday:
        day += dt.timedelta(days=1)
    return day


def general_pool(slot: Slot) -> SlotPool:
    return slot.pools.get(quota__isnull=True)


def make_ward(world: World, *, beds: int = 3) -> Ward:
    return ward_create(actor=coordinator(world), institution=world.a, name="心内科一病区", code="XN1", beds=beds)


def bed(ward: Ward, code: str = "01") -> Bed:
    return ward.beds.get(code=code)
