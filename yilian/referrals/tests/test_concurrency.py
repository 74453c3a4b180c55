"""Referral steps under concurrency: many clients taking the same step on one referral, or many
referrals accepted at once into the last free unit — exactly one wins, the rest get a clear refusal,
nothing is oversold. PostgreSQL (row locks) and SQLite (IMMEDIATE transactions) alike."""

from __future__ import annotations

import pytest
from django.db.models import F

from yilian.patients.models import Patient, SourceIdentity
from yilian.referrals.models import Direction, Referral, ReferralEvent, ReferralStatus
from yilian.referrals.services import referral_accept, referral_submit, referral_submit_once
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
