"""Plain-SQL rows (core.rows) give what the ORM gives: the same instances, related objects, NULL
relations, conversions (SQLite stores UUIDs, booleans and datetimes its own way), locks and inserts."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from django.db import IntegrityError, NotSupportedError, connection, models, transaction
from django.test.utils import CaptureQueriesContext

from yilian.access.models import AccessGrant, GrantScope, GrantSource
from yilian.accounts.models import Membership
from yilian.core.rows import fetch, fetch_by_uuid, fetch_one, insert, statement_cursor, update
from yilian.patients.models import Patient
from yilian.testing.world import World


def _values(obj: models.Model) -> dict[str, object]:
    return {field.attname: getattr(obj, field.attname) for field in obj._meta.concrete_fields}


def test_fetch_matches_select_related_with_present_and_missing_relations(world: World, django_assert_num_queries):
    related = ("institution__authority", "authority", "department__institution")
    for persona in ("township_clinician", "bureau_supervisor", "village_doctor"):
        membership = Membership.objects.filter(user=world.user(persona)).order_by("pk").first()
        assert membership is not None
        expected = Membership.objects.select_related(*related).get(pk=membership.pk)
        got = fetch_one(Membership, "t0.id = %s", [membership.pk], related=related)
        assert got is not None and type(got) is Membership
        assert _values(got) == _values(expected)
        assert got.uuid == expected.uuid and isinstance(got.uuid, uuid.UUID)
        assert got.is_active is True and isinstance(got.started_on, dt.date)
        with django_assert_num_queries(0):  # every relation is in place, a missing one as None
            for name in ("institution", "authority", "department"):
                mine, theirs = getattr(got, name), getattr(expected, name)
                assert (mine is None) == (theirs is None)
                if mine is not None:
                    assert _values(mine) == _values(theirs)
            if got.institution is not None:
                assert _values(got.institution.authority) == _values(expected.institution.authority)  # type: ignore[union-attr]
            if got.department is not None:
                assert got.department.institution.pk == expected.department.institution.pk  # type: ignore[union-attr]
    # The bureau supervisor has no institution and no department: both None, the department's
    # institution below it never looked at.
    supervisor = fetch(Membership, "t0.user_id = %s", [world.user("bureau_supervisor").pk], related=related)
    assert supervisor[0].institution is None and supervisor[0].department is None and supervisor[0].authority is not None


def test_fetch_keeps_timestamps_and_order_and_the_where_parameters(world: World):
    patients = sorted(world.patients.values(), key=lambda p: p.pk)
    got = fetch(
        Patient,
        "t0.id IN (%s, %s)",
        [patients[1].pk, patients[0].pk],
        related=("home_institution", "grid"),
        tail="ORDER BY t0.id",
    )
    assert [p.pk for p in got] == [patients[0].pk, patients[1].pk]
    for mine in got:
        theirs = Patient.objects.get(pk=mine.pk)
        assert _values(mine) == _values(theirs)
        assert mine.created_at.tzinfo is not None
        assert mine.home_institution.pk == theirs.home_institution_id
        assert (mine.grid is None) == (theirs.grid_id is None)
    assert fetch(Patient, "t0.id = %s", [-1]) == []


@pytest.mark.parametrize("key", ["not-a-uuid", "", None, 12, "1" * 500])
def test_fetch_by_uuid_refuses_what_is_no_uuid(world: World, key: object):
    assert fetch_by_uuid(Patient, key) is None


def test_fetch_by_uuid_finds_by_the_public_key_only(world: World):
    patient = next(iter(world.patients.values()))
    assert fetch_by_uuid(Patient, patient.uuid).pk == patient.pk  # type: ignore[union-attr]
    assert fetch_by_uuid(Patient, str(patient.uuid)).pk == patient.pk  # type: ignore[union-attr]
    assert fetch_by_uuid(Patient, uuid.uuid4()) is None


def test_for_update_locks_the_root_rows_only(world: World):
    patient = next(iter(world.patients.values()))
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        fetch(Patient, "t0.id = %s", [patient.pk], related=("home_institution",), for_update=True)
        fetch(Patient, "t0.id = %s", [patient.pk], for_update=True)
    joined, alone = (q["sql"] for q in queries.captured_queries if "SELECT" in q["sql"])
    if connection.features.has_select_for_update_of:  # PostgreSQL
        assert joined.endswith("FOR UPDATE OF t0") and alone.endswith("FOR UPDATE")
    else:  # SQLite: IMMEDIATE transactions serialise writers; no row locks to ask for
        assert "FOR UPDATE" not in joined + alone


def test_insert_sets_key_and_timestamps_and_skips_a_conflict_only_when_asked(world: World):
    patient = next(iter(world.patients.values()))

    def grant(key: uuid.UUID) -> AccessGrant:
        return AccessGrant(
            uuid=key,
            patient=patient,
            grantee_institution=world.a,
            scope=GrantScope.SUMMARY,
            source=GrantSource.APPOINTMENT,
            source_reference="rows-test",
            expires_at=dt.datetime(2030, 1, 1, tzinfo=dt.UTC),
        )

    first = grant(uuid.uuid4())
    assert insert(first) is True
    assert first.pk is not None and not first._state.adding
    stored = AccessGrant.objects.get(pk=first.pk)
    assert _values(stored) == _values(first)
    assert stored.created_at is not None and stored.starts_at is not None

    again = grant(first.uuid)  # the same public key: a unique conflict
    assert insert(again, skip_conflict=True) is False
    assert again.pk is None
    with pytest.raises(IntegrityError), transaction.atomic():
        insert(grant(first.uuid))
    assert AccessGrant.objects.filter(source_reference="rows-test").count() == 1


def test_extra_columns_land_on_each_instance(world: World):
    patient = next(iter(world.patients.values()))
    identities = "SELECT count(*) FROM patients_sourceidentity s WHERE s.patient_id = t0.id"
    got = fetch_one(Patient, "t0.id = %s", [patient.pk], related=("home_institution",), extra={"identity_count": identities})
    assert got is not None and got.identity_count == 1  # type: ignore[attr-defined]
    assert got.home_institution.pk == patient.home_institution_id


def test_extra_columns_take_their_own_parameters_before_the_conditions(world: World):
    patient = next(iter(world.patients.values()))
    matches = "SELECT count(*) FROM patients_sourceidentity s WHERE s.patient_id = t0.id AND s.institution_id = %s"
    for institution, count in ((patient.home_institution_id, 1), (-1, 0)):
        got = fetch_one(Patient, "t0.id = %s", [patient.pk], extra={"held_there": matches}, extra_params=[institution])
        assert got is not None and got.pk == patient.pk and got.held_there == count  # type: ignore[attr-defined]


def _prepared(sql_start: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s", [sql_start + "%"])
        return int(cursor.fetchone()[0])


def test_statement_cursor_statements_are_prepared_on_postgresql(world: World):
    patient = next(iter(world.patients.values()))
    sql = "SELECT id FROM patients_patient WHERE id = %s AND %s <> 'statement-cursor-test'"
    for run in range(3):
        with statement_cursor() as cursor:
            cursor.execute(sql, [patient.pk, str(run)])
            assert cursor.fetchone() == (patient.pk,)
    if connection.vendor != "postgresql":
        return  # SQLite: the connection's usual cursor, nothing to prepare
    assert _prepared("SELECT id FROM patients_patient WHERE id = $1") == 1
    # Django's own cursors bind on the client: their statements are never prepared.
    with connection.cursor() as cursor:
        for _run in range(3):
            cursor.execute("SELECT id FROM patients_patient WHERE id = %s AND 1 = 1", [patient.pk])
    assert _prepared("SELECT id FROM patients_patient WHERE id =") == 1


def test_update_writes_the_named_fields_and_the_auto_now_time(world: World):
    patient = next(iter(world.patients.values()))
    grant = AccessGrant(
        patient=patient,
        grantee_institution=world.a,
        scope=GrantScope.SUMMARY,
        source=GrantSource.APPOINTMENT,
        expires_at=dt.datetime(2030, 1, 1, tzinfo=dt.UTC),
    )
    insert(grant)
    before = AccessGrant.objects.get(pk=grant.pk)
    grant.reason, grant.source_reference = "复诊", "not written"
    assert update(grant, ["reason", "updated_at"]) is True
    stored = AccessGrant.objects.get(pk=grant.pk)
    assert stored.reason == "复诊" and stored.source_reference == before.source_reference
    assert stored.updated_at > before.updated_at and stored.created_at == before.created_at
    grant.pk = -1
    assert update(grant, ["reason"]) is False


@pytest.mark.django_db(transaction=True)
def test_a_prepared_read_survives_a_column_type_change_made_meanwhile() -> None:
    """A migration run by another process changes a column the prepared statement returns:
    PostgreSQL refuses the old statement; outside a transaction the cursor prepares it anew."""
    if connection.vendor != "postgresql":
        pytest.skip("prepared statements are PostgreSQL's")
    import psycopg

    settings = connection.settings_dict
    other = psycopg.connect(
        host=settings["HOST"] or None, port=settings["PORT"] or None, user=settings["USER"] or None,
        dbname=settings["NAME"], autocommit=True,
    )  # fmt: skip
    try:
        other.execute("CREATE TABLE yl_rows_stale (id integer PRIMARY KEY, code varchar(5))")
        other.execute("INSERT INTO yl_rows_stale VALUES (1, 'a')")
        sql = "SELECT code FROM yl_rows_stale WHERE id = %s"
        with statement_cursor() as cursor:
            cursor.execute(sql, [1])
            assert cursor.fetchone() == ("a",)
        other.execute("ALTER TABLE yl_rows_stale ALTER COLUMN code TYPE varchar(10)")
        for _run in range(2):
            with statement_cursor() as cursor:
                cursor.execute(sql, [1])
                assert cursor.fetchone() == ("a",)
        # Inside a transaction the refusal stands (the transaction is lost) and its rollback drops
        # the prepared statements: the next run works.
        other.execute("ALTER TABLE yl_rows_stale ALTER COLUMN code TYPE varchar(20)")
        with pytest.raises(NotSupportedError), transaction.atomic(), statement_cursor() as cursor:
            cursor.execute(sql, [1])
        with statement_cursor() as cursor:
            cursor.execute(sql, [1])
            assert cursor.fetchone() == ("a",)
    finally:
        connection.close()  # no lock left on the table
        other.execute("DROP TABLE IF EXISTS yl_rows_stale")
        other.close()
