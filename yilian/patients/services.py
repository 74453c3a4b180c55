"""Writes of the master patient index (患者主索引): ingesting a source identity and linking it
online, merging and unmerging golden patients, deciding review items, storing linkage models.

Linking an incoming identity (ADR 0003):
1. a valid national ID (GB 11643) already known → the same golden patient (`national_id`);
2. otherwise candidates are blocked with indexed keys (ID number, phone, pinyin name + birth
   date, pinyin name + town, birth date + town) and scored with the stored Fellegi–Sunter
   weights: at or above the link threshold → that patient (`probabilistic`); between the review
   and the link threshold → a new golden patient and a review item per candidate; below → a new
   golden patient (`new`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
from collections.abc import Iterable, Sequence
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, connections, transaction
from django.db.models import Max
from django.utils import timezone
from django.utils.translation import gettext as _

from yilian.accounts.actors import Actor
from yilian.core.rows import fetch_one, rows_cursor
from yilian.core.validators import is_valid_national_id
from yilian.organizations.models import Institution
from yilian.patients import linkage
from yilian.patients.identities import IdentityData, IdentityOutcome
from yilian.patients.models import (
    IdentityDocumentType,
    IdentityLinkEvent,
    LinkageModel,
    LinkMethod,
    MatchReview,
    Patient,
    PatientMerge,
    ReviewDecision,
    ReviewStatus,
    Sex,
    SourceIdentity,
)

# Candidates fetched per blocking key; a common name in one town must not flood the scorer.
BLOCK_LIMIT = 50
# Review items opened per incoming identity (the best candidates between the thresholds).
MAX_REVIEWS_PER_IDENTITY = 3
MAX_REASON_LENGTH = 500

_DEMOGRAPHICS = (
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
)
_LIMITS = {
    "local_id": 64,
    "record_number": 64,
    "name": 50,
    "id_number": 30,
    "phone": 20,
    "address": 200,
    "town": 50,
    "health_card_number": 64,
    "insurance_number": 64,
}


@dataclasses.dataclass(frozen=True)
class ActiveModel:
    version: int
    weights: linkage.Weights
    link_threshold: float
    review_threshold: float


_model_cache: dict[int, ActiveModel] = {}


def linkage_model_active() -> ActiveModel:
    """The newest active stored model, or the built-in defaults (version 0) before any training."""
    row = LinkageModel.objects.filter(active=True).order_by("-version").values("version").first()
    if row is None:
        return ActiveModel(0, linkage.DEFAULT_WEIGHTS, linkage.DEFAULT_LINK_THRESHOLD, linkage.DEFAULT_REVIEW_THRESHOLD)
    version = row["version"]
    if version not in _model_cache:
        model = LinkageModel.objects.get(version=version)
        _model_cache[version] = ActiveModel(
            version, linkage.Weights.from_parameters(model.parameters), model.link_threshold, model.review_threshold
        )
    return _model_cache[version]


def linkage_thresholds_check(*, link_threshold: float, review_threshold: float) -> None:
    if review_threshold > link_threshold:
        raise ValidationError(_("人工审核阈值不能高于自动关联阈值。"))


def linkage_model_store(
    *, parameters: dict[str, Any], link_threshold: float, review_threshold: float, trained_on: int = 0, note: str = ""
) -> LinkageModel:
    """Store a trained model as the next version and make it the active one."""
    linkage.Weights.from_parameters(parameters)  # refuses a malformed parameter set before saving
    linkage_thresholds_check(link_threshold=link_threshold, review_threshold=review_threshold)
    with transaction.atomic():
        latest = LinkageModel.objects.select_for_update().aggregate(v=Max("version"))["v"] or 0
        LinkageModel.objects.filter(active=True).update(active=False)
        return LinkageModel.objects.create(
            version=latest + 1,
            parameters=parameters,
            link_threshold=link_threshold,
            review_threshold=review_threshold,
            trained_on=trained_on,
            note=note[:200],
        )


# --- ingest --------------------------------------------------------------------------------------


def _clean(data: IdentityData) -> dict[str, Any]:
    """The identity's fields, normalised and validated; ValidationError (Chinese) for refused input."""
    errors: dict[str, list[str]] = {}
    values: dict[str, Any] = {}
    for field in ("local_id", *_DEMOGRAPHICS):
        if field == "id_number_valid":
            continue
        value = getattr(data, field)
        if isinstance(value, str):
            value = value.strip()
            if "\x00" in value:
                errors.setdefault(field, []).append(_("不能包含空字符。"))
            if len(value) > _LIMITS.get(field, 64):
                errors.setdefault(field, []).append(
                    _("最多 %(limit)d 个字符（现为 %(length)d 个）。") % {"limit": _LIMITS.get(field, 64), "length": len(value)}
                )
        values[field] = value
    if not values["local_id"]:
        errors.setdefault("local_id", []).append(_("缺少机构内患者标识。"))
    if not values["name"]:
        errors.setdefault("name", []).append(_("缺少姓名。"))
    if values["sex"] not in Sex.values:
        errors.setdefault("sex", []).append(_("性别代码无效（GB/T 2261.1：0、1、2、9）。"))
    if values["id_type"] not in IdentityDocumentType.values:
        errors.setdefault("id_type", []).append(_("证件类型代码无效（WS 364 CV02.01.101）。"))
    birth_date = values["birth_date"]
    if birth_date is not None:
        if not isinstance(birth_date, dt.date):
            errors.setdefault("birth_date", []).append(_("出生日期格式无效。"))
        elif birth_date > timezone.localdate() or birth_date.year < 1880:
            errors.setdefault("birth_date", []).append(_("出生日期不合理。"))
    if values["phone"] and not all(c.isdigit() or c in "+- ()" for c in values["phone"]):
        errors.setdefault("phone", []).append(_("联系电话只能包含数字、空格和 + - ( )。"))
    if errors:
        raise ValidationError(errors)
    if values["id_type"] == IdentityDocumentType.RESIDENT_ID:
        values["id_number"] = linkage.id_number_normalised(values["id_number"])
    # A resident ID failing GB 11643 is kept as sent (it still helps the probabilistic match)
    # but never drives a deterministic one.
    values["id_number_valid"] = values["id_type"] == IdentityDocumentType.RESIDENT_ID and is_valid_national_id(
        values["id_number"]
    )
    return values


