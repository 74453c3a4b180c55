"""Items → the MPI and the shared record (ADR 0003): `patients.services.identity_ingest` for
identities, `records.services.<resource>_upsert` for clinical rows, `patient_merge` for ADT^A40.

This is the one place that knows those interfaces; it runs inside the caller's transaction, so a
message (or a transaction Bundle) is written whole or not at all.

Records has no ImagingStudy: a study is kept as an imaging DiagnosticReport (modality as its code,
the Study Instance UID in its text), under the source id `IS-<id>` so that it never overwrites the
report a PACS sends under the same accession number.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from uuid import UUID

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.translation import gettext as _

from yilian.accounts.actors import Actor
from yilian.core.rows import rows_cursor
from yilian.interop.items import IdentityItem, Item, MergeItem, RecordItem
from yilian.organizations.models import Institution
from yilian.patients.models import SourceIdentity
from yilian.patients.services import IdentityRowError, identities_ingest, identity_ingest, patient_merge
from yilian.records import services as records
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
from yilian.records.models import Encounter
from yilian.referrals.models import Referral
from yilian.referrals.services import referrals_mark_arrived

ENCOUNTER_CLASSES = {
    "AMB": "outpatient",
    "VR": "outpatient",
    "EMER": "emergency",
    "IMP": "inpatient",
    "ACUTE": "inpatient",
    "NONAC": "inpatient",
    "SS": "inpatient",
    "OBSENC": "inpatient",
    "PRENC": "outpatient",
    "HH": "follow_up",
    "FLD": "follow_up",
    "CHECKUP": "health_check",
    "FOLLOWUP": "follow_up",
}
PAYER_TYPES = {
    "职工医保": "employee",
    "职工基本医疗保险": "employee",
    "居民医保": "resident",
    "城乡居民基本医疗保险": "resident",
    "新农合": "resident",
    "医疗救助": "assistance",
    "商业保险": "commercial",
    "商业医疗保险": "commercial",
    "公费医疗": "public",
    "自费": "self_pay",
    "全自费": "self_pay",
    "其他": "other",
}
REPORT_CATEGORIES = {
    "LAB": "laboratory",
    "laboratory": "laboratory",
    "RAD": "imaging",
    "imaging": "imaging",
    "EC": "ecg",
    "ECG": "ecg",
    "PAT": "pathology",
    "pathology": "pathology",
}
OBSERVATION_CATEGORIES = {"vital-signs": "vital_signs", "vital_signs": "vital_signs", "laboratory": "laboratory"}
DOCUMENT_KINDS = {"18842-5": "discharge_summary", "57133-1": "referral_letter", "11506-3": "progress_note"}
INTERPRETATIONS = {"N", "H", "L", "HH", "LL", "A"}


@dataclass(frozen=True)
class Applied:
    """What one item became: the FHIR type and our id for it, and whether it was new."""

    resource: str
    uuid: UUID
    created: bool


def _missing(field: str, label: str) -> ValidationError:
    return ValidationError({field: [_("缺少%(label)s。") % {"label": label}]})


def _required(value: Any, field: str, label: str) -> Any:
    if value is None or value == "":
        raise _missing(field, label)
    return value


def _money(value: Decimal | None) -> Decimal:
    return value if value is not None else Decimal(0)


def _range(text: str) -> tuple[Decimal | None, Decimal | None]:
    low, sep, high = text.partition("-")
    try:
        return (Decimal(low.strip()), Decimal(high.strip())) if sep and low.strip() and high.strip() else (None, None)
    except ArithmeticError:
        return None, None


def _cut(value: Any, length: int) -> str:
    """A free-text field (a name, a title) cut to the column; codes are never cut."""
    return str(value or "")[:length]


def _encounter(v: dict[str, Any]) -> EncounterData:
    code = str(v.get("class_code", "")).upper()
    if code not in ENCOUNTER_CLASSES:
        raise ValidationError({"class": [_("无法识别的就诊类型：%(code)s。") % {"code": code[:20] or "空"}]})
    payer = str(v.get("payer_type", ""))
    return EncounterData(
        encounter_class=ENCOUNTER_CLASSES[code],
        started_at=_required(v.get("start"), "period.start", _("就诊开始时间")),
        ended_at=v.get("end"),
        department_name=_cut(v.get("department"), 50),
        practitioner_name=_cut(v.get("practitioner"), 50),
        reason=_cut(v.get("reason"), 200),
        payer_type=PAYER_TYPES.get(payer, payer if payer in PAYER_TYPES.values() else "self_pay"),
        total_cost=_money(v.get("total_cost")),
        insurance_paid=_money(v.get("insurance_paid")),
    )


def _condition(v: dict[str, Any]) -> ConditionData:
    return ConditionData(
        icd10_code=v["code"],
        recorded_at=_required(v.get("recorded"), "recordedDate", _("诊断日期")),
        display=_cut(v.get("text"), 100),
        is_primary=bool(v.get("primary")),
        encounter_source_id=v.get("encounter_source_id", ""),
    )


def _observation(v: dict[str, Any]) -> ObservationData:
    low, high = _range(v.get("reference_range", ""))
    flag = str(v.get("abnormal_flag", "")).upper()
    return ObservationData(
        category=OBSERVATION_CATEGORIES.get(v.get("category", ""), "laboratory"),
        code=_required(v.get("code"), "code", _("项目编码")),
        display=_cut(v.get("text") or v["code"], 100),
        effective_at=_required(v.get("effective"), "effective", _("结果时间")),
        value_quantity=v.get("value_number"),
        value_text=_cut(v.get("value_text"), 200),
        unit=v.get("unit", ""),
        reference_low=low,
        reference_high=high,
        reference_text=_cut(v.get("reference_range"), 100) if low is None else "",
        interpretation=flag if flag in INTERPRETATIONS else "",
        encounter_source_id=v.get("encounter_source_id", ""),
    )


def _report(v: dict[str, Any]) -> DiagnosticReportData:
    category = REPORT_CATEGORIES.get(v.get("category", ""), REPORT_CATEGORIES.get(str(v.get("category", "")).upper()))
    if category is None:
        raise ValidationError({"category": [_("无法识别的报告类别：%(code)s。") % {"code": str(v.get("category"))[:20] or "空"}]})
    return DiagnosticReportData(
        category=category,
        code=_required(v.get("code"), "code", _("项目编码")),
        display=_cut(v.get("text") or v["code"], 100),
        effective_at=_required(v.get("effective") or v.get("issued"), "effective", _("检查时间")),
        text=_cut(v.get("findings"), 4000),
        conclusion=_cut(v.get("conclusion"), 2000),
        performer_name=_cut(v.get("performer"), 50),
        issued_at=v.get("issued"),
        encounter_source_id=v.get("encounter_source_id", ""),
    )


def _imaging(v: dict[str, Any]) -> DiagnosticReportData:
    uid = f"Study Instance UID {v['study_uid']}" if v.get("study_uid") else ""
    counts = ""
    if v.get("series_count") is not None or v.get("instance_count") is not None:
        counts = _("序列 %(series)s，图像 %(instances)s") % {
            "series": v.get("series_count") if v.get("series_count") is not None else "—",
            "instances": v.get("instance_count") if v.get("instance_count") is not None else "—",
        }
    return DiagnosticReportData(
        category="imaging",
        code=_cut(v.get("modality") or "IMAGING", 32),
        display=_cut(v.get("text") or _("影像检查"), 100),
        effective_at=_required(v.get("started"), "started", _("检查时间")),
        text="\n".join(part for part in (uid, counts) if part),
        encounter_source_id=v.get("encounter_source_id", ""),
    )


def _medication(v: dict[str, Any]) -> MedicationRequestData:
    return MedicationRequestData(
        medication_name=_cut(_required(v.get("text") or v.get("code"), "medication", _("药品名称")), 100),
        authored_at=_required(v.get("authored"), "authoredOn", _("开具时间")),
        medication_code=v.get("code", ""),
        dosage_text=_cut(v.get("dosage"), 200),
        quantity=v.get("quantity"),
        quantity_unit=_cut(v.get("quantity_unit"), 16),
        days_supply=v.get("days_supply"),
        prescriber_name=_cut(v.get("prescriber"), 50),
        encounter_source_id=v.get("encounter_source_id", ""),
    )


def _procedure(v: dict[str, Any]) -> ProcedureData:
    grade = str(v.get("grade", ""))
    return ProcedureData(
        code=_required(v.get("code"), "code", _("手术/操作编码")),
        display=_cut(v.get("text") or v["code"], 100),
        performed_at=_required(v.get("performed"), "performed", _("手术/操作时间")),
        grade=int(grade) if grade.isdigit() and len(grade) < 3 else None,
        performer_name=_cut(v.get("performer"), 50),
        encounter_source_id=v.get("encounter_source_id", ""),
    )


def _document(v: dict[str, Any]) -> DocumentReferenceData:
    return DocumentReferenceData(
        kind=DOCUMENT_KINDS.get(v.get("type_code", ""), "attachment" if v.get("url") and not v.get("text") else "other"),
        title=_cut(_required(v.get("title") or v.get("type"), "title", _("文书标题")), 100),
        dated_at=_required(v.get("date"), "date", _("文书日期")),
        text=v.get("text", ""),
        attachment_url=v.get("url", ""),
        content_type=_cut(v.get("content_type"), 100),
        author_name=_cut(v.get("author"), 50),
        encounter_source_id=v.get("encounter_source_id", ""),
    )


def _settlement(v: dict[str, Any], institution: Institution) -> InsuranceSettlementData:
    # No provider named: the sender settled its own visit.
    own = not (v.get("provider_name") or v.get("provider_code") or v.get("provider_region"))
    return InsuranceSettlementData(
        encounter_class=ENCOUNTER_CLASSES.get(str(v.get("class_code") or "AMB").upper(), "outpatient"),
        payer_type=PAYER_TYPES.get(v.get("payer_type", ""), "resident"),
        settled_at=_required(v.get("settled"), "settled", _("结算时间")),
        total_cost=_required(v.get("total"), "total", _("总费用")),
        fund_paid=_money(v.get("fund_paid")),
        personal_paid=_money(v.get("self_paid")),
        provider_institution=institution if own else None,
        provider_name=_cut(v.get("provider_name"), 100),
        provider_code=v.get("provider_code", ""),
        provider_region=v.get("provider_region", ""),
        encounter_source_id=v.get("encounter_source_id", ""),
    )


def _write(item: RecordItem, institution: Institution, identity: SourceIdentity, data: Any) -> records.Upserted[Any]:
    kwargs: dict[str, Any] = {"institution": institution, "identity": identity, "source_id": _source_id(item)}
    match item.resource:
        case "Encounter":
            return records.encounter_upsert(**kwargs, data=data)
        case "Condition":
            return records.condition_upsert(**kwargs, data=data)
        case "Observation":
            return records.observation_upsert(**kwargs, data=data)
        case "DiagnosticReport" | "ImagingStudy":
            return records.diagnostic_report_upsert(**kwargs, data=data)
        case "MedicationRequest":
            return records.medication_request_upsert(**kwargs, data=data)
        case "Procedure":
            return records.procedure_upsert(**kwargs, data=data)
        case "DocumentReference":
            return records.document_reference_upsert(**kwargs, data=data)
        case "InsuranceSettlement":
            return records.insurance_settlement_upsert(**kwargs, data=data)
    raise ValidationError(_("不接收的资源类型：%(name)s。") % {"name": item.resource})


def _source_id(item: RecordItem) -> str:
    return f"IS-{item.source_id}" if item.resource == "ImagingStudy" else item.source_id


def build(item: RecordItem, institution: Institution) -> Any:
    """The records dataclass of one item (ValidationError when a required value is missing)."""
    v = item.values
    match item.resource:
        case "Encounter":
            return _encounter(v)
        case "Condition":
            return _condition(v)
        case "Observation":
            return _observation(v)
        case "DiagnosticReport":
            return _report(v)
        case "ImagingStudy":
            return _imaging(v)
        case "MedicationRequest":
            return _medication(v)
        case "Procedure":
            return _procedure(v)
        case "DocumentReference":
            return _document(v)
        case "InsuranceSettlement":
            return _settlement(v, institution)
    raise ValidationError(_("不接收的资源类型：%(name)s。") % {"name": item.resource})


def _located(exc: ValidationError, item: RecordItem) -> ValidationError:
    """The same errors, each field named after the item (Condition[D0001].icd10_code)."""
    where = f"{item.resource}[{item.source_id[:64]}]"
    if hasattr(exc, "error_dict"):
        return ValidationError(
            {f"{where}.{name}" if name != "__all__" else where: messages for name, messages in exc.message_dict.items()}
        )
    return ValidationError({where: exc.messages})


def mark_arrivals(*, patient_ids: set[int], institution_id: int) -> None:
    """`referrals_mark_arrived` for patients seen here, asked only when one of them has a referral to
    this institution at all: most visits are not arrivals, and one plain indexed query costs a
    fraction of the full lookup (two correlated subqueries the ORM compiles anew each time)."""
    if not patient_ids:
        return
    connection = transaction.get_connection()
    quote = connection.ops.quote_name
    meta = Referral._meta
    sql = (
        f"SELECT 1 FROM {quote(meta.db_table)} WHERE {quote(meta.get_field('destination_institution').column)} = %s"  # noqa: S608 - names from the model
        f" AND {quote(meta.get_field('patient').column)} IN ({', '.join(['%s'] * len(patient_ids))}) LIMIT 1"
    )
    with rows_cursor(connection, len(patient_ids)) as cursor:
        cursor.execute(sql, [institution_id, *sorted(patient_ids)])
        referred = cursor.fetchone() is not None
    if referred:
        referrals_mark_arrived(patient_ids=patient_ids, institution_id=institution_id)


class Applier:
    """Writes the items of one message; remembers the identities it met so later items find them."""

    def __init__(self, *, institution: Institution, actor: Actor | None = None, dry_run: bool = False) -> None:
        self.institution = institution
        self.actor = actor
        self.dry_run = dry_run
        self.identities: dict[str, SourceIdentity] = {}

    def identity(self, local_id: str) -> SourceIdentity:
        found = self.identities.get(local_id)
        if found is None:
            found = SourceIdentity.objects.filter(institution=self.institution, local_id=local_id).first()
            if found is None:
                raise ValidationError(
                    {"patient": [_("患者 %(id)s 尚未在本机构登记：请先发送患者信息（Patient / PID）。") % {"id": local_id[:64]}]}
                )
            self.identities[local_id] = found
        return found

    def apply_all(self, items: Sequence[Item]) -> list[Applied | None]:
        """Apply items in order, one result per item. Consecutive record items go to the records
        service together (one read and one insert per run of one kind instead of several per row);
        the first item refused, in order, is the one reported, as when they went one by one."""
        results: list[Applied | None] = []
        pending: list[RecordItem] = []
        for item in items:
            if isinstance(item, RecordItem) and not self.dry_run:
                pending.append(item)
                continue
            results += self._records(pending)
            pending = []
            results.append(self.apply(item))
        results += self._records(pending)
        return results

    def _records(self, items: list[RecordItem]) -> list[Applied | None]:
        rows: list[records.RecordRow] = []
        for position, item in enumerate(items):
            try:
                data = build(item, self.institution)
                identity = self.identity(item.patient_local_id)
            except ValidationError as exc:
                # The rows before it are checked (and written: the caller's transaction rolls
                # back) first, so that an earlier row's error is the one reported.
                self._records(items[:position])
                raise _located(exc, item) from None
            rows.append(records.RecordRow(identity=identity, source_id=_source_id(item), data=data))
        if not rows:
            return []
        try:
            upserted = records.records_upsert(institution=self.institution, rows=rows)
        except records.RecordRowError as exc:
            raise _located(exc, items[exc.index]) from None
        self._arrivals([done.record for done in upserted], [row.identity for row in rows])
        return [Applied(item.resource, done.record.uuid, done.created) for item, done in zip(items, upserted, strict=True)]

    def _arrivals(self, written: Sequence[Any], identities: Sequence[SourceIdentity]) -> None:
        """A visit or admission at this institution may be a referred patient arriving (双向转诊)."""
        patient_ids = {
            identity.patient_id for record, identity in zip(written, identities, strict=True) if isinstance(record, Encounter)
        }
        if patient_ids:
            mark_arrivals(patient_ids=patient_ids, institution_id=self.institution.pk)

    def apply(self, item: Item) -> Applied | None:
        if isinstance(item, IdentityItem):
            if self.dry_run:
                self.identities.setdefault(item.data.local_id, SourceIdentity(local_id=item.data.local_id))
                return None
            outcome = identity_ingest(institution=self.institution, data=item.data)
            self.identities[item.data.local_id] = outcome.identity
            return Applied("Patient", outcome.patient.uuid, outcome.created)
        if isinstance(item, RecordItem):
            try:
                data = build(item, self.institution)
                identity = self.identity(item.patient_local_id)
                if self.dry_run:
                    return None
                upserted = _write(item, self.institution, identity, data)
            except ValidationError as exc:
                raise _located(exc, item) from None
            self._arrivals([upserted.record], [identity])
            return Applied(item.resource, upserted.record.uuid, upserted.created)
        return self._merge(item)

    def _merge(self, item: MergeItem) -> Applied | None:
        survivor = self.identity(item.survivor_local_id)
        merged = self.identity(item.merged_local_id)
        if self.dry_run or survivor.patient_id == merged.patient_id:
            return None  # already one person: a second A40 changes nothing
        if self.actor is None:
            raise ValidationError(_("合并患者需要发送机构的身份。"))
        patient_merge(
            actor=self.actor,
            survivor=survivor.patient,
            merged=merged.patient,
            reason=_("HL7 ADT^A40：%(merged)s 并入 %(survivor)s")
            % {"merged": item.merged_local_id, "survivor": item.survivor_local_id},
        )
        return Applied("Patient", survivor.patient.uuid, False)


# --- Several messages of one sender at once ------------------------------------------------


class MessageRefused(Exception):
    """Message `index` of a batch was refused with `error` (a ValidationError): the caller's
    transaction rolls back, and the caller applies the messages before it again and that one alone."""

    def __init__(self, index: int, error: ValidationError) -> None:
        super().__init__(str(error))
        self.index = index
        self.error = error


def apply_messages(*, institution: Institution, messages: Sequence[Sequence[Item]]) -> list[list[Applied]]:
    """The items of several messages of one sender, with the outcome of applying them message after
    message (an `Applier` per message) in the caller's transaction, in a few queries for the whole
    batch: every identity through one `identities_ingest`, every clinical row through one
    `records_upsert` (encounters first, then each kind in one run). No merges (ADT^A40 goes alone).

    Raises MessageRefused naming a refused message; what was written is the caller's to roll back."""
    owners: list[int] = []
    identity_items: list[IdentityItem] = []
    for index, items in enumerate(messages):
        for item in items:
            if isinstance(item, MergeItem):
                raise ValueError("apply_messages does not merge patients")
            if isinstance(item, IdentityItem):
                owners.append(index)
                identity_items.append(item)
    try:
        outcomes = identities_ingest(institution=institution, data=[item.data for item in identity_items])
    except IdentityRowError as exc:
        raise MessageRefused(owners[exc.index], exc) from None
    # Who a message's rows belong to: the identities it sent itself, else one already known (an
    # earlier message of the batch, or the database), as an Applier would find them.
    own: list[dict[str, SourceIdentity]] = [{} for _items in messages]
    introduced: dict[str, tuple[int, SourceIdentity]] = {}
    for index, outcome in zip(owners, outcomes, strict=True):
        own[index][outcome.identity.local_id] = outcome.identity
        introduced.setdefault(outcome.identity.local_id, (index, outcome.identity))
    wanted = {
        item.patient_local_id
        for index, items in enumerate(messages)
        for item in items
        if isinstance(item, RecordItem) and item.patient_local_id not in own[index]
    }
    stored = (
        {identity.local_id: identity for identity in SourceIdentity.objects.filter(institution=institution, local_id__in=wanted)}
        if wanted
        else {}
    )

    results: list[list[Applied | None]] = [[] for _items in messages]
    rows: list[tuple[int, int, RecordItem, records.RecordRow]] = []
    outcome_of = iter(outcomes)
    for index, items in enumerate(messages):
        for item in items:
            if isinstance(item, IdentityItem):
                outcome = next(outcome_of)
                results[index].append(Applied("Patient", outcome.patient.uuid, outcome.created))
                continue
            assert isinstance(item, RecordItem)  # noqa: S101 - merges were refused above
            try:
                data = build(item, institution)
                identity = own[index].get(item.patient_local_id) or stored.get(item.patient_local_id)
                if identity is None and (earlier := introduced.get(item.patient_local_id)) and earlier[0] < index:
                    identity = earlier[1]
                if identity is None:
                    raise ValidationError(
                        {
                            "patient": [
                                _("患者 %(id)s 尚未在本机构登记：请先发送患者信息（Patient / PID）。")
                                % {"id": item.patient_local_id[:64]}
                            ]
                        }
                    )
            except ValidationError as exc:
                raise MessageRefused(index, _located(exc, item)) from None
            rows.append(
                (index, len(results[index]), item, records.RecordRow(identity=identity, source_id=_source_id(item), data=data))
            )
            results[index].append(None)
    # Encounters first (the other rows may name one), then each kind in the order it first came:
    # one run, so one locking read and one INSERT, per kind for the whole batch.
    rank: dict[type, int] = {}
    for _index, _position, _item, row in rows:
        rank.setdefault(type(row.data), 0 if isinstance(row.data, EncounterData) else len(rank) + 1)
    ordered = sorted(rows, key=lambda entry: rank[type(entry[3].data)])
    try:
        upserted = records.records_upsert(institution=institution, rows=[row for *_head, row in ordered])
    except records.RecordRowError as exc:
        index, _position, item, _row = ordered[exc.index]
        raise MessageRefused(index, _located(exc, item)) from None
    for (index, position, item, _row), done in zip(ordered, upserted, strict=True):
        results[index][position] = Applied(item.resource, done.record.uuid, done.created)
    # A visit or admission here may be a referred patient arriving (双向转诊): one query per batch.
    arrived = {row.identity.patient_id for *_head, row in ordered if isinstance(row.data, EncounterData)}
    if arrived:
        mark_arrivals(patient_ids=arrived, institution_id=institution.pk)
    return [[done for done in applied if done is not None] for applied in results]
