"""The comparisons on Chinese demographics, and linkage on a labelled set: online (identity_ingest)
and batch (Splink training → stored model → online matcher)."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict

import pytest

from yilian.organizations.models import Institution
from yilian.patients import linkage
from yilian.patients.identities import IdentityData
from yilian.patients.models import LinkageModel, MatchReview, SourceIdentity
from yilian.patients.services import _candidate_rows, _candidate_rows_many, identity_ingest, linkage_model_active
from yilian.patients.testing import labelled_records

R = linkage.Record


@pytest.mark.parametrize(
    ("a", "b", "level"),
    [
        (R("张伟"), R("張偉"), 4),  # traditional forms fold to simplified
        (R("黄美玲"), R("黄美龄"), 3),  # homophone
        (R("黄美玲"), R("黄美林"), 2),  # close pinyin
        (R("黄美玲"), R("黄国强"), 1),  # surname only
        (R("黄美玲"), R("陈国强"), 0),
        (R("黄美玲"), R(""), None),
    ],
)
def test_name_levels(a, b, level) -> None:
    assert linkage.compare_name(a, b) == level


def test_birth_date_allows_transpositions_and_day_month_swaps() -> None:
    born = R("x", birth_date=dt.date(1958, 3, 17))
    assert linkage.compare_birth_date(born, R("x", birth_date=dt.date(1958, 3, 17))) == 2
    assert linkage.compare_birth_date(born, R("x", birth_date=dt.date(1958, 3, 71 - 60))) == 1  # 17 → 11: one digit
    assert linkage.compare_birth_date(born, R("x", birth_date=dt.date(1985, 3, 17))) == 1  # 58 ↔ 85
    assert linkage.compare_birth_date(R("x", birth_date=dt.date(1958, 3, 7)), R("x", birth_date=dt.date(1958, 7, 3))) == 1
    assert linkage.compare_birth_date(born, R("x", birth_date=dt.date(1962, 9, 1))) == 0


def test_id_number_within_one_edit_only_when_the_check_digit_fails() -> None:
    valid = R("x", id_number="440781195803070012")
    assert linkage.compare_id_number(valid, R("x", id_number="440781195803070012")) == 3
    assert linkage.compare_id_number(valid, R("x", id_number="440781195803070013")) == 2  # typo, check fails
    assert linkage.compare_id_number(valid, R("x", id_number="440781200001010011")) == 0  # two valid numbers: twins
    assert linkage.compare_id_number(valid, R("x", id_number="123")) == 1


def test_phone_key_ignores_country_code_and_separators() -> None:
    assert linkage.phone_key("+86 138-0000-0000") == linkage.phone_key("13800000000") == "00000000"


def _clusters(identities) -> set[tuple[int, int]]:  # type: ignore[no-untyped-def]
    groups: dict[int, list[int]] = defaultdict(list)
    for key, patient in identities:
        groups[patient].append(key)
    return {(a, b) for members in groups.values() for i, a in enumerate(sorted(members)) for b in sorted(members)[i + 1 :]}


def test_online_linkage_on_a_labelled_set(world) -> None:
    """600 noisy source records of ~330 people, sent by three institutions in turn: the golden
    patients the index forms match the truth (pairwise over clusters)."""
    records = labelled_records(11, 600)
    senders: list[Institution] = [world.a, world.c, world.d]
    for n, record in enumerate(records):
        identity_ingest(
            institution=senders[n % 3],
            data=IdentityData(
                local_id=f"L{n}", name=record.name, sex=record.sex, birth_date=record.birth_date,
                id_number=record.id_number, phone=record.phone, town=record.town,
            ),
        )  # fmt: skip
    linked = SourceIdentity.objects.filter(local_id__startswith="L").values_list("local_id", "patient_id")
    predicted = _clusters((int(local_id[1:]), patient) for local_id, patient in linked)
    truth = _clusters((n, r.person) for n, r in enumerate(records))
    true_positives = len(predicted & truth)
    precision, recall = true_positives / len(predicted), true_positives / len(truth)
    assert precision >= 0.98, precision
    assert recall >= 0.95, recall
    assert MatchReview.objects.exists()  # the uncertain ones went to the queue


def test_the_plain_sql_blocking_finds_what_the_orm_blocking_finds(world) -> None:
    """A batch's identities are blocked on PostgreSQL with one plain statement (LATERAL UNION ALL),
    one identity with the ORM's UNION (and SQLite always so). Both give the same candidate rows."""
    records = labelled_records(13, 300)
    for n, record in enumerate(records[::2]):
        identity_ingest(
            institution=world.a,
            data=IdentityData(
                local_id=f"B{n}", name=record.name, sex=record.sex, birth_date=record.birth_date,
                id_number=record.id_number, phone=record.phone, town=record.town,
            ),
        )  # fmt: skip
    queries = [
        {"name": r.name, "sex": r.sex, "birth_date": r.birth_date, "id_number": r.id_number, "phone": r.phone, "town": r.town}
        for r in records[1::2]
    ]
    expected = [sorted(row["pk"] for row in _candidate_rows(values)) for values in queries]
    assert sum(map(len, expected)) > len(queries)  # the blocks do find candidates
    one_by_one = [sorted(row["pk"] for row in _candidate_rows_many([values])[0]) for values in queries]
    together = [sorted(row["pk"] for row in rows) for rows in _candidate_rows_many(queries)]
    assert one_by_one == expected and together == expected


def test_trained_model_is_stored_versioned_and_used_online(world) -> None:
    from yilian.patients.tasks import linkage_train

    for n, record in enumerate(labelled_records(12, 2500)):
        SourceIdentity.objects.create(
            institution=world.a, local_id=f"T{n}", name=record.name, sex=record.sex, birth_date=record.birth_date,
            id_number=record.id_number, phone=record.phone, town=record.town, patient=world.patients["at_a"],
            name_key=linkage.name_pinyin(record.name), phone_key=linkage.phone_key(record.phone),
        )  # fmt: skip
    assert linkage_model_active().version == 0
    version = linkage_train.call()
    assert version == 1
    model = LinkageModel.objects.get(version=1)
    assert model.active and model.trained_on == SourceIdentity.objects.count()
    assert set(model.parameters["comparisons"]) == set(linkage.COMPARISONS)
    for name, levels in model.parameters["comparisons"].items():
        assert len(levels["m"]) == len(levels["u"]) == len(linkage.DEFAULT_PARAMETERS["comparisons"][name]["m"])
    active = linkage_model_active()
    assert active.version == 1 and active.link_threshold == 6.0
    # The learnt weights order the name levels as the comparisons mean them.
    weights = active.weights.table["name"]
    assert weights[4] > weights[1] and weights[3] > weights[0]
    assert linkage_train.call() == 2
    assert list(LinkageModel.objects.filter(active=True).values_list("version", flat=True)) == [2]
