"""Many clients racing for the last free unit: exactly one wins, the others get a ValidationError
(never a 500), and no pool is ever oversold. Runs on PostgreSQL (row locks) and SQLite (IMMEDIATE
transactions) alike."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.db.models import F
from django.test import Client

from yilian.patients.models import Patient
from yilian.scheduling.models import Bed, BedReservation, BedStatus, Booking, BookingStatus, Slot, SlotPool
from yilian.scheduling.services import bed_reserve, bed_reserve_once, quota_release, slot_book, slots_generate
from yilian.scheduling.testing import actor_for, bed, general_pool, make_clinic, make_ward, next_weekday
from yilian.testing.world import build_world

CLIENTS = 12


def _race(work: Callable[[int], object], clients: int = CLIENTS) -> list[str]:
    """Run `work(i)` in `clients` threads released together; each outcome is 'won', 'refused' or an error."""
    barrier = threading.Barrier(clients)
    outcomes: list[str] = []
    lock = threading.Lock()

    def run(i: int) -> None:
        try:
            barrier.wait(timeout=20)
            work(i)
            result = "won"
        except ValidationError:
            result = "refused"
        except Exception as exc:  # anything else would be a 500 in a view
            result = f"error: {exc!r}"
        finally:
            connection.close()
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return outcomes


def _last_unit_slot(world):  # type: ignore[no-untyped-def]
    clinic = make_clinic(world, capacity=3, units_b=1, green=1)  # one unit in the general pool
    day = next_weekday()
    slots_generate(schedule=clinic.schedule, start_date=day, end_date=day)
    return Slot.objects.filter(schedule=clinic.schedule).order_by("start").first()


@pytest.mark.django_db(transaction=True)
def test_many_clients_booking_the_last_unit_exactly_one_wins():
    world = build_world()
    slot = _last_unit_slot(world)
    patients = [Patient.objects.create(name=f"抢号{i}", home_institution=world.a) for i in range(CLIENTS)]
    lead = actor_for(world, "lead_clinician")

    outcomes = _race(lambda i: slot_book(actor=lead, slot=slot, patient=patients[i]))

    assert sorted(outcomes) == ["refused"] * (CLIENTS - 1) + ["won"], outcomes
    pool = general_pool(slot)
    assert (pool.capacity, pool.booked) == (1, 1)
    assert Booking.objects.filter(slot=slot, status=BookingStatus.BOOKED).count() == 1
    assert not SlotPool.objects.filter(booked__gt=F("capacity")).exists()


@pytest.mark.django_db(transaction=True)
def test_the_same_patient_booked_by_many_clients_is_booked_once():
    world = build_world()
    clinic = make_clinic(world, capacity=20, units_b=1, green=1)
    day = next_weekday()
    slots_generate(schedule=clinic.schedule, start_date=day, end_date=day)
    slot = Slot.objects.filter(schedule=clinic.schedule).order_by("start").first()
    assert slot is not None
    lead = actor_for(world, "lead_clinician")

    outcomes = _race(lambda i: slot_book(actor=lead, slot=slot, patient=world.patients["at_a"]))

    assert sorted(outcomes) == ["refused"] * (CLIENTS - 1) + ["won"], outcomes
    assert general_pool(slot).booked == 1
    assert Booking.objects.filter(slot=slot).count() == 1


@pytest.mark.django_db(transaction=True)
def test_quota_release_racing_bookings_never_oversells():
    world = build_world()
    slot = _last_unit_slot(world)
    patients = [Patient.objects.create(name=f"释放{i}", home_institution=world.a) for i in range(CLIENTS)]
    lead = actor_for(world, "lead_clinician")
    release_time = slot.start  # type: ignore[union-attr]

    def work(i: int) -> object:
        if i % 4 == 0:
            return quota_release(now=release_time)
        return slot_book(actor=lead, slot=slot, patient=patients[i])

    outcomes = _race(work)

    assert not [o for o in outcomes if o.startswith("error")], outcomes
    # After the release the general pool holds all three units; never more are booked.
    assert general_pool(slot).capacity == 3
    booked = Booking.objects.filter(slot=slot, status=BookingStatus.BOOKED).count()
    assert booked == sum(SlotPool.objects.filter(slot=slot).values_list("booked", flat=True)) <= 3
    assert not SlotPool.objects.filter(booked__gt=F("capacity")).exists()


@pytest.mark.django_db(transaction=True)
def test_many_clients_reserving_the_same_bed_exactly_one_wins():
    world = build_world()
    ward = make_ward(world, beds=1)
    target = bed(ward, "01")
    patients = [Patient.objects.create(name=f"住院{i}", home_institution=world.a) for i in range(CLIENTS)]
    lead = actor_for(world, "lead_clinician")

    outcomes = _race(lambda i: bed_reserve(actor=lead, bed=target, patient=patients[i]))

    assert sorted(outcomes) == ["refused"] * (CLIENTS - 1) + ["won"], outcomes
    assert Bed.objects.get(pk=target.pk).status == BedStatus.RESERVED
    assert BedReservation.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_http_clients_racing_for_the_last_unit_get_one_201_and_409s_or_422s_never_500():
    world = build_world()
    slot = _last_unit_slot(world)
    patients = [Patient.objects.create(name=f"接口{i}", home_institution=world.a) for i in range(CLIENTS)]
    statuses: list[int] = []
    lock = threading.Lock()

    def work(i: int) -> None:
        client = Client()
        client.force_login(world.user("lead_clinician"))
        response = client.post(
            "/api/v1/scheduling/bookings",
            data=json.dumps({"slot": str(slot.uuid), "patient": str(patients[i].uuid)}),  # type: ignore[union-attr]
            content_type="application/json",
        )
        with lock:
            statuses.append(response.status_code)
        if response.status_code != 201:
            raise ValidationError(response.content.decode())

    outcomes = _race(work)

    assert sorted(statuses) == [201] + [409] * (CLIENTS - 1), (statuses, outcomes)
    assert general_pool(slot).booked == 1


@pytest.mark.django_db(transaction=True)
def test_the_same_reservation_sent_at_once_by_many_clients_makes_one():
    """A member HIS resending its bed reservation (same identifier) while the first send is still
    running: one reservation, every send answered with it, none refused."""
    world = build_world()
    target = bed(make_ward(world, beds=1), "01")
    township = actor_for(world, "township_clinician")
    created: list[bool] = []
    made: set[int] = set()

    def send(_i: int) -> None:
        reservation, new = bed_reserve_once(
            actor=township,
            bed=target,
            patient=world.patients["at_b"],
            source_system="urn:oid:his-b.bed",
            source_identifier="CW-0001",
        )
        created.append(new)
        made.add(reservation.pk)

    outcomes = _race(send)

    assert outcomes == ["won"] * CLIENTS, outcomes
    assert sorted(created) == [False] * (CLIENTS - 1) + [True]
    assert made == {BedReservation.objects.get().pk}
    assert Bed.objects.get(pk=target.pk).status == BedStatus.RESERVED


@pytest.mark.django_db(transaction=True)
def test_one_reservation_identifier_sent_at_once_for_two_beds_reserves_one():
    """The same identifier on two different reservations racing: one is made; the sends of the
    other are refused as a conflict and leave its bed free."""
    world = build_world()
    ward = make_ward(world, beds=2)
    beds = [bed(ward, "01"), bed(ward, "02")]
    township = actor_for(world, "township_clinician")

    outcomes = _race(
        lambda i: bed_reserve_once(
            actor=township,
            bed=beds[i % 2],
            patient=world.patients["at_b"],
            source_system="urn:oid:his-b.bed",
            source_identifier="CW-0001",
        )
    )

    assert sorted(outcomes) == ["refused"] * (CLIENTS // 2) + ["won"] * (CLIENTS // 2), outcomes
    reservation = BedReservation.objects.get()
    other = next(b for b in beds if b.pk != reservation.bed_id)
    assert Bed.objects.get(pk=other.pk).status == BedStatus.FREE
