"""The demo county's year of clinical records as a bulk load: deterministic per seed, the same rows by
COPY and by INSERT, every index and constraint back after a big load, and an encounter target."""

from __future__ import annotations

import hashlib
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, F

from yilian.demo import encounters as encounter_module
from yilian.demo.encounters import TABLE_COLUMNS, demo_encounters_build, residents_for_encounters
from yilian.demo.services import demo_county_build
from yilian.patients.models import Patient, SourceIdentity
from yilian.records.models import (
    Condition,
    DiagnosticReport,
    DocumentReference,
    Encounter,
    InsuranceSettlement,
    MedicationRequest,
    Observation,
)

pytestmark = pytest.mark.django_db

# What a seed decides (times are relative to the moment of the load, source ids carry the run's start,
# local ids the resident's primary key).
FINGERPRINT_FIELDS = {
    Encounter: ("uuid", "identity__uuid", "institution__name", "encounter_class", "reason", "total_cost", "insurance_paid"),
    Condition: ("uuid", "encounter__uuid", "icd10_code", "display", "is_primary"),
    Observation: ("uuid", "encounter__uuid", "code", "value_quantity", "reference_low", "reference_high", "interpretation"),
    DiagnosticReport: ("uuid", "encounter__uuid", "code", "conclusion"),
    MedicationRequest: ("uuid", "encounter__uuid", "medication_code", "quantity", "days_supply"),
    DocumentReference: ("uuid", "encounter__uuid", "kind", "text"),
    InsuranceSettlement: (
        "uuid", "encounter__uuid", "provider_name", "within_county", "total_cost", "fund_paid", "personal_paid",
    ),
    SourceIdentity: ("uuid", "institution__name", "name", "birth_date", "id_number_valid", "patient__uuid"),
}  # fmt: skip


def records_fingerprint() -> str:
    digest = hashlib.sha256()
    for model, fields in FINGERPRINT_FIELDS.items():
        for row in model._default_manager.order_by("uuid").values_list(*fields):
            digest.update(repr(row).encode())
    return digest.hexdigest()


def county_with_records(*, seed: int = 7, residents: int = 300, replace: bool = False, **options: object) -> dict[str, int]:
    demo_county_build(residents=residents, seed=seed, replace=replace)
    return demo_encounters_build(seed=seed, **options).counts  # type: ignore[arg-type]


def test_same_seed_gives_the_same_records_and_another_seed_different_ones():
    counts = county_with_records(seed=7)
    first = records_fingerprint()
    assert counts["就诊"] == Encounter.objects.count() > 600
    assert Observation.objects.filter(value_quantity__isnull=False).exists()
    county_with_records(seed=7, replace=True)
    assert records_fingerprint() == first
    county_with_records(seed=8, replace=True)
    assert records_fingerprint() != first


def test_amounts_and_times_are_read_back_exactly():
    county_with_records(residents=200)
    for encounter in Encounter.objects.all()[:200]:
        assert encounter.ended_at is not None and encounter.started_at.tzinfo is not None
        assert encounter.ended_at >= encounter.started_at
        settlement = InsuranceSettlement.objects.filter(encounter=encounter).first()
        if settlement is not None:  # insured: fund and personal shares add up to the cent
            assert settlement.fund_paid + settlement.personal_paid == settlement.total_cost == encounter.total_cost
            assert settlement.settled_at == encounter.ended_at
        else:
            assert encounter.payer_type == "self_pay" and encounter.insurance_paid == 0
    glucose = Observation.objects.filter(code="1558-6")
    assert glucose.exists() and not glucose.filter(value_quantity__lt=2).exists()


def test_resident_text_with_copy_format_characters_is_stored_verbatim():
    demo_county_build(residents=40, seed=3)
    tricky = "台山市台城街道\\N 桥湖社区\t12号\\t"
    Patient.objects.update(address=tricky)
    demo_encounters_build(seed=3)
    made = SourceIdentity.objects.filter(local_id__startswith="DEMO")
    assert made.exists() and set(made.values_list("address", flat=True)) == {tricky}


def test_records_reuse_the_identities_an_institution_already_has_across_batches(monkeypatch):
    monkeypatch.setattr(encounter_module, "BATCH", 37)  # many batch boundaries, none on a round number
    call_command("demo_county", "--residents=400", "--seed=9", "--quiet", stdout=StringIO())
    assert SourceIdentity.objects.filter(local_id__startswith="HIS").count() == 400
    assert SourceIdentity.objects.filter(local_id__startswith="DEMO").exists()
    twice = SourceIdentity.objects.values("institution", "patient").annotate(n=Count("id")).filter(n__gt=1)
    assert not twice.exists()
    # A resident's own institution already had their identity: its records hang off that one.
    assert not SourceIdentity.objects.filter(local_id__startswith="DEMO", institution=F("patient__home_institution")).exists()
    assert Encounter.objects.filter(identity__local_id__startswith="HIS").exists()


def test_encounter_target_builds_enough_residents_and_stops_at_the_target():
    out = StringIO()
    call_command("demo_county", "--encounters=700", "--quiet", "--no-identities", stdout=out)
    assert Patient.objects.count() == residents_for_encounters(700) == 226
    assert Encounter.objects.count() == 700
    assert "就诊 700，" in out.getvalue()
    # Every diagnosis and settlement belongs to one of those encounters (or is an outside settlement).
    assert Condition.objects.count() == 700
    assert not InsuranceSettlement.objects.filter(encounter__isnull=True, within_county=True).exists()


def test_encounter_target_is_validated():
    with pytest.raises(Exception, match="--encounters 不能为负数"):
        call_command("demo_county", "--encounters=-1", "--quiet", stdout=StringIO())
    assert not Patient.objects.exists()


def _postgres_only() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("COPY and index handling are PostgreSQL paths")


@pytest.mark.postgres_only
def test_copy_and_insert_write_the_same_records():
    _postgres_only()
    county_with_records(seed=11, use_copy=True)
    copied = records_fingerprint()
    county_with_records(seed=11, use_copy=False, replace=True)
    assert records_fingerprint() == copied


def _definitions() -> list[tuple[str, str]]:
    tables = [model._meta.db_table for model in TABLE_COLUMNS]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid::regclass::text = ANY(%s) UNION ALL "
            "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE tablename = ANY(%s) ORDER BY 1, 2, 3",
            [tables, tables],
        )
        return cursor.fetchall()


@pytest.mark.postgres_only
def test_big_load_restores_every_index_and_constraint_and_writes_what_a_small_one_does(monkeypatch):
    _postgres_only()
    before = _definitions()
    county_with_records(seed=5, residents=400)
    small = records_fingerprint()
    monkeypatch.setattr(encounter_module, "SUSPEND_INDEXES_FROM", 100)  # take the bulk path at test size
    county_with_records(seed=5, residents=400, replace=True)  # after a reset's pending deferred checks too
    assert _definitions() == before
    assert records_fingerprint() == small
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        with pytest.raises(IntegrityError, match="foreign key"), transaction.atomic():
            cursor.execute("UPDATE records_condition SET encounter_id = -1 WHERE id = (SELECT min(id) FROM records_condition)")
        with pytest.raises(IntegrityError, match="unique"), transaction.atomic():
            cursor.execute(
                "UPDATE records_observation SET uuid = (SELECT uuid FROM records_observation ORDER BY id LIMIT 1) "
                "WHERE id = (SELECT max(id) FROM records_observation)"
            )
