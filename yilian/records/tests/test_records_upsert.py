"""records_upsert: the rows of one message at once, with the results of one <resource>_upsert per row."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import transaction

from yilian.records import services
from yilian.records.data import ConditionData, EncounterData, ObservationData
from yilian.records.models import Condition, Encounter, EncounterClass, Observation, PayerType
from yilian.records.services import RecordRow, RecordRowError
from yilian.records.testing import ago, make_identity
from yilian.testing.world import World

# One fixed time, so that sending the same rows again is sending the same values.
WHEN = ago(2)


@pytest.fixture
def identity(world: World):  # type: ignore[no-untyped-def]
    return make_identity(world.patients["at_a"], world.a)


def visit() -> EncounterData:
    return EncounterData(
        encounter_class=EncounterClass.OUTPATIENT,
        started_at=WHEN,
        payer_type=PayerType.RESIDENT_INSURANCE,
        total_cost=Decimal("120.00"),
        insurance_paid=Decimal("60.00"),
    )


def glucose(value: str, encounter: str = "V1") -> ObservationData:
    return ObservationData(
        category="laboratory",
        code="1558-6",
        display="空腹血糖",
        effective_at=WHEN,
        value_quantity=Decimal(value),
        unit="mmol/L",
        reference_low=Decimal("3.9"),
        reference_high=Decimal("6.1"),
        encounter_source_id=encounter,
    )


def diagnosis() -> ConditionData:
    return ConditionData(icd10_code="E11.9", recorded_at=WHEN, encounter_source_id="V1")


def message(identity, value: str = "7.2"):  # type: ignore[no-untyped-def]
    return [
        RecordRow(identity=identity, source_id="V1", data=visit()),
        RecordRow(identity=identity, source_id="D1", data=diagnosis()),
        RecordRow(identity=identity, source_id="O1", data=glucose(value)),
        RecordRow(identity=identity, source_id="O2", data=glucose("5.0")),
    ]


def test_rows_refer_to_an_encounter_written_in_the_same_call(world: World, identity, django_assert_max_num_queries) -> None:  # type: ignore[no-untyped-def]
    # Three runs (encounter, condition, observations) in one savepoint: one insert each, no locking
    # read when every row is new, and no lookup of the encounter the call has just written.
    with django_assert_max_num_queries(5):
        done = services.records_upsert(institution=world.a, rows=message(identity))
    assert [(type(d.record), d.created, d.changed) for d in done] == [
        (Encounter, True, False),
        (Condition, True, False),
        (Observation, True, False),
        (Observation, True, False),
    ]
    encounter = Encounter.objects.get(institution=world.a, source_id="V1")
    assert all(d.record.pk is not None for d in done)
    assert Condition.objects.get(source_id="D1").encounter == encounter
    first = Observation.objects.get(source_id="O1")
    assert (first.encounter, first.identity, first.interpretation) == (encounter, identity, "H")
    assert first.uuid == done[2].record.uuid


def test_the_same_message_again_changes_nothing_and_a_changed_row_is_updated(world: World, identity) -> None:  # type: ignore[no-untyped-def]
    services.records_upsert(institution=world.a, rows=message(identity))
    before = {o.source_id: (o.uuid, o.updated_at) for o in Observation.objects.all()}

    again = services.records_upsert(institution=world.a, rows=message(identity))
    assert [(d.created, d.changed) for d in again] == [(False, False)] * 4
    assert {o.source_id: (o.uuid, o.updated_at) for o in Observation.objects.all()} == before

    changed = services.records_upsert(institution=world.a, rows=message(identity, value="4.4"))
    assert [(d.created, d.changed) for d in changed] == [(False, False), (False, False), (False, True), (False, False)]
    assert Observation.objects.get(source_id="O1").value_quantity == Decimal("4.4")
    assert Observation.objects.count() == 2 and Encounter.objects.count() == 1


def test_new_and_stored_rows_in_one_run(world: World, identity) -> None:  # type: ignore[no-untyped-def]
    services.records_upsert(institution=world.a, rows=message(identity))
    rows = [*message(identity, value="4.4"), RecordRow(identity=identity, source_id="O3", data=glucose("5.5"))]
    done = services.records_upsert(institution=world.a, rows=rows)
    assert [(d.created, d.changed) for d in done[2:]] == [(False, True), (False, False), (True, False)]
    stored = {o.source_id: o for o in Observation.objects.all()}
    assert [done[2].record.pk, done[3].record.pk, done[4].record.pk] == [stored["O1"].pk, stored["O2"].pk, stored["O3"].pk]
    assert (stored["O1"].value_quantity, stored["O3"].value_quantity) == (Decimal("4.4"), Decimal("5.5"))
    assert stored["O3"].encounter == Encounter.objects.get(source_id="V1")


def test_more_rows_than_one_statement_takes(world: World, identity) -> None:  # type: ignore[no-untyped-def]
    # More parameters than one INSERT may carry on SQLite (999): the run goes in several statements.
    rows = [RecordRow(identity=identity, source_id="V1", data=visit())]
    rows += [RecordRow(identity=identity, source_id=f"O{n}", data=glucose(f"{4 + n / 100:.2f}")) for n in range(150)]
    done = services.records_upsert(institution=world.a, rows=rows)
    assert [d.created for d in done] == [True] * 151
    stored = {o.source_id: o for o in Observation.objects.all()}
    assert len(stored) == 150
    assert all(d.record.pk == stored[d.record.source_id].pk for d in done[1:])
    assert stored["O149"].value_quantity == Decimal("5.49")


def test_a_row_sent_twice_in_one_call_is_one_row_holding_the_last_values(world: World, identity) -> None:  # type: ignore[no-untyped-def]
    rows = [*message(identity), RecordRow(identity=identity, source_id="O1", data=glucose("3.1"))]
    done = services.records_upsert(institution=world.a, rows=rows)
    assert [(d.created, d.changed) for d in done[2:]] == [(True, False), (True, False), (False, True)]
    assert Observation.objects.filter(source_id="O1").get().value_quantity == Decimal("3.1")


def test_the_first_refused_row_is_named_and_the_same_as_one_call_per_row(world: World, identity) -> None:  # type: ignore[no-untyped-def]
    rows = message(identity)
    rows[3] = RecordRow(identity=identity, source_id="O2", data=glucose("5.0", encounter="V-unknown"))
    with pytest.raises(RecordRowError) as caught, transaction.atomic():
        services.records_upsert(institution=world.a, rows=rows)
    assert caught.value.index == 3
    with pytest.raises(services.ValidationError) as single:
        services.observation_upsert(institution=world.a, identity=identity, source_id="O2", data=rows[3].data)  # type: ignore[arg-type]
    assert caught.value.message_dict == single.value.message_dict
    assert "V-unknown" in str(caught.value.message_dict["encounter_source_id"])


def test_an_encounter_of_another_patient_is_refused(world: World, identity) -> None:  # type: ignore[no-untyped-def]
    other = make_identity(world.patients["at_b"], world.a, "OTHER")
    services.records_upsert(institution=world.a, rows=[RecordRow(identity=other, source_id="V1", data=visit())])
    with pytest.raises(RecordRowError) as caught, transaction.atomic():
        services.records_upsert(institution=world.a, rows=[RecordRow(identity=identity, source_id="O1", data=glucose("5.0"))])
    assert caught.value.index == 0 and "encounter_source_id" in caught.value.message_dict
    assert not Observation.objects.exists()


def test_a_field_check_names_its_row(world: World, identity) -> None:  # type: ignore[no-untyped-def]
    rows = message(identity)
    huge = ObservationData(category="laboratory", code="X" * 40, display="x", effective_at=ago(1), value_text="阳性")
    rows.append(RecordRow(identity=identity, source_id="O3", data=huge))
    with pytest.raises(RecordRowError) as caught, transaction.atomic():
        services.records_upsert(institution=world.a, rows=rows)
    assert caught.value.index == 4 and "code" in caught.value.message_dict


@pytest.mark.django_db(transaction=True)
def test_many_senders_of_the_same_rows_at_once_store_each_row_once() -> None:
    """Member systems resending one message concurrently (a retry racing the original): every call
    succeeds, each row is stored once, and what is stored is what one of them sent. On PostgreSQL the
    racing inserts meet on the unique (institution, source_id): the later ones wait, skip the insert
    (ON CONFLICT DO NOTHING) and update through the locking read; on SQLite the IMMEDIATE
    transactions queue them."""
    import threading

    from django.db import connection

    from yilian.testing.world import build_world

    world = build_world()
    identity = make_identity(world.patients["at_a"], world.a)
    senders = 8
    values = [f"{6 + n / 10:.1f}" for n in range(senders)]
    barrier = threading.Barrier(senders)
    errors: list[str] = []

    def send(n: int) -> None:
        try:
            barrier.wait(timeout=20)
            with transaction.atomic():
                services.records_upsert(institution=world.a, rows=message(identity, value=values[n]))
        except Exception as exc:  # anything here would be a refused message or a 500
            errors.append(repr(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=send, args=(n,)) for n in range(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert errors == []
    assert Encounter.objects.filter(institution=world.a, source_id="V1").count() == 1
    assert Condition.objects.filter(institution=world.a, source_id="D1").count() == 1
    assert sorted(Observation.objects.values_list("source_id", flat=True)) == ["O1", "O2"]
    assert Observation.objects.get(source_id="O1").value_quantity in {Decimal(v) for v in values}
    assert Observation.objects.get(source_id="O1").encounter == Encounter.objects.get(source_id="V1")
