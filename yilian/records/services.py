"""Writes to the shared health record.

`<resource>_upsert(*, institution, identity, source_id, data)` stores one row a member sent: it is
idempotent on (institution, source_id) — the same row again changes nothing, a changed row is
updated in place — validates everything first (ICD-10 codes against the catalogue, dates that
cannot be, negative amounts) and raises ValidationError with Chinese messages, writing nothing.
It writes the one row in a savepoint of its own, so it is atomic alone and inside a caller's
transaction (a message, an import chunk).

`service_request_create` and `result_recognise` are the clinician's side of 结果互认.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Generic, TypeVar

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from yilian.accounts.actors import Actor
from yilian.accounts.models import User
from yilian.accounts.roles import Permission
from yilian.core.rows import rows_cursor
from yilian.core.validators import validate_division_code
from yilian.organizations.models import Institution
from yilian.patients.models import Patient, SourceIdentity
from yilian.records.catalogue import TESTS_BY_CODE
from yilian.records.data import (
    ConditionData,
    DiagnosticReportData,
    DocumentReferenceData,
    EncounterData,
    InsuranceSettlementData,
    MedicationRequestData,
    ObservationData,
    ProcedureData,
)
from yilian.records.icd10 import icd10_lookup
from yilian.records.models import (
    ClinicalRecord,
    Condition,
    DiagnosticReport,
    DocumentReference,
    Encounter,
    EncounterClass,
    InsuranceSettlement,
    Interpretation,
    MedicationRequest,
    Observation,
    Procedure,
    ResultRecognition,
    ServiceRequest,
)

R = TypeVar("R", bound=ClinicalRecord)

# A sender's clock may run a little ahead of ours; beyond this a time is "in the future".
CLOCK_SKEW = dt.timedelta(minutes=10)
EARLIEST = dt.datetime(1900, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True)
class Upserted(Generic[R]):
    """The stored row; `created` for a new row, `changed` when an existing one was updated."""

    record: R
    created: bool
    changed: bool


# --- Validation shared by every resource ---------------------------------------------------------


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    if value is None or timezone.is_aware(value):
        return value
    return timezone.make_aware(value)


def _check_time(errors: dict[str, list[str]], field: str, value: dt.datetime | None) -> None:
    if value is None:
        return
    if value > timezone.now() + CLOCK_SKEW:
        errors.setdefault(field, []).append(_("时间不能晚于当前时间。"))
    elif value < EARLIEST:
        errors.setdefault(field, []).append(_("时间不合理（早于 1900 年）。"))


def _check_not_negative(errors: dict[str, list[str]], field: str, value: Decimal | int | None) -> None:
    if value is not None and value < 0:
        errors.setdefault(field, []).append(_("不能为负数。"))


def _raise(errors: dict[str, list[str]]) -> None:
    if errors:
        raise ValidationError(errors)


def _check_source(institution: Institution, identity: SourceIdentity, source_id: str) -> str:
    source_id = (source_id or "").strip()
    errors: dict[str, list[str]] = {}
    if not source_id:
        errors["source_id"] = [_("来源系统记录号不能为空。")]
    elif len(source_id) > 64:
        errors["source_id"] = [_("来源系统记录号最多 64 个字符。")]
    if identity.institution_id != institution.pk:
        errors["identity"] = [_("该源身份不属于发送机构。")]
    _raise(errors)
    return source_id


class _Encounters:
    """The sender's encounters that rows refer to (by the sender's id), looked up once per call:
    a batch writes its own encounters first and finds them here without asking again."""

    def __init__(self, institution: Institution) -> None:
        self.institution = institution
        self.known: dict[str, Encounter] = {}

    def fetch(self, source_ids: Iterable[str]) -> None:
        missing = {source_id for source_id in source_ids if source_id and source_id not in self.known}
        if missing:
            for encounter in Encounter.objects.filter(institution=self.institution, source_id__in=missing):
                self.known[encounter.source_id] = encounter

    def remember(self, encounter: Encounter) -> None:
        self.known[encounter.source_id] = encounter

    def get(self, identity: SourceIdentity, encounter_source_id: str) -> Encounter | None:
        if not encounter_source_id:
            return None
        self.fetch([encounter_source_id])
        encounter = self.known.get(encounter_source_id)
        if encounter is None or encounter.identity_id != identity.pk:
            raise ValidationError(
                {"encounter_source_id": [_("未找到该患者在本机构的就诊记录：%(id)s。") % {"id": encounter_source_id[:64]}]}
            )
        return encounter


def _upsert(
    model: type[R], *, institution: Institution, identity: SourceIdentity, source_id: str, fields: dict[str, Any]
) -> Upserted[R]:
    """Insert or update the row (institution, source_id) with `fields`, validated first.

    The row's only write, in one savepoint (inside the caller's transaction, or its own): a
    concurrent insert of the same row (IntegrityError on the unique constraint) rolls back to it
    and is retried once as an update."""
    relations = _relations(model)
    for attempt in (1, 2):
        existing = None
        try:
            with transaction.atomic():
                existing = model._default_manager.select_for_update().filter(institution=institution, source_id=source_id).first()
                record = existing or model(institution=institution, source_id=source_id)
                values = {"identity": identity, **fields}
                changed = existing is None or any(getattr(record, name) != value for name, value in values.items())
                if not changed:
                    return Upserted(record, created=False, changed=False)
                for name, value in values.items():
                    setattr(record, name, value)
                # Field checks only (lengths, choices, digits). The services above check every rule of
                # the model's check constraints with their own messages, the related rows are ones the
                # caller has just read, and the (institution, source_id) row is the one locked above:
                # full_clean would spend a query on each of those per row (the database keeps them all
                # as constraints besides).
                record.full_clean(exclude=relations, validate_unique=False, validate_constraints=False)
                record.save()
        except IntegrityError:
            if existing is None and attempt == 1:
                continue
            raise ValidationError(_("数据与已有记录冲突，请检查后重试。"), code="conflict") from None
        return Upserted(record, created=existing is None, changed=existing is not None)
    raise AssertionError("unreachable")  # pragma: no cover


def _relations(model: type[ClinicalRecord]) -> list[str]:
    return [field.name for field in model._meta.concrete_fields if field.is_relation]


# --- The resources -------------------------------------------------------------------------------


def _encounter_fields(
    institution: Institution, identity: SourceIdentity, data: EncounterData, encounters: _Encounters
) -> dict[str, Any]:
    started_at, ended_at = _aware(data.started_at), _aware(data.ended_at)
    errors: dict[str, list[str]] = {}
    _check_time(errors, "started_at", started_at)
    _check_time(errors, "ended_at", ended_at)
    if started_at and ended_at and ended_at < started_at:
        message = (
            _("出院时间不能早于入院时间。")
            if data.encounter_class == EncounterClass.INPATIENT
            else _("结束时间不能早于开始时间。")
        )
        errors.setdefault("ended_at", []).append(message)
    _check_not_negative(errors, "total_cost", data.total_cost)
    _check_not_negative(errors, "insurance_paid", data.insurance_paid)
    if not errors and data.insurance_paid > data.total_cost:
        errors["insurance_paid"] = [_("医保支付不能超过总费用。")]
    _raise(errors)
    return {
        "encounter_class": data.encounter_class,
        "started_at": started_at,
        "ended_at": ended_at,
        "department_name": data.department_name,
        "practitioner_name": data.practitioner_name,
        "reason": data.reason,
        "payer_type": data.payer_type,
        "total_cost": data.total_cost,
        "insurance_paid": data.insurance_paid,
    }


def encounter_upsert(
    *, institution: Institution, identity: SourceIdentity, source_id: str, data: EncounterData
) -> Upserted[Encounter]:
    """Store one encounter (就诊): outpatient, emergency, inpatient (admission and discharge), health check or follow-up."""
    source_id = _check_source(institution, identity, source_id)
    fields = _encounter_fields(institution, identity, data, _Encounters(institution))
    return _upsert(Encounter, institution=institution, identity=identity, source_id=source_id, fields=fields)


def _condition_fields(
    institution: Institution, identity: SourceIdentity, data: ConditionData, encounters: _Encounters
) -> dict[str, Any]:
    recorded_at = _aware(data.recorded_at)
    errors: dict[str, list[str]] = {}
    entry = icd10_lookup(data.icd10_code[:32]) if data.icd10_code else None
    if entry is None:
        errors["icd10_code"] = [_("不是有效的 ICD-10 编码：%(code)s。") % {"code": (data.icd10_code or "")[:32]}]
    _check_time(errors, "recorded_at", recorded_at)
    _raise(errors)
    assert entry is not None  # noqa: S101 - narrowed by the check above
    return {
        "icd10_code": entry.code,
        "display": data.display or entry.name[:100],
        "is_primary": data.is_primary,
        "recorded_at": recorded_at,
        "encounter": encounters.get(identity, data.encounter_source_id),
    }


def condition_upsert(
    *, institution: Institution, identity: SourceIdentity, source_id: str, data: ConditionData
) -> Upserted[Condition]:
    """Store one diagnosis; the ICD-10 code must be a WHO code or a 国家临床版 code with a valid WHO stem."""
    source_id = _check_source(institution, identity, source_id)
    fields = _condition_fields(institution, identity, data, _Encounters(institution))
    return _upsert(Condition, institution=institution, identity=identity, source_id=source_id, fields=fields)


def _interpretation(data: ObservationData) -> str:
    """The flag as sent, or derived from a numeric value and its reference range."""
    if data.interpretation or data.value_quantity is None:
        return data.interpretation
    if data.reference_high is not None and data.value_quantity > data.reference_high:
        return Interpretation.HIGH
    if data.reference_low is not None and data.value_quantity < data.reference_low:
        return Interpretation.LOW
    if data.reference_low is not None or data.reference_high is not None:
        return Interpretation.NORMAL
    return ""


def _observation_fields(
    institution: Institution, identity: SourceIdentity, data: ObservationData, encounters: _Encounters
) -> dict[str, Any]:
    effective_at = _aware(data.effective_at)
    errors: dict[str, list[str]] = {}
    _check_time(errors, "effective_at", effective_at)
    if data.value_quantity is None and not data.value_text:
        errors["value_quantity"] = [_("请提供数值结果或文字结果。")]
    if data.reference_low is not None and data.reference_high is not None and data.reference_low > data.reference_high:
        errors["reference_low"] = [_("参考下限不能大于参考上限。")]
    _raise(errors)
    return {
        "category": data.category,
        "code": data.code,
        "display": data.display,
        "value_quantity": data.value_quantity,
        "value_text": data.value_text,
        "unit": data.unit,
        "reference_low": data.reference_low,
        "reference_high": data.reference_high,
        "reference_text": data.reference_text,
        "interpretation": _interpretation(data),
        "effective_at": effective_at,
        "encounter": encounters.get(identity, data.encounter_source_id),
    }


def observation_upsert(
    *, institution: Institution, identity: SourceIdentity, source_id: str, data: ObservationData
) -> Upserted[Observation]:
    """Store one vital sign or lab result with its unit, reference range and abnormal flag."""
    source_id = _check_source(institution, identity, source_id)
    fields = _observation_fields(institution, identity, data, _Encounters(institution))
    return _upsert(Observation, institution=institution, identity=identity, source_id=source_id, fields=fields)


def _diagnostic_report_fields(
    institution: Institution, identity: SourceIdentity, data: DiagnosticReportData, encounters: _Encounters
) -> dict[str, Any]:
    effective_at, issued_at = _aware(data.effective_at), _aware(data.issued_at)
    errors: dict[str, list[str]] = {}
    _check_time(errors, "effective_at", effective_at)
    _check_time(errors, "issued_at", issued_at)
    if effective_at and issued_at and issued_at < effective_at:
        errors.setdefault("issued_at", []).append(_("报告时间不能早于检查时间。"))
    _raise(errors)
    return {
        "category": data.category,
        "code": data.code,
        "display": data.display,
        "text": data.text,
        "conclusion": data.conclusion,
        "performer_name": data.performer_name,
        "effective_at": effective_at,
        "issued_at": issued_at,
        "encounter": encounters.get(identity, data.encounter_source_id),
    }


def diagnostic_report_upsert(
    *, institution: Institution, identity: SourceIdentity, source_id: str, data: DiagnosticReportData
) -> Upserted[DiagnosticReport]:
    """Store one imaging, ECG, lab or pathology report."""
    source_id = _check_source(institution, identity, source_id)
    fields = _diagnostic_report_fields(institution, identity, data, _Encounters(institution))
    return _upsert(DiagnosticReport, institution=institution, identity=identity, source_id=source_id, fields=fields)


def _medication_request_fields(
    institution: Institution, identity: SourceIdentity, data: MedicationRequestData, encounters: _Encounters
) -> dict[str, Any]:
    authored_at = _aware(data.authored_at)
    errors: dict[str, list[str]] = {}
    _check_time(errors, "authored_at", authored_at)
    _check_not_negative(errors, "quantity", data.quantity)
    _check_not_negative(errors, "days_supply", data.days_supply)
    _raise(errors)
    return {
        "medication_code": data.medication_code,
        "medication_name": data.medication_name,
        "dosage_text": data.dosage_text,
        "quantity": data.quantity,
        "quantity_unit": data.quantity_unit,
        "days_supply": data.days_supply,
        "prescriber_name": data.prescriber_name,
        "authored_at": authored_at,
        "encounter": encounters.get(identity, data.encounter_source_id),
    }


def medication_request_upsert(
    *, institution: Institution, identity: SourceIdentity, source_id: str, data: MedicationRequestData
) -> Upserted[MedicationRequest]:
    """Store one prescription line."""
    source_id = _check_source(institution, identity, source_id)
    fields = _medication_request_fields(institution, identity, data, _Encounters(institution))
    return _upsert(MedicationRequest, institution=institution, identity=identity, source_id=source_id, fields=fields)


def _procedure_fields(
    institution: Institution, identity: SourceIdentity, data: ProcedureData, encounters: _Encounters
) -> dict[str, Any]:
    performed_at = _aware(data.performed_at)
    errors: dict[str, list[str]] = {}
    _check_time(errors, "performed_at", performed_at)
    if data.grade is not None and not 1 <= data.grade <= 4:
        errors["grade"] = [_("手术分级为 1–4 级。")]
    _raise(errors)
    return {
        "code": data.code,
        "display": data.display,
        "grade": data.grade,
        "performer_name": data.performer_name,
        "performed_at": performed_at,
        "encounter": encounters.get(identity, data.encounter_source_id),
    }


def procedure_upsert(
    *, institution: Institution, identity: SourceIdentity, source_id: str, data: ProcedureData
) -> Upserted[Procedure]:
    """Store one operation or procedure with its grade (手术分级 1–4)."""
    source_id = _check_source(institution, identity, source_id)
    fields = _procedure_fields(institution, identity, data, _Encounters(institution))
    return _upsert(Procedure, institution=institution, identity=identity, source_id=source_id, fields=fields)


def _document_reference_fields(
    institution: Institution, identity: SourceIdentity, data: DocumentReferenceData, encounters: _Encounters
) -> dict[str, Any]:
    dated_at = _aware(data.dated_at)
    errors: dict[str, list[str]] = {}
    _check_time(errors, "dated_at", dated_at)
    if not data.text and not data.attachment_url:
        errors["text"] = [_("请提供文书内容或附件地址。")]
    _raise(errors)
    return {
        "kind": data.kind,
        "title": data.title,
        "text": data.text,
        "attachment_url": data.attachment_url,
        "content_type": data.content_type,
        "author_name": data.author_name,
        "dated_at": dated_at,
        "encounter": encounters.get(identity, data.encounter_source_id),
    }


def document_reference_upsert(
    *, institution: Institution, identity: SourceIdentity, source_id: str, data: DocumentReferenceData
) -> Upserted[DocumentReference]:
    """Store one clinical document (discharge summary, referral letter, attachment by address)."""
    source_id = _check_source(institution, identity, source_id)
    fields = _document_reference_fields(institution, identity, data, _Encounters(institution))
    return _upsert(DocumentReference, institution=institution, identity=identity, source_id=source_id, fields=fields)


def _insurance_settlement_fields(
    institution: Institution, identity: SourceIdentity, data: InsuranceSettlementData, encounters: _Encounters
) -> dict[str, Any]:
    settled_at = _aware(data.settled_at)
    provider = data.provider_institution
    errors: dict[str, list[str]] = {}
    _check_time(errors, "settled_at", settled_at)
    for field in ("total_cost", "fund_paid", "personal_paid"):
        _check_not_negative(errors, field, getattr(data, field))
    if not errors and data.fund_paid + data.personal_paid > data.total_cost:
        errors["fund_paid"] = [_("统筹基金支付与个人支付之和不能超过医疗总费用。")]
    if provider is None and not data.provider_name:
        errors["provider_name"] = [_("请注明就诊机构（成员单位或机构名称）。")]
    if data.provider_region:
        try:
            validate_division_code(data.provider_region)
        except ValidationError as exc:
            errors["provider_region"] = exc.messages
    _raise(errors)
    county = institution.authority.division_code
    if provider is not None:
        within_county = provider.authority_id == institution.authority_id
        region = data.provider_region or (county if within_county else "")
    else:
        region = data.provider_region
        within_county = bool(region) and region == county
    return {
        "encounter_class": data.encounter_class,
        "payer_type": data.payer_type,
        "provider_institution": provider,
        "provider_name": data.provider_name or (provider.name if provider else ""),
        "provider_code": data.provider_code,
        "provider_region": region,
        "within_county": within_county,
        "settled_at": settled_at,
        "total_cost": data.total_cost,
        "fund_paid": data.fund_paid,
        "personal_paid": data.personal_paid,
        "encounter": encounters.get(identity, data.encounter_source_id),
    }


def insurance_settlement_upsert(
    *, institution: Institution, identity: SourceIdentity, source_id: str, data: InsuranceSettlementData
) -> Upserted[InsuranceSettlement]:
    """Store one insurance settlement; the provider may be outside the consortium and the county.

    `within_county` is true when the provider is an institution of the sender's health authority,
    or its region code is the authority's own division code."""
    source_id = _check_source(institution, identity, source_id)
    fields = _insurance_settlement_fields(institution, identity, data, _Encounters(institution))
    return _upsert(InsuranceSettlement, institution=institution, identity=identity, source_id=source_id, fields=fields)


