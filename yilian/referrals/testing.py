"""Factories for referral tests, on the shared persona world: an up referral from township B to the
lead hospital A's cardiology, a coordinator at A, a clinic with slots and a ward with beds."""

from __future__ import annotations

import datetime as dt

from yilian.accounts.actors import Actor
from yilian.referrals.models import Direction, Referral, Urgency
from yilian.referrals.services import referral_submit
from yilian.scheduling.models import Slot
from yilian.scheduling.services import slots_generate
from yilian.scheduling.testing import actor_for, coordinator, make_clinic, next_weekday
from yilian.testing.world import World


def township(world: World) -> Actor:
    """黄晓敏 acting at township B (her first membership)."""
    return actor_for(world, "township_clinician")


def lead(world: World) -> Actor:
    """李志强, cardiologist at the lead hospital A."""
    return actor_for(world, "lead_clinician")


def refer_up(world: World, *, urgency: str = Urgency.ROUTINE, patient_key: str = "at_b", **extra: object) -> Referral:
    """An up referral of patient `at_b` from B to A's cardiology."""
    return referral_submit(
        actor=township(world),
        patient=world.patients[patient_key],
        direction=Direction.UP,
        urgency=urgency,
        destination_institution=world.a,
        destination_department=world.cardiology,
        reason="血压控制不佳，连续两次随访未达标",
        diagnosis_name="原发性高血压",
        diagnosis_code="I10",
        **extra,  # type: ignore[arg-type]
    )


def refer_down(world: World) -> Referral:
    """A down referral of patient `at_a` from A back to township B."""
    return referral_submit(
        actor=lead(world),
        patient=world.patients["at_a"],
        direction=Direction.DOWN,
        destination_institution=world.b,
        reason="病情稳定，转回基层随访",
        diagnosis_name="原发性高血压",
        diagnosis_code="I10",
    )


def clinic_slot(world: World) -> Slot:
    """The first slot of A's cardiology clinic a week ahead (capacity 4: 1 for B, 1 green channel)."""
    clinic = make_clinic(world)
    day = next_weekday()
    slots_generate(schedule=clinic.schedule, start_date=day, end_date=day)
    return Slot.objects.filter(schedule=clinic.schedule).order_by("start").first()  # type: ignore[return-value]


def later(days: int = 7) -> dt.date:
    return next_weekday() + dt.timedelta(days=days)


__all__ = ["actor_for", "clinic_slot", "coordinator", "lead", "refer_down", "refer_up", "township"]
