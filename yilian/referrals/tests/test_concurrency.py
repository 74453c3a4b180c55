"""Referral steps under concurrency: many clients taking the same step on one referral, or many
referrals accepted at once into the last free unit — exactly one wins, the rest get a clear refusal,
nothing is oversold. PostgreSQL (row locks) and SQLite (IMMEDIATE transactions) alike."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db.models import F
from django.utils import timezone

from yilian.patients.models import Patient, SourceIdentity
from yilian.referrals.models import Direction, FollowUpTask, Referral, ReferralEvent, ReferralStatus
from yilian.referrals.services import FollowUpSpec, follow_up_add_once, referral_accept, referral_submit, referral_submit_once
from yilian.referrals.testing import coordinator, lead, refer_up, township
from yilian.scheduling.models import Booking, BookingStatus, Slot, SlotPool
from yilian.scheduling.services import slots_generate
from yilian.scheduling.testing import make_clinic, next_weekday
from yilian.scheduling.tests.test_concurrency import _race
from yilian.testing.world import build_world

CLIENTS = 8


@pytest.mark.django_db(transaction=True)
def test_many_receivers_accepting_one_referral_accept_it_once():
    world = build_world()
    referral = refer_up(world)
    receivers = [lead(world), coordinator(world)] * (CLIENTS // 2)

    outcomes = _race(lambda i: referral_accept(actor=receivers[i], referral=referral), CLIENTS)

    assert sorted(outcomes) == ["refused"] * (CLIENTS - 1) + ["won"], outcomes
    referral.refresh_from_db()
    assert referral.status == ReferralStatus.ACCEPTED
    assert ReferralEvent.objects.filter(referral=referral, kind=ReferralEvent.Kind.ACCEPTED).count() == 1


@pytest.mark.django_db(transaction=True)
def test_referrals_accepted_at_once_into_the_last_units_only_those_units_are_booked():
    world = build_world()
    clinic = make_clinic(world, capacity=3, units_b=1, green=1)  # one unit for B, one green, one general
    day = next_weekday()
    slots_generate(schedule=clinic.schedule, start_date=day, end_date=day)
    slot = Slot.objects.filter(schedule=clinic.schedule).order_by("start").first()
    referrals = []
    for i in range(CLIENTS):
        patient = Patient.objects.create(name=f"转诊{i}", home_institution=world.b)
        SourceIdentity.objects.create(institution=world.b, local_id=f"R{i}", name=patient.name, patient=patient)
        referrals.append(
            referral_submit(
                actor=township(world),
                patient=patient,
                direction=Direction.UP,
                destination_institution=world.a,
                reason="血压控制不佳",
                diagnosis_name="原发性高血压",
            )
        )
    actor = coordinator(world)

    outcomes = _race(lambda i: referral_accept(actor=actor, referral=referrals[i], slot=slot), CLIENTS)

    # B's reserved unit and the general one; a routine referral never takes the green channel.
    assert sorted(outcomes) == ["refused"] * (CLIENTS - 2) + ["won"] * 2, outcomes
    assert Booking.objects.filter(slot=slot, status=BookingStatus.BOOKED).count() == 2
    assert not SlotPool.objects.filter(booked__gt=F("capacity")).exists()
    assert SlotPool.objects.get(slot=slot, quota=clinic.green).booked == 0
    statuses = sorted(Referral.objects.values_list("status", flat=True))
    assert statuses == [ReferralStatus.SCHEDULED] * 2 + [ReferralStatus.SUBMITTED] * (CLIENTS - 2)


@pytest.mark.django_db(transaction=True)
def test_the_same_submission_sent_at_once_by_many_clients_makes_one_referral():
    """A member HIS resending its ServiceRequest (same identifier) while the first send is still
    running: one referral, every send answered with it, none refused."""
    world = build_world()
    created: list[bool] = []
    numbers: set[str] = set()

    def send(_i: int) -> None:
        referral, new = referral_submit_once(
            actor=township(world),
            source_system="urn:oid:his-b",
            source_identifier="ZL-0001",
            patient=world.patients["at_b"],
            direction=Direction.UP,
            destination_institution=world.a,
            reason="血压控制不佳",
            diagnosis_name="原发性高血压",
        )
        created.append(new)
        numbers.add(referral.number)

    outcomes = _race(send, CLIENTS)

    assert outcomes == ["won"] * CLIENTS, outcomes
    assert sorted(created) == [False] * (CLIENTS - 1) + [True]
    assert Referral.objects.count() == 1 and numbers == {Referral.objects.get().number}
    assert ReferralEvent.objects.filter(kind=ReferralEvent.Kind.SUBMITTED).count() == 1


def _accepted_down(world, patient):  # type: ignore[no-untyped-def]
    referral = referral_submit(
        actor=lead(world),
        patient=patient,
        direction=Direction.DOWN,
        destination_institution=world.b,
        reason="病情稳定，转回基层随访",
        diagnosis_name="原发性高血压",
    )
    first = FollowUpSpec(responsible=world.user("township_clinician"), due_date=timezone.localdate(), what_to_check="血压")
    return referral_accept(actor=township(world), referral=referral, follow_ups=[first])


def _resent(world, when):  # type: ignore[no-untyped-def]
    return FollowUpSpec(
        responsible=world.user("village_doctor"),
        due_date=when,
        what_to_check="复查空腹血糖",
        source_system="urn:oid:his-b.task",
        source_identifier="SF-0001",
    )


@pytest.mark.django_db(transaction=True)
def test_the_same_follow_up_task_sent_at_once_by_many_clients_makes_one_task():
    """A member HIS resending its follow-up Task (same identifier) while the first send is still
    running: one task, every send answered with it, none refused."""
    world = build_world()
    referral = _accepted_down(world, world.patients["at_a"])
    spec = _resent(world, timezone.localdate() + dt.timedelta(days=14))
    created: list[bool] = []
    tasks: set[int] = set()

    def send(_i: int) -> None:
        task, new = follow_up_add_once(actor=township(world), referral=referral, spec=spec)
        created.append(new)
        tasks.add(task.pk)

    outcomes = _race(send, CLIENTS)

    assert outcomes == ["won"] * CLIENTS, outcomes
    assert sorted(created) == [False] * (CLIENTS - 1) + [True]
    made = FollowUpTask.objects.get(source_identifier="SF-0001")
    assert tasks == {made.pk} and FollowUpTask.objects.count() == 2
    assert ReferralEvent.objects.filter(referral=referral, kind=ReferralEvent.Kind.FOLLOW_UP).count() == 2


@pytest.mark.django_db(transaction=True)
def test_one_follow_up_identifier_sent_at_once_for_two_referrals_makes_one_task():
    """The same identifier on two different tasks racing (two referrals): the database's unique
    constraint lets one through; the sends of the other task are refused as a conflict."""
    world = build_world()
    first = _accepted_down(world, world.patients["at_a"])
    second = _accepted_down(world, Patient.objects.create(name="另一位居民", home_institution=world.a))
    spec = _resent(world, timezone.localdate() + dt.timedelta(days=14))

    outcomes = _race(lambda i: follow_up_add_once(actor=township(world), referral=first if i % 2 else second, spec=spec), CLIENTS)

    assert sorted(outcomes) == ["refused"] * (CLIENTS // 2) + ["won"] * (CLIENTS // 2), outcomes
    made = FollowUpTask.objects.get(source_identifier="SF-0001")
    assert FollowUpTask.objects.filter(referral=made.referral).count() == 2
    other = second if made.referral_id == first.pk else first
    assert FollowUpTask.objects.filter(referral=other).count() == 1