# --- Several rows of one message -----------------------------------------------------------------


@dataclass(frozen=True)
class RecordRow:
    """One row for `records_upsert`: whose it is, the sender's id for it, and its data (the type of
    `data` says which resource it is)."""

    identity: SourceIdentity
    source_id: str
    data: (
        EncounterData
        | ConditionData
        | ObservationData
        | DiagnosticReportData
        | MedicationRequestData
        | ProcedureData
        | DocumentReferenceData
        | InsuranceSettlementData
    )


class RecordRowError(ValidationError):
    """A ValidationError of the row at `index` (the rows before it may have been written in the
    caller's transaction, as with one `<resource>_upsert` call after another)."""

    def __init__(self, index: int, error: ValidationError) -> None:
        super().__init__(error.error_dict if hasattr(error, "error_dict") else error.error_list)
        self.index = index


_FIELDS: dict[type, tuple[type[ClinicalRecord], Any]] = {
    EncounterData: (Encounter, _encounter_fields),
    ConditionData: (Condition, _condition_fields),
    ObservationData: (Observation, _observation_fields),
    DiagnosticReportData: (DiagnosticReport, _diagnostic_report_fields),
    MedicationRequestData: (MedicationRequest, _medication_request_fields),
    ProcedureData: (Procedure, _procedure_fields),
    DocumentReferenceData: (DocumentReference, _document_reference_fields),
    InsuranceSettlementData: (InsuranceSettlement, _insurance_settlement_fields),
}