def _record(source: SourceIdentity | Patient | dict[str, Any]) -> linkage.Record:
    get = source.get if isinstance(source, dict) else lambda key, default=None: getattr(source, key, default)
    return linkage.Record(
        name=get("name", "") or "",
        sex=get("sex", "") or "",
        birth_date=get("birth_date"),
        id_number=get("id_number", "") or "",
        phone=get("phone", "") or "",
        town=get("town", "") or "",
    )


@dataclasses.dataclass(frozen=True)
class Candidate:
    patient_id: int
    score: float
    levels: dict[str, int | None]


def identity_candidates(
    values: dict[str, Any], *, exclude_patient: int | None = None, model: ActiveModel | None = None
) -> list[Candidate]:
    """Golden patients that may be this person, best first: blocked with indexed keys, scored per
    identity with the active model (or `model`, the one the caller has just read), the best
    identity of each patient standing for it."""
    model = model or linkage_model_active()
    return _scored(values, _candidate_rows(values, exclude_patient=exclude_patient), model)


_CANDIDATE_FIELDS = ("pk", "patient_id", "name", "sex", "birth_date", "id_number", "phone", "town")


def _candidate_rows(values: dict[str, Any], *, exclude_patient: int | None = None) -> Iterable[dict[str, Any]]:
    record = _record(values)
    name_key = linkage.name_pinyin(record.name)
    phone = linkage.phone_key(record.phone)
    blocks = []
    base = SourceIdentity.objects.all()
    if exclude_patient is not None:
        base = base.exclude(patient_id=exclude_patient)
    if record.id_number:
        blocks.append(base.filter(id_number=record.id_number))
    if phone:
        blocks.append(base.filter(phone_key=phone))
    if name_key and record.birth_date:
        blocks.append(base.filter(name_key=name_key, birth_date=record.birth_date))
    if name_key and record.town:
        blocks.append(base.filter(name_key=name_key, town=record.town))
    if record.birth_date and record.town:
        blocks.append(base.filter(birth_date=record.birth_date, town=record.town))
    parts = [block.values(*_CANDIDATE_FIELDS)[:BLOCK_LIMIT] for block in blocks]
    rows: Iterable[dict[str, Any]] = itertools.chain.from_iterable(parts)
    if len(parts) > 1 and connections[parts[0].db].features.supports_slicing_ordering_in_compound:
        # One round trip: UNION ALL of the blocks, each still an index scan with its own limit.
        rows = parts[0].union(*parts[1:], all=True)
    return rows


