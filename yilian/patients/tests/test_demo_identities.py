"""The demo county's source identities: one per resident at home, noisy duplicates elsewhere,
linked as the online matcher would, with review items waiting; off by --no-identities."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.db import models

from yilian.patients.models import LinkMethod, MatchReview, Patient, ReviewStatus, SourceIdentity

pytestmark = pytest.mark.django_db


def _build(*options: str) -> str:
    out = StringIO()
    call_command("demo_county", "--residents=3000", "--seed=2026", "--quiet", *options, stdout=out)
    return out.getvalue()


def test_demo_county_gets_identities_duplicates_and_review_work() -> None:
    output = _build()
    residents = 3000
    home = SourceIdentity.objects.filter(local_id__startswith="HIS")
    assert home.count() == residents
    assert home.filter(name_key="").count() == 0
    duplicates = SourceIdentity.objects.filter(local_id__startswith="EMR").select_related("patient")
    assert 30 <= duplicates.count() <= 60  # about 2 %
    methods = {d.link_method for d in duplicates}
    assert {LinkMethod.NATIONAL_ID, LinkMethod.NEW} <= methods
    for duplicate in duplicates:
        resident_pk = int(duplicate.local_id[3:])
        assert duplicate.institution_id != Patient.objects.get(pk=resident_pk).home_institution_id
        if duplicate.link_method in (LinkMethod.NATIONAL_ID, LinkMethod.PROBABILISTIC):
            assert duplicate.patient_id == resident_pk
        else:
            assert duplicate.patient_id != resident_pk  # a golden patient of its own (the records may add more)
    assert Patient.objects.count() == residents + duplicates.filter(link_method=LinkMethod.NEW).count()
    reviews = MatchReview.objects.filter(status=ReviewStatus.OPEN)
    assert reviews.exists() and "待审核匹配" in output
    # The clinical records that follow reuse the home identities instead of making their own there.
    assert not SourceIdentity.objects.filter(
        local_id__startswith="DEMO", institution=models.F("patient__home_institution")
    ).exists()
    assert all(str(r.candidate_id) == r.identity.local_id[3:].lstrip("0") for r in reviews.select_related("identity"))
    # Built again with --skip-existing: nothing added.
    before = SourceIdentity.objects.count()
    _build("--skip-existing")
    assert SourceIdentity.objects.count() == before


def test_no_identities_flag() -> None:
    _build("--no-identities")
    # Only the plain identities the clinical records make for themselves: no noisy duplicates, no reviews.
    assert not SourceIdentity.objects.filter(local_id__startswith="HIS").exists()
    assert not SourceIdentity.objects.filter(local_id__startswith="EMR").exists()
    assert not MatchReview.objects.exists()
    assert Patient.objects.count() == 3000


def _identity_table_definition() -> list[tuple[str, str]]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'patients_sourceidentity'::regclass "
            "UNION ALL SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'patients_sourceidentity' ORDER BY 1"
        )
        return cursor.fetchall()


@pytest.mark.postgres_only
def test_bulk_identity_load_restores_every_index_and_foreign_key(monkeypatch) -> None:
    from django.db import connection

    from yilian.demo import identities

    if connection.vendor != "postgresql":
        pytest.skip("COPY and index handling are PostgreSQL paths")
    before = _identity_table_definition()
    monkeypatch.setattr(identities, "REBUILD_INDEXES_FROM", 100)  # take the bulk path at test size
    _build()
    assert _identity_table_definition() == before
    assert SourceIdentity.objects.filter(local_id__startswith="HIS").count() == 3000
    # The blocking keys were written and their indexes answer the online matcher's lookups.
    one = SourceIdentity.objects.filter(local_id__startswith="HIS").first()
    assert one is not None and SourceIdentity.objects.filter(name_key=one.name_key, birth_date=one.birth_date).exists()
