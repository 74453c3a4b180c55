"""Source identities of the demo county (患者主索引演示数据).

Every resident gets the identity their registering institution's system holds (its own local
id), and a small share of residents shows up again at another member institution with the noise
real systems add (homophones, look-alike and traditional characters, swapped birth-date digits,
missing or mistyped ID numbers, changed phones, moves; yilian.patients.testing). Those are linked
as the online matcher would: a valid matching ID links deterministically, otherwise the record is
scored against the resident with the active Fellegi–Sunter weights — linked above the link
threshold, a new golden patient plus a review item between the thresholds, a new patient below.
So the review queue has work the moment the county is built.

Fast at 1,000,000 residents: identities stream into PostgreSQL with COPY (bulk_create elsewhere),
pinyin keys are cached per distinct name. `manage.py demo_county --no-identities` skips it all
(the clinical records then make plain identities of their own).
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from yilian.demo import taishan
from yilian.demo.residents import REBUILD_INDEXES_FROM, _secondary_indexes_suspended
from yilian.organizations.models import Institution
from yilian.patients import linkage
from yilian.patients.models import LinkMethod, MatchReview, Patient, SourceIdentity
from yilian.patients.services import linkage_model_active
from yilian.patients.testing import Noise, Person, source_record

# Share of residents seen again at another institution, and the noise of those records.
DUPLICATE_SHARE = 0.02
DEMO_NOISE = Noise(homophone=0.25, look_alike=0.05, traditional=0.1, birth_swap=0.1, id_missing=0.5, id_typo=0.1, moved=0.1)
BATCH = 10_000
_IDENTITY_COLUMNS = (
    "uuid",
    "created_at",
    "updated_at",
    "institution_id",
    "local_id",
    "record_number",
    "name",
    "sex",
    "birth_date",
    "id_type",
    "id_number",
    "id_number_valid",
    "phone",
    "address",
    "town",
    "health_card_number",
    "insurance_number",
    "patient_id",
    "link_score",
    "link_method",
    "linked_at",
    "name_key",
    "phone_key",
)
_PATIENT_FIELDS = ("pk", "name", "sex", "birth_date", "id_type", "id_number", "id_number_valid", "phone", "address", "town")


def demo_identities_build(*, seed: int, duplicate_share: float = DUPLICATE_SHARE) -> dict[str, int]:
    """Give every county resident an identity at their home institution, then add the noisy
    duplicates. Returns counts; does nothing when the county already has identities."""
    authority_institutions = Institution.objects.filter(authority__division_code=taishan.DIVISION_CODE)
    institution_ids = list(authority_institutions.values_list("pk", flat=True))
    if SourceIdentity.objects.filter(institution__in=institution_ids).exists():
        return {"home": 0, "duplicates": 0, "reviews": 0}  # built before (--skip-existing): leave it
    residents = Patient.objects.filter(home_institution__in=institution_ids)
    with transaction.atomic():
        home = _load_home_identities(residents.values_list("home_institution_id", *_PATIENT_FIELDS).order_by("pk"))
        duplicates, reviews = _add_duplicates(random.Random(f"yilian-demo:{seed}:identities"), institution_ids, duplicate_share)
    if connection.vendor == "postgresql" and home >= 100_000:
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {connection.ops.quote_name(SourceIdentity._meta.db_table)}")
    return {"home": home, "duplicates": duplicates, "reviews": reviews}


def _identity_rows(patients: list[tuple[Any, ...]], now: str) -> Iterator[tuple[Any, ...]]:
    for home_id, pk, name, sex, birth, id_type, id_number, valid, phone, address, town in patients:
        yield (
            uuid.uuid4(), now, now, home_id, f"HIS{pk:08d}", "", name, sex, birth, id_type, id_number, valid, phone,
            address, town, "", "", pk, None, LinkMethod.NEW.value, now, linkage.name_pinyin(name), linkage.phone_key(phone),
        )  # fmt: skip


def _batches(patients: Any) -> Iterator[list[tuple[Any, ...]]]:
    """Residents in primary-key batches, each fetched completely before it is written (a COPY
    holds the connection: no query may run while it streams)."""
    last = 0
    while True:
        batch = list(patients.filter(pk__gt=last)[:BATCH])
        if not batch:
            return
        yield batch
        last = batch[-1][1]


def _load_home_identities(patients: Any) -> int:
    now = timezone.now().isoformat()
    count = 0
    if connection.vendor != "postgresql":
        for batch in _batches(patients):
            rows = [dict(zip(_IDENTITY_COLUMNS, row, strict=True)) for row in _identity_rows(batch, now)]
            for values in rows:
                del values["created_at"], values["updated_at"]
            count += len(SourceIdentity.objects.bulk_create([SourceIdentity(**values) for values in rows]))
        return count
    quote = connection.ops.quote_name
    table = SourceIdentity._meta.db_table
    sql = f"COPY {quote(table)} ({', '.join(quote(c) for c in _IDENTITY_COLUMNS)}) FROM STDIN"
    with (
        connection.cursor() as cursor,
        _secondary_indexes_suspended(cursor, table, suspend=patients.count() >= REBUILD_INDEXES_FROM),
    ):
        for batch in _batches(patients):  # each batch fetched whole before its COPY starts
            with cursor.copy(sql) as copy:
                # Text format: generated values hold no tab, newline or backslash.
                copy.write("".join("\t".join(_text(v) for v in row) + "\n" for row in _identity_rows(batch, now)))
            count += len(batch)
    return count


def _text(value: object) -> str:
    if value is None:
        return "\\N"
    if value is True or value is False:
        return "t" if value else "f"
    return str(value)


def _add_duplicates(rng: random.Random, institution_ids: list[int], share: float) -> tuple[int, int]:
    """A sample of residents again at another institution, linked as the online matcher would."""
    total = Patient.objects.filter(home_institution__in=institution_ids).count()
    wanted = int(total * share)
    if not wanted or len(institution_ids) < 2:
        return 0, 0
    # Sample by primary key: no ORDER BY random() over a million rows.
    bounds = Patient.objects.filter(home_institution__in=institution_ids).order_by("pk").values_list("pk", flat=True)
    first, last = bounds.first(), bounds.last()
    if first is None or last is None:
        return 0, 0
    picked = sorted({rng.randrange(first, last + 1) for _ in range(wanted)})
    residents = Patient.objects.filter(pk__in=picked, merged_into__isnull=True).values_list(
        "home_institution_id", *_PATIENT_FIELDS
    )
    model = linkage_model_active()
    now = timezone.now()
    identities: list[SourceIdentity] = []
    new_patients: list[tuple[SourceIdentity, Patient, float, int, dict[str, int | None]]] = []
    for home_id, pk, name, sex, birth, _id_type, id_number, _valid, phone, address, town in residents:
        who = Person(pk, name, sex, birth, id_number, phone, town)
        record = source_record(rng, who, DEMO_NOISE)
        sender = rng.choice([i for i in institution_ids if i != home_id])
        identity = SourceIdentity(
            uuid=uuid.UUID(int=rng.getrandbits(128), version=4),
            institution_id=sender, local_id=f"EMR{pk:08d}", name=record.name, sex=record.sex, birth_date=record.birth_date,
            id_number=record.id_number, id_number_valid=record.id_number == id_number and bool(id_number),
            phone=record.phone, address=address, town=record.town, linked_at=now,
            name_key=linkage.name_pinyin(record.name), phone_key=linkage.phone_key(record.phone),
        )  # fmt: skip
        if identity.id_number_valid:
            identity.patient_id, identity.link_method = pk, LinkMethod.NATIONAL_ID
        else:
            levels = linkage.compare(
                linkage.Record(record.name, record.sex, record.birth_date, record.id_number, record.phone, record.town),
                linkage.Record(name, sex, birth, id_number, phone, town),
            )
            score = linkage.match_weight(levels, model.weights)
            identity.link_score = score
            if score >= model.link_threshold:
                identity.patient_id, identity.link_method = pk, LinkMethod.PROBABILISTIC
            else:
                golden = Patient(
                    uuid=uuid.UUID(int=rng.getrandbits(128), version=4),
                    name=record.name, sex=record.sex, birth_date=record.birth_date, id_number=record.id_number,
                    phone=record.phone, address=address, town=record.town, home_institution_id=sender,
                )  # fmt: skip
                new_patients.append((identity, golden, score, pk, levels))
                identity.link_method = LinkMethod.NEW
        identities.append(identity)
    Patient.objects.bulk_create([golden for _identity, golden, *_rest in new_patients], batch_size=2000)
    for identity, golden, *_rest in new_patients:
        identity.patient_id = golden.pk
    SourceIdentity.objects.bulk_create(identities, batch_size=2000)
    reviews = [
        MatchReview(identity=identity, candidate_id=candidate, score=score, comparison=levels)
        for identity, _golden, score, candidate, levels in new_patients
        if score >= model.review_threshold
    ]
    MatchReview.objects.bulk_create(reviews, batch_size=2000)
    return len(identities), len(reviews)


def demo_identities_load(*, seed: int, enabled: bool = True) -> dict[str, int]:
    """What `manage.py demo_county` calls right after building the county and before its clinical
    records (which then reuse these identities): counts by label for the summary line."""
    if not enabled:
        return {}
    counts = demo_identities_build(seed=seed)
    return {
        "主索引源身份": counts["home"] + counts["duplicates"],
        "跨机构重复": counts["duplicates"],
        "待审核匹配": counts["reviews"],
    }