def records_upsert(*, institution: Institution, rows: Sequence[RecordRow]) -> list[Upserted[Any]]:
    """Store the rows of one message in order, with the same rules and results as one
    `<resource>_upsert` call per row, but each run of rows of one kind read with one query and its
    new rows written with one statement (an HL7 message's OBX segments, a Bundle's Observations).

    Raises RecordRowError (a ValidationError naming the row) for the first row it refuses.

    All in one savepoint; when a statement breaks a constraint (a concurrent writer of the same
    rows), it is rolled back and done again with a savepoint per run and row by row where needed."""
    try:
        with transaction.atomic():
            return _records_upsert(institution, rows, guarded=False)
    except IntegrityError:
        return _records_upsert(institution, rows, guarded=True)


def _records_upsert(institution: Institution, rows: Sequence[RecordRow], *, guarded: bool) -> list[Upserted[Any]]:
    encounters = _Encounters(institution)
    out: list[Upserted[Any]] = []
    start = 0
    while start < len(rows):
        model, fields_of = _FIELDS[type(rows[start].data)]
        end = start + 1
        while end < len(rows) and type(rows[end].data) is type(rows[start].data):
            end += 1
        run = rows[start:end]
        encounters.fetch(getattr(row.data, "encounter_source_id", "") for row in run)
        checked = []
        for index, row in enumerate(run, start=start):
            try:
                source_id = _check_source(institution, row.identity, row.source_id)
                checked.append((row.identity, source_id, fields_of(institution, row.identity, row.data, encounters)))
            except ValidationError as exc:
                raise RecordRowError(index, exc) from None
        written = (
            _upsert_run(model, institution=institution, rows=checked, first_index=start)
            if guarded or len({source_id for _identity, source_id, _fields in checked}) < len(checked)
            else _upsert_distinct(model, institution=institution, rows=checked, first_index=start)
        )
        for upserted in written:
            if isinstance(upserted.record, Encounter):
                encounters.remember(upserted.record)
        out += written
        start = end
    return out