def _candidate_rows_many(many: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """`_candidate_rows` of several identities: on PostgreSQL in one round trip (each identity's
    blocks as a LATERAL subquery of UNION ALL, every block an index scan with its own limit)."""
    connection = connections[SourceIdentity.objects.db]
    if connection.vendor != "postgresql" or len(many) < 2:
        return [list(_candidate_rows(values)) for values in many]
    keys: list[Any] = []
    for position, values in enumerate(many):
        record = _record(values)
        name_key = linkage.name_pinyin(record.name)
        keys += [position, record.id_number, linkage.phone_key(record.phone), name_key, record.birth_date, record.town]
    columns = ", ".join(f"t.{c}" for c in ("id", "patient_id", "name", "sex", "birth_date", "id_number", "phone", "town"))
    table = connection.ops.quote_name(SourceIdentity._meta.db_table)
    blocks = (
        "k.id_number <> '' AND t.id_number = k.id_number",
        "k.phone_key <> '' AND t.phone_key = k.phone_key",
        "k.name_key <> '' AND t.name_key = k.name_key AND t.birth_date = k.birth_date",
        "k.name_key <> '' AND k.town <> '' AND t.name_key = k.name_key AND t.town = k.town",
        "k.town <> '' AND t.birth_date = k.birth_date AND t.town = k.town",
    )
    lateral = " UNION ALL ".join(
        f"(SELECT {columns} FROM {table} t WHERE {where} LIMIT {BLOCK_LIMIT})"  # noqa: S608 - fixed SQL, values are parameters
        for where in blocks
    )
    rows_sql = ", ".join(["(%s::integer, %s::text, %s::text, %s::text, %s::date, %s::text)"] * len(many))
    sql = (
        f"SELECT k.position, s.* FROM (VALUES {rows_sql}) AS k(position, id_number, phone_key, name_key, birth_date, town) "  # noqa: S608 - table name and fixed SQL only; values are parameters
        f"CROSS JOIN LATERAL ({lateral}) AS s"
    )
    out: list[list[dict[str, Any]]] = [[] for _values in many]
    with connection.cursor() as cursor:
        cursor.execute(sql, keys)
        for position, *row in cursor.fetchall():
            out[position].append(dict(zip(_CANDIDATE_FIELDS, row, strict=True)))
    return out


def _scored(values: dict[str, Any], rows: Iterable[dict[str, Any]], model: ActiveModel) -> list[Candidate]:
    record = _record(values)
    seen: dict[Any, dict[str, Any]] = {}
    for row in rows:
        seen.setdefault(row["pk"], row)
    best: dict[int, Candidate] = {}
    for row in seen.values():
        weight, levels = linkage.score(record, _record(row), model.weights)
        patient_id = row["patient_id"]
        if patient_id not in best or weight > best[patient_id].score:
            best[patient_id] = Candidate(patient_id, weight, levels)
    return sorted(best.values(), key=lambda c: -c.score)


def _national_id_patient(values: dict[str, Any]) -> Patient | None:
    """The golden patient a valid national ID already belongs to: the patient of the first identity
    carrying it, else (patients registered before the index existed have no identity yet) the first
    live golden patient carrying it. One query, two index scans."""
    if not values["id_number_valid"]:
        return None
    # The ORM's query, written out: compiling its subquery and CASE cost more CPU than running it.
    connection = transaction.get_connection()
    quote = connection.ops.quote_name
    patients, identities = quote(Patient._meta.db_table), quote(SourceIdentity._meta.db_table)
    columns = ", ".join(f"{patients}.{quote(field.column)}" for field in Patient._meta.concrete_fields)
    first_identity = (
        f"(SELECT {quote('patient_id')} FROM {identities} WHERE {quote('id_number')} = %s AND {quote('id_number_valid')}"  # noqa: S608 - names from the models
        f" ORDER BY {quote('id')} LIMIT 1)"
    )
    sql = (
        f"SELECT {columns} FROM {patients} WHERE {patients}.{quote('id')} = {first_identity}"  # noqa: S608 - names from the models
        f" OR ({patients}.{quote('id_number')} = %s AND {patients}.{quote('id_number_valid')}"
        f" AND {patients}.{quote('merged_into_id')} IS NULL)"
        f" ORDER BY CASE WHEN {patients}.{quote('id')} = {first_identity} THEN 0 ELSE 1 END, {patients}.{quote('id')} LIMIT 1"
    )
    number = values["id_number"]
    return next(iter(Patient.objects.raw(sql, [number, number, number])), None)


def _insert(*objects: Any) -> None:
    """INSERT new rows of one model in one statement built from its fields, giving each its primary
    key: what `save()` does for a new row, without compiling a query each time (the ORM's compile
    cost more CPU than the database spent on the insert). No signals are sent (none are used here)."""
    if not objects:
        return
    connection = transaction.get_connection()
    meta = objects[0]._meta
    fields = [field for field in meta.concrete_fields if not field.primary_key]
    quote = connection.ops.quote_name
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    # Rows per statement: within SQLite's limit of parameters, and PostgreSQL's 65,535.
    size = max(1, min(connection.ops.bulk_batch_size(fields, list(objects)), 65535 // len(fields)))
    for start in range(0, len(objects), size):
        chunk = objects[start : start + size]
        sql = (
            f"INSERT INTO {quote(meta.db_table)} ({', '.join(quote(field.column) for field in fields)})"  # noqa: S608 - names from the model
            f" VALUES {', '.join([row] * len(chunk))} RETURNING {quote(meta.pk.column)}"
        )
        parameters = [field.get_db_prep_save(field.pre_save(obj, True), connection) for obj in chunk for field in fields]
        with rows_cursor(connection, len(chunk)) as cursor:
            cursor.execute(sql, parameters)
            keys = [key for (key,) in cursor.fetchall()]
        # In the order of VALUES, as bulk_create also takes them.
        for obj, key in zip(chunk, keys, strict=True):
            obj.pk = key
            obj._state.adding, obj._state.db = False, connection.alias


def _new_patient(institution: Institution, values: dict[str, Any]) -> Patient:
    patient = Patient(home_institution=institution, **{f: values[f] for f in _DEMOGRAPHICS if hasattr(Patient, f)})
    _insert(patient)
    return patient


def _keys(identity: SourceIdentity) -> None:
    identity.name_key = linkage.name_pinyin(identity.name)
    identity.phone_key = linkage.phone_key(identity.phone)


def identity_ingest(*, institution: Institution, data: IdentityData) -> IdentityOutcome:
    """Upsert the source identity `(institution, data.local_id)` and link it to a golden patient
    (module docstring). Idempotent: the same data again changes nothing. A known identity whose
    demographics changed is updated in place and keeps its link; if its valid national ID now
    belongs to another golden patient, a review item is opened rather than moving it silently."""
    values = _clean(data)
    for attempt in range(2):
        try:
            with transaction.atomic():
                return _ingest(institution, values)
        except IntegrityError:
            # Two deliveries of one new identity raced; the second now finds the first's row.
            if attempt:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def _ingest(institution: Institution, values: dict[str, Any]) -> IdentityOutcome:
    now = timezone.now()
    # Locked, with its patient, in plain SQL (core.rows): every incoming message asks this first.
    identity = fetch_one(
        SourceIdentity,
        "t0.institution_id = %s AND t0.local_id = %s",
        [institution.pk, values["local_id"]],
        related=("patient",),
        for_update=True,
    )
    if identity is not None:
        changed = {f: values[f] for f in _DEMOGRAPHICS if getattr(identity, f) != values[f]}
        if changed:
            for field, value in changed.items():
                setattr(identity, field, value)
            _keys(identity)
            identity.save()
            known = _national_id_patient(values)
            if known is not None and known.pk != identity.patient_id:
                _open_reviews(identity, [Candidate(known.pk, float("inf"), {"id_number": 2})])
        return IdentityOutcome(
            identity=identity,
            patient=identity.patient,
            created=False,
            method=identity.link_method,
            needs_review=identity.reviews.filter(status=ReviewStatus.OPEN).exists(),
        )

    identity = SourceIdentity(institution=institution, linked_at=now, **{f: values[f] for f in ("local_id", *_DEMOGRAPHICS)})
    _keys(identity)
    reviews: list[Candidate] = []
    patient = _national_id_patient(values)
    if patient is not None:
        identity.link_method, identity.link_score = LinkMethod.NATIONAL_ID, None
    else:
        model = linkage_model_active()
        candidates = identity_candidates(values, model=model)
        if candidates and candidates[0].score >= model.link_threshold:
            patient = Patient.objects.get(pk=candidates[0].patient_id)
            identity.link_method, identity.link_score = LinkMethod.PROBABILISTIC, candidates[0].score
        else:
            patient = _new_patient(institution, values)
            identity.link_method = LinkMethod.NEW
            identity.link_score = candidates[0].score if candidates else None
            reviews = [c for c in candidates if c.score >= model.review_threshold][:MAX_REVIEWS_PER_IDENTITY]
    identity.patient = patient
    _insert(identity)
    _insert(
        IdentityLinkEvent(
            identity=identity,
            to_patient=patient,
            method=identity.link_method,
            score=identity.link_score,
            actor_name=str(institution)[:60],
        )
    )
    _open_reviews(identity, reviews)
    return IdentityOutcome(
        identity=identity, patient=patient, created=True, method=identity.link_method, needs_review=bool(reviews)
    )


def _open_reviews(identity: SourceIdentity, candidates: Iterable[Candidate]) -> None:
    for candidate in candidates:
        MatchReview.objects.get_or_create(
            identity=identity,
            candidate_id=candidate.patient_id,
            defaults={"score": min(candidate.score, 99.0), "comparison": dict(candidate.levels)},
        )


class IdentityRowError(ValidationError):
    """A ValidationError of the identity at `index` of an `identities_ingest` call (nothing was written)."""

    def __init__(self, index: int, error: ValidationError) -> None:
        super().__init__(error.error_dict if hasattr(error, "error_dict") else error.error_list)
        self.index = index


def identities_ingest(*, institution: Institution, data: Sequence[IdentityData]) -> list[IdentityOutcome]:
    """`identity_ingest` for several identities of one sender (a batch of HL7 messages), with the
    outcome of one call per identity in order, in a few queries for the whole list: an identity met
    earlier in the list is found by the later ones by its local id, its national ID and its blocking
    keys. New identities and unchanged known ones go in bulk; when a known identity's demographics
    change, the list is ingested one by one (still in one transaction). Refused input raises
    IdentityRowError naming the first refused identity, before anything is written; a concurrent
    insert of the same identity raises IntegrityError (the caller may go one by one then)."""
    cleaned = []
    for index, item in enumerate(data):
        try:
            cleaned.append(_clean(item))
        except ValidationError as exc:
            raise IdentityRowError(index, exc) from None
    if not cleaned:
        return []
    with transaction.atomic():
        return _ingest_many(institution, cleaned)


def _blocked_together(values: dict[str, Any], row: dict[str, Any]) -> bool:
    """Whether an identity of this batch falls in one of `values`' blocks (see `_candidate_rows`)."""
    if values["id_number"] and row["id_number"] == values["id_number"]:
        return True
    if row["phone_key"] and row["phone_key"] == linkage.phone_key(values["phone"]):
        return True
    name_key = linkage.name_pinyin(values["name"])
    if name_key and row["name_key"] == name_key and values["birth_date"] and row["birth_date"] == values["birth_date"]:
        return True
    if name_key and values["town"] and row["name_key"] == name_key and row["town"] == values["town"]:
        return True
    return bool(
        values["birth_date"] and values["town"] and row["birth_date"] == values["birth_date"] and row["town"] == values["town"]
    )


def _ingest_many(institution: Institution, cleaned: list[dict[str, Any]]) -> list[IdentityOutcome]:
    now = timezone.now()
    known = {
        identity.local_id: identity
        for identity in SourceIdentity.objects.select_for_update()
        .select_related("patient")
        .filter(institution=institution, local_id__in={values["local_id"] for values in cleaned})
    }
    # Which identities are new, and whether any known one changes (then one by one, as identity_ingest).
    first_values: dict[str, dict[str, Any]] = {}
    for values in cleaned:
        local_id = values["local_id"]
        earlier = known.get(local_id)
        if earlier is not None:
            if any(getattr(earlier, f) != values[f] for f in _DEMOGRAPHICS):
                return [_ingest(institution, values) for values in cleaned]
        elif local_id in first_values:
            if any(first_values[local_id][f] != values[f] for f in _DEMOGRAPHICS):
                return [_ingest(institution, values) for values in cleaned]
        else:
            first_values[local_id] = values

    numbers = {values["id_number"] for values in first_values.values() if values["id_number_valid"]}
    by_number: dict[str, Patient] = {}
    patients_by_number: dict[str, Patient] = {}
    if numbers:
        for identity in (
            SourceIdentity.objects.filter(id_number__in=numbers, id_number_valid=True).select_related("patient").order_by("id")
        ):
            by_number.setdefault(identity.id_number, identity.patient)
        if rest := numbers - by_number.keys():
            for patient in Patient.objects.filter(id_number__in=rest, id_number_valid=True, merged_into__isnull=True).order_by(
                "id"
            ):
                patients_by_number.setdefault(patient.id_number, patient)
    # The new identities that no national ID links: they are blocked and scored.
    blocked: list[dict[str, Any]] = []
    numbers_met = set(by_number) | set(patients_by_number)
    for values in first_values.values():
        if values["id_number_valid"] and values["id_number"] in numbers_met:
            continue
        if values["id_number_valid"]:
            numbers_met.add(values["id_number"])
        blocked.append(values)
    model = linkage_model_active()
    rows_of = {id(values): rows for values, rows in zip(blocked, _candidate_rows_many(blocked), strict=True)}
    open_reviews = set(
        MatchReview.objects.filter(identity__in=list(known.values()), status=ReviewStatus.OPEN).values_list(
            "identity_id", flat=True
        )
        if known
        else []
    )

    # Patients of this batch get stand-in ids (negative) until they are inserted.
    new_patients: dict[int, Patient] = {}
    batch_rows: list[dict[str, Any]] = []
    batch_numbers: dict[str, int] = {}
    created: dict[str, tuple[SourceIdentity, int, list[Candidate]]] = {}
    linked_to: dict[str, int] = {}
    outcomes: list[tuple[str, dict[str, Any]] | IdentityOutcome] = []
    for values in cleaned:
        local_id = values["local_id"]
        if local_id in known:
            identity = known[local_id]
            outcomes.append(
                IdentityOutcome(
                    identity=identity,
                    patient=identity.patient,
                    created=False,
                    method=identity.link_method,
                    needs_review=identity.pk in open_reviews,
                )
            )
            continue
        if local_id in created:
            outcomes.append((local_id, values))  # sent twice in the batch, unchanged: the first outcome, not new
            continue
        identity = SourceIdentity(institution=institution, linked_at=now, **{f: values[f] for f in ("local_id", *_DEMOGRAPHICS)})
        _keys(identity)
        reviews: list[Candidate] = []
        number = values["id_number"] if values["id_number_valid"] else ""
        national = by_number.get(number) or patients_by_number.get(number) if number else None
        patient_key = (by_number[number].pk if number in by_number else batch_numbers.get(number)) if number else None
        if patient_key is None and national is not None:
            patient_key = national.pk
        if patient_key is not None:
            identity.link_method, identity.link_score = LinkMethod.NATIONAL_ID, None
        else:
            rows = [*rows_of.get(id(values), []), *(row for row in batch_rows if _blocked_together(values, row))]
            candidates = _scored(values, rows, model)
            if candidates and candidates[0].score >= model.link_threshold:
                patient_key = candidates[0].patient_id
                identity.link_method, identity.link_score = LinkMethod.PROBABILISTIC, candidates[0].score
            else:
                patient_key = -(len(new_patients) + 1)
                new_patients[patient_key] = Patient(
                    home_institution=institution, **{f: values[f] for f in _DEMOGRAPHICS if hasattr(Patient, f)}
                )
                identity.link_method = LinkMethod.NEW
                identity.link_score = candidates[0].score if candidates else None
                reviews = [c for c in candidates if c.score >= model.review_threshold][:MAX_REVIEWS_PER_IDENTITY]
        created[local_id] = (identity, patient_key, reviews)
        linked_to[local_id] = patient_key
        if number:
            batch_numbers.setdefault(number, patient_key)
        batch_rows.append(
            {
                "pk": f"new:{local_id}",
                "patient_id": patient_key,
                "name_key": identity.name_key,
                "phone_key": identity.phone_key,
                **{f: values[f] for f in ("name", "sex", "birth_date", "id_number", "phone", "town")},
            }
        )
        outcomes.append((local_id, values))

    _insert(*new_patients.values())
    patients: dict[int, Patient] = {patient.pk: patient for patient in [*by_number.values(), *patients_by_number.values()]}
    wanted = {key for key in linked_to.values() if key > 0}
    wanted |= {c.patient_id for _identity, _key, reviews in created.values() for c in reviews if c.patient_id > 0}
    if wanted := wanted - patients.keys():
        patients.update(Patient.objects.in_bulk(wanted))
    patients.update(new_patients)
    for identity, key, _reviews in created.values():
        identity.patient = patients[key]
    _insert(*(identity for identity, _key, _reviews in created.values()))
    _insert(
        *[
            IdentityLinkEvent(
                identity=identity,
                to_patient=identity.patient,
                method=identity.link_method,
                score=identity.link_score,
                actor_name=str(institution)[:60],
            )
            for identity, _key, _reviews in created.values()
        ]
    )
    MatchReview.objects.bulk_create(
        [
            MatchReview(identity=identity, candidate=patients[c.patient_id], score=min(c.score, 99.0), comparison=dict(c.levels))
            for identity, _key, reviews in created.values()
            for c in reviews
        ]
    )
    result: list[IdentityOutcome] = []
    seen: set[str] = set()
    for outcome in outcomes:
        if isinstance(outcome, IdentityOutcome):
            result.append(outcome)
            continue
        local_id, _values = outcome
        identity, _key, reviews = created[local_id]
        first = local_id not in seen
        seen.add(local_id)
        result.append(
            IdentityOutcome(
                identity=identity,
                patient=identity.patient,
                created=first,
                method=identity.link_method,
                needs_review=bool(reviews),
            )
        )
    return result


# --- merge and unmerge ---------------------------------------------------------------------------


SYSTEM_ACTOR_NAME = "系统（主索引批量关联）"


def _actor_name(actor: Actor) -> str:
    if actor.user is None and actor.api_key is None:
        return SYSTEM_ACTOR_NAME
    return str(actor)[:60]


def patient_merge(*, actor: Actor, survivor: Patient, merged: Patient, reason: str) -> PatientMerge:
    """Merge golden patient `merged` into `survivor` (患者合并): every identity of `merged` moves to
    `survivor` (its records follow, ADR 0003), each move recorded as a link event of this merge.
    Callers authorise (views: patients.access.access_review; interop: the sending institution)."""
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError({"reason": [_("请填写合并原因。")]})
    if len(reason) > MAX_REASON_LENGTH:
        raise ValidationError({"reason": [_("合并原因最多 %(limit)d 个字符。") % {"limit": MAX_REASON_LENGTH}]})
    if survivor.pk == merged.pk:
        raise ValidationError(_("不能把患者与其自身合并。"))
    now = timezone.now()
    with transaction.atomic():
        locked = {p.pk: p for p in Patient.objects.select_for_update().filter(pk__in=[survivor.pk, merged.pk])}
        if len(locked) != 2:
            raise ValidationError(_("患者不存在。"))
        if locked[survivor.pk].merged_into_id is not None or locked[merged.pk].merged_into_id is not None:
            raise ValidationError(_("该患者已被合并到其他患者，请先处理当前合并。"))
        merge = PatientMerge.objects.create(
            survivor=survivor,
            merged=merged,
            reason=reason,
            actor_name=_actor_name(actor),
            actor_user=actor.user if actor.api_key is None else None,
            actor_institution=actor.institution,
        )
        identities = list(SourceIdentity.objects.select_for_update().filter(patient=merged).order_by("id"))
        IdentityLinkEvent.objects.bulk_create(
            [
                IdentityLinkEvent(
                    identity=identity,
                    from_patient=merged,
                    to_patient=survivor,
                    method=LinkMethod.MANUAL,
                    merge=merge,
                    previous_method=identity.link_method,
                    previous_score=identity.link_score,
                    previous_linked_at=identity.linked_at,
                    actor_name=merge.actor_name,
                )
                for identity in identities
            ]
        )
        SourceIdentity.objects.filter(pk__in=[i.pk for i in identities]).update(
            patient=survivor,
            link_method=LinkMethod.MANUAL,
            link_score=None,
            linked_at=now,
            linked_by=actor.user if actor.api_key is None else None,
            updated_at=now,
        )
        Patient.objects.filter(pk=merged.pk).update(merged_into=survivor, updated_at=now)
        merged.merged_into = survivor
        # Open review items between the two are settled by the merge.
        MatchReview.objects.filter(status=ReviewStatus.OPEN, identity__in=identities, candidate=survivor).update(
            status=ReviewStatus.LINKED, decided_at=now, decided_by_name=merge.actor_name, merge=merge
        )
    return merge


def patient_unmerge(*, actor: Actor, merge: PatientMerge) -> PatientMerge:
    """Undo a merge (撤销合并): the identities it moved go back to the merged patient with the link
    method, score and time they had before, and the merged patient is live again."""
    now = timezone.now()
    with transaction.atomic():
        merge = PatientMerge.objects.select_for_update().get(pk=merge.pk)
        if merge.unmerged_at is not None:
            raise ValidationError(_("该合并已撤销。"))
        survivor = Patient.objects.select_for_update().get(pk=merge.survivor_id)
        if survivor.merged_into_id is not None:
            raise ValidationError(_("保留患者已被再次合并，请先撤销后续合并。"))
        for event in merge.link_events.select_related("identity").order_by("id"):
            identity = event.identity
            if identity.patient_id != merge.survivor_id:
                continue  # moved again since by someone else's decision; leave it where it is
            IdentityLinkEvent.objects.create(
                identity=identity,
                from_patient_id=merge.survivor_id,
                to_patient_id=merge.merged_id,
                method=event.previous_method or LinkMethod.NEW,
                score=event.previous_score,
                merge=merge,
                previous_method=identity.link_method,
                previous_score=identity.link_score,
                previous_linked_at=identity.linked_at,
                actor_name=_actor_name(actor),
            )
            identity.patient_id = merge.merged_id
            identity.link_method = event.previous_method or LinkMethod.NEW
            identity.link_score = event.previous_score
            identity.linked_at = event.previous_linked_at
            identity.linked_by = None
            identity.save()
        Patient.objects.filter(pk=merge.merged_id).update(merged_into=None, updated_at=now)
        merge.unmerged_at = now
        merge.unmerged_by_name = _actor_name(actor)
        merge.save(update_fields=["unmerged_at", "unmerged_by_name", "updated_at"])
        MatchReview.objects.filter(merge=merge).update(status=ReviewStatus.OPEN, decided_at=None, decided_by_name="", merge=None)
    return merge


# --- review decisions ----------------------------------------------------------------------------


def review_decide(
    *, actor: Actor, review: MatchReview, decision: str, reason: str = "", other: MatchReview | None = None
) -> MatchReview:
    """Settle a review item (主索引审核), recording who decided and when:

    - `merge`: the same person → the incoming identity's patient is merged into the candidate;
    - `distinct`: not the same person → kept apart (the index's re-linking respects it);
    - `link_other`: not this candidate but the candidate of `other`, another open item of the same
      incoming identity → this item is kept apart and the patient merged into `other`'s candidate,
      which settles `other` too, in one transaction.

    Callers authorise: both items are loaded through `patients.access.access_review`."""
    reason = (reason or "").strip()
    if decision not in ReviewDecision.values:
        raise ValidationError({"decision": [_("审核结论无效。")]})
    if len(reason) > MAX_REASON_LENGTH:
        raise ValidationError({"reason": [_("说明最多 %(limit)d 个字符。") % {"limit": MAX_REASON_LENGTH}]})
    if decision == ReviewDecision.LINK_OTHER:
        if other is None:
            raise ValidationError({"other_review": [_("请选择应关联的另一位候选患者。")]})
        if other.pk == review.pk or other.identity_id != review.identity_id:
            raise ValidationError({"other_review": [_("所选候选患者不是同一新到身份的另一条待审核匹配。")]})
    with transaction.atomic():
        pks = [review.pk] if other is None or decision != ReviewDecision.LINK_OTHER else [review.pk, other.pk]
        locked = {r.pk: r for r in MatchReview.objects.select_for_update().filter(pk__in=pks).order_by("pk")}
        review = locked[review.pk]
        if review.status != ReviewStatus.OPEN:
            raise ValidationError(_("该匹配已审核。"))
        if decision == ReviewDecision.MERGE:
            return _review_link(actor, review, reason or _("主索引审核：确认同一人"))
        review = _review_settle(actor, review, ReviewStatus.DISTINCT)
        if decision == ReviewDecision.LINK_OTHER:
            assert other is not None  # noqa: S101 - checked above
            if locked[other.pk].status != ReviewStatus.OPEN:
                raise ValidationError({"other_review": [_("所选的另一条匹配已审核。")]})
            _review_link(actor, locked[other.pk], reason or _("主索引审核：确认为另一位候选患者"))
    return review


def _review_settle(actor: Actor, review: MatchReview, status: str) -> MatchReview:
    review.status = status
    review.decided_at = timezone.now()
    review.decided_by_name = _actor_name(actor)
    review.save(update_fields=["status", "decided_at", "decided_by_name", "merge", "updated_at"])
    return review


def _review_link(actor: Actor, review: MatchReview, reason: str) -> MatchReview:
    """The same person: merge the incoming identity's patient into the candidate (unless it is
    already there) and mark the item linked."""
    patient = Patient.objects.get(pk=SourceIdentity.objects.values_list("patient_id", flat=True).get(pk=review.identity_id))
    if patient.pk != review.candidate_id:
        candidate = Patient.objects.get(pk=review.candidate_id)
        review.merge = patient_merge(actor=actor, survivor=candidate, merged=patient, reason=reason)
    return _review_settle(actor, review, ReviewStatus.LINKED)


# --- re-linking the whole index (background, patients.tasks.index_relink) -----------------------------


@dataclasses.dataclass
class RelinkCounts:
    examined: int = 0
    merged: int = 0
    reviews: int = 0
    last_id: int = 0


def index_relink_batch(*, after_id: int, batch_size: int) -> RelinkCounts:
    """Re-link one batch of identities that still stand alone (link method `new`) with the active
    model: above the link threshold their patient is merged into the candidate (audited, by the
    system), between the thresholds a review item is opened. A pair a reviewer kept apart stays apart."""
    from yilian.accounts.actors import ANONYMOUS

    model = linkage_model_active()
    counts = RelinkCounts(last_id=after_id)
    identities = list(SourceIdentity.objects.filter(pk__gt=after_id, link_method=LinkMethod.NEW).order_by("pk")[:batch_size])
    for identity in identities:
        counts.examined += 1
        counts.last_id = identity.pk
        values = {f: getattr(identity, f) for f in _DEMOGRAPHICS}
        distinct = MatchReview.objects.filter(status=ReviewStatus.DISTINCT)
        kept_apart = set(distinct.filter(identity__patient=identity.patient_id).values_list("candidate_id", flat=True))
        kept_apart |= set(distinct.filter(candidate=identity.patient_id).values_list("identity__patient_id", flat=True))
        candidates = [
            c
            for c in identity_candidates(values, exclude_patient=identity.patient_id, model=model)
            if c.patient_id not in kept_apart
        ]
        if not candidates:
            continue
        best = candidates[0]
        if best.score >= model.link_threshold:
            # The golden patient registered first survives, whichever side the batch reaches first.
            older, newer = sorted((identity.patient_id, best.patient_id))
            survivor, merged = Patient.objects.get(pk=older), Patient.objects.get(pk=newer)
            if merged.merged_into_id is None and survivor.merged_into_id is None:
                patient_merge(
                    actor=ANONYMOUS,
                    survivor=survivor,
                    merged=merged,
                    reason=_("批量重新关联：匹配得分 %(score).1f（模型 v%(version)d）")
                    % {"score": best.score, "version": model.version},
                )
                counts.merged += 1
        else:
            fresh = [c for c in candidates if c.score >= model.review_threshold][:MAX_REVIEWS_PER_IDENTITY]
            before = MatchReview.objects.filter(identity=identity).count()
            _open_reviews(identity, fresh)
            counts.reviews += MatchReview.objects.filter(identity=identity).count() - before
    return counts