def _upsert_run(
    model: type[R], *, institution: Institution, rows: list[tuple[SourceIdentity, str, dict[str, Any]]], first_index: int
) -> list[Upserted[R]]:
    """`_upsert` for several rows of one kind, in one savepoint: the new rows inserted with one
    statement that skips those already stored, then the stored ones read with one locking query and
    updated where they changed. A row sent twice in the run, or a concurrent write that breaks a
    constraint, falls back to `_upsert` row by row (which retries the insert as an update)."""
    source_ids = [source_id for _identity, source_id, _fields in rows]
    if len(set(source_ids)) == len(source_ids):
        try:
            with transaction.atomic():
                return _upsert_distinct(model, institution=institution, rows=rows, first_index=first_index)
        except IntegrityError:
            pass
    out = []
    for index, (identity, source_id, fields) in enumerate(rows, start=first_index):
        try:
            out.append(_upsert(model, institution=institution, identity=identity, source_id=source_id, fields=fields))
        except ValidationError as exc:
            raise RecordRowError(index, exc) from None
    return out


def _upsert_distinct(
    model: type[R], *, institution: Institution, rows: list[tuple[SourceIdentity, str, dict[str, Any]]], first_index: int
) -> list[Upserted[R]]:
    relations = _relations(model)
    fresh = [
        model(institution=institution, source_id=source_id, identity=identity, **fields) for identity, source_id, fields in rows
    ]
    try:
        for record in fresh:
            # Field checks only, as in _upsert.
            record.full_clean(exclude=relations, validate_unique=False, validate_constraints=False)
    except ValidationError:
        # A refused row: read first, so that a stored row sent again unchanged is not checked
        # (as one `_upsert` after another would) and the first refused row is the one named.
        return _upsert_read_first(model, institution=institution, rows=rows, first_index=first_index)
    inserted = _insert_new(model, fresh)
    out: list[Upserted[R] | None] = [
        Upserted(record, created=True, changed=False) if record.source_id in inserted else None for record in fresh
    ]
    stored = [position for position, done in enumerate(out) if done is None]
    if stored:
        existing = {
            record.source_id: record
            for record in model._default_manager.select_for_update().filter(
                institution=institution, source_id__in=[rows[position][1] for position in stored]
            )
        }
        for position in stored:
            identity, source_id, fields = rows[position]
            record = existing[source_id]
            values = {"identity": identity, **fields}
            if all(getattr(record, name) == value for name, value in values.items()):
                out[position] = Upserted(record, created=False, changed=False)
                continue
            for name, value in values.items():
                setattr(record, name, value)
            record.save()
            out[position] = Upserted(record, created=False, changed=True)
    return [done for done in out if done is not None]


def _upsert_read_first(
    model: type[R], *, institution: Institution, rows: list[tuple[SourceIdentity, str, dict[str, Any]]], first_index: int
) -> list[Upserted[R]]:
    relations = _relations(model)
    existing = {
        record.source_id: record
        for record in model._default_manager.select_for_update().filter(
            institution=institution, source_id__in=[source_id for _identity, source_id, _fields in rows]
        )
    }
    out: list[Upserted[R]] = []
    new: list[R] = []
    for index, (identity, source_id, fields) in enumerate(rows, start=first_index):
        record = existing.get(source_id) or model(institution=institution, source_id=source_id)
        values = {"identity": identity, **fields}
        if source_id in existing and all(getattr(record, name) == value for name, value in values.items()):
            out.append(Upserted(record, created=False, changed=False))
            continue
        for name, value in values.items():
            setattr(record, name, value)
        try:
            record.full_clean(exclude=relations, validate_unique=False, validate_constraints=False)
        except ValidationError as exc:
            raise RecordRowError(index, exc) from None
        if source_id in existing:
            record.save()
        else:
            new.append(record)
        out.append(Upserted(record, created=source_id not in existing, changed=source_id in existing))
    model._default_manager.bulk_create(new)
    return out


def _insert_new(model: type[R], records: list[R]) -> set[str]:
    """INSERT the records in one statement, skipping those whose (institution, source_id) is
    already stored; gives the inserted ones their primary key and returns their source ids. The
    SQL is built from the model's fields (what `bulk_create` does, without compiling a query each
    time: that cost more CPU than the database spent on the insert)."""
    connection = transaction.get_connection()
    meta = model._meta
    fields = [field for field in meta.concrete_fields if not field.primary_key]
    quote = connection.ops.quote_name
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    column = {field.name: quote(field.column) for field in fields}
    source = column["source_id"]
    keys: dict[str, Any] = {}
    for chunk in _chunks(connection, fields, records):
        sql = (
            f"INSERT INTO {quote(meta.db_table)} ({', '.join(column.values())}) "  # noqa: S608 - names from the model
            f"VALUES {', '.join([row] * len(chunk))} "
            f"ON CONFLICT ({column['institution']}, {source}) DO NOTHING "
            f"RETURNING {quote(meta.pk.column)}, {source}"
        )
        parameters = [field.get_db_prep_save(field.pre_save(record, True), connection) for record in chunk for field in fields]
        with rows_cursor(connection, len(chunk)) as cursor:
            cursor.execute(sql, parameters)
            keys.update({source_id: pk for pk, source_id in cursor.fetchall()})
    for record in records:
        if record.source_id in keys:
            record.pk = keys[record.source_id]
            record._state.adding, record._state.db = False, connection.alias
    return set(keys)


def _chunks(connection: Any, fields: list[Any], records: list[R]) -> list[list[R]]:
    """The records in groups small enough for one statement's parameters (SQLite's limit, and
    PostgreSQL's 65,535)."""
    size = max(1, min(connection.ops.bulk_batch_size(fields, records), 65535 // len(fields)))
    return [records[start : start + size] for start in range(0, len(records), size)]


# --- 结果互认 ----------------------------------------------------------------------------------


def _require_clinician(actor: Actor) -> tuple[Institution, User]:
    actor.require(Permission.RESULT_RECOGNISE)
    if actor.institution is None or actor.user is None or actor.api_key is not None:
        raise ValidationError(_("请以所在机构的临床身份操作。"))
    return actor.institution, actor.user


@transaction.atomic
def service_request_create(*, actor: Actor, patient: Patient, code: str, reason: str = "") -> ServiceRequest:
    """Order a test (开检查/检验) for a patient the actor has already been let in to see."""
    institution, user = _require_clinician(actor)
    test = TESTS_BY_CODE.get(code)
    if test is None:
        raise ValidationError({"code": [_("请选择检查/检验项目。")]})
    if len(reason) > 200:
        raise ValidationError({"reason": [_("开单理由最多 200 个字符。")]})
    return ServiceRequest.objects.create(
        patient=patient,
        institution=institution,
        requester=user,
        category=test.category,
        code=test.code,
        display=test.name,
        reason=reason,
        authored_at=timezone.now(),
    )


@transaction.atomic
def result_recognise(
    *,
    actor: Actor,
    patient: Patient,
    result: Observation | DiagnosticReport,
    code: str,
    service_request: ServiceRequest | None = None,
) -> ResultRecognition:
    """Record that the actor accepts `result` (another member's, within its validity window) for
    the test `code` instead of repeating it. The same clinician recognising the same result for the
    same test on the same day is one recognition, not two."""
    from yilian.records.selectors import recognisable_results

    institution, user = _require_clinician(actor)
    test = TESTS_BY_CODE.get(code)
    if test is None:
        raise ValidationError({"code": [_("请选择检查/检验项目。")]})
    allowed = {(r.kind, r.record.pk) for r in recognisable_results(actor=actor, patient=patient, test=test)}
    kind = "observation" if isinstance(result, Observation) else "report"
    if (kind, result.pk) not in allowed:
        raise ValidationError(_("该结果不能互认：不是其他成员单位的同一项目结果，或已超过互认有效期。"))
    if service_request is not None and (service_request.patient_id != patient.pk or service_request.code != code):
        raise ValidationError({"service_request": [_("该申请不属于此患者或此项目。")]})
    match = {"observation": result} if kind == "observation" else {"diagnostic_report": result}
    today = timezone.localdate()
    start = timezone.make_aware(dt.datetime.combine(today, dt.time.min))
    existing = (
        ResultRecognition.objects.select_for_update()
        .filter(user=user, institution=institution, patient=patient, code=code, recognised_at__gte=start, **match)
        .first()
    )
    if existing is not None:
        return existing
    return ResultRecognition.objects.create(
        patient=patient,
        user=user,
        institution=institution,
        result_institution_id=result.institution_id,
        service_request=service_request,
        category=test.category,
        code=test.code,
        display=test.name,
        recognised_at=timezone.now(),
        **match,
    )
