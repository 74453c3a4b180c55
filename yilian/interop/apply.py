"""Items → the MPI and the shared record (ADR 0003): `patients.services.identity_ingest` for
identities, `records.services.<resource>_upsert` for clinical rows, `patient_merge` for ADT^A40.

This is the one place that knows those interfaces; it runs inside the caller's transaction, so a
message (or a transaction Bundle) is written whole or not at all. The MPI and records services
are loaded when first needed, so interop's parsing and its dead-letter list work on their own.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from importlib import import_module
from typing import Any
from uuid import UUID

from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

from yilian.accounts.actors import Actor
from yilian.interop.items import IdentityItem, Item, MergeItem, RecordItem
from yilian.organizations.models import Institution
from yilian.patients.models import SourceIdentity

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


def _module(name: str) -> Any:
    """A service module of the MPI or the records app; while it is not installed, messages that
    need it are refused (and kept as dead letters, to be replayed once it is)."""
    try:
        return import_module(name)
    except ModuleNotFoundError:
        raise ValidationError(_("服务尚未启用：%(name)s。") % {"name": name}) from None


def _patients() -> Any:
    return _module("yilian.patients.services")


def _records() -> tuple[Any, Any]:
    return _module("yilian.records.services"), _module("yilian.records.data")


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


def _encounter(data: Any, v: dict[str, Any]) -> Any:
    code = str(v.get("class_code", "")).upper()
    if code not in ENCOUNTER_CLASSES:
        raise ValidationError({"class": [_("无法识别的就诊类型：%(code)s。") % {"code": code[:20] or "空"}]})
    payer = str(v.get("payer_type", ""))
    return data.EncounterData(
        encounter_class=ENCOUNTER_CLASSES[code],
        started_at=_required(v.get("start"), "period.start", _("就诊开始时间")),
        ended_at=v.get("end"),
        department_name=v.get("department", "")[:100],
        practitioner_name=v.get("practitioner", "")[:100],
        reason=v.get("reason", "")[:200],
        payer_type=PAYER_TYPES.get(payer, payer if payer in PAYER_TYPES.values() else "self_pay"),
        total_cost=_money(v.get("total_cost")),
        insurance_paid=_money(v.get("insurance_paid")),
    )


def _condition(data: Any, v: dict[str, Any]) -> Any:
    return data.ConditionData(
        icd10_code=v["code"],
        recorded_at=_required(v.get("recorded"), "recordedDate", _("诊断日期")),
        display=v.get("text", ""),
        is_primary=bool(v.get("primary")),
        encounter_source_id=v.get("encounter_source_id", ""),
    )


def _observation(data: Any, v: dict[str, Any]) -> Any:
    low, high = _range(v.get("reference_range", ""))
    flag = str(v.get("abnormal_flag", "")).upper()
    return data.ObservationData(
        category=OBSERVATION_CATEGORIES.get(v.get("category", ""), "laboratory"),
        code=_required(v.get("code"), "code", _("项目编码")),
        display=v.get("text", "") or v["code"],
        effective_at=_required(v.get("effective"), "effective", _("结果时间")),
        value_quantity=v.get("value_number"),
        value_text=v.get("value_text", ""),
        unit=v.get("unit", ""),
        reference_low=low,
        reference_high=high,
        reference_text=v.get("reference_range", "") if low is None else "",
        interpretation=flag if flag in INTERPRETATIONS else "",
        encounter_source_id=v.get("encounter_source_id", ""),
    )


def _report(data: Any, v: dict[str, Any]) -> Any:
    category = REPORT_CATEGORIES.get(v.get("category", ""), REPORT_CATEGORIES.get(str(v.get("category", "")).upper()))
    if category is None:
        raise ValidationError({"category": [_("无法识别的报告类别：%(code)s。") % {"code": str(v.get("category"))[:20] or "空"}]})
    return data.DiagnosticReportData(
        category=category,
        code=_required(v.get("code"), "code", _("项目编码")),
        display=v.get("text", "") or v["code"],
        effective_at=_required(v.get("effective") or v.get("issued"), "effective", _("检查时间")),
        conclusion=v.get("conclusion", ""),
        performer_name=v.get("performer", ""),
        issued_at=v.get("issued"),
        encounter_source_id=v.get("encounter_source_id", ""),
    )


def _imaging(data: Any, v: dict[str, Any]) -> Any:
    return data.DiagnosticReportData(
        category="imaging",
        code=v.get("modality") or "IMAGING",
        display=v.get("text", "") or _("影像检查"),
        effective_at=_required(v.get("started"), "started", _("检查时间")),
        text=f"Study Instance UID {v['study_uid']}" if v.get("study_uid") else "",
        encounter_source_id=v.get("encounter_source_id", ""),
    )


def _medication(data: Any, v: dict[str, Any]) -> Any:
    return data.MedicationRequestData(
        medication_name=_required(v.get("text") or v.get("code"), "medication", _("药品名称")),
        authored_at=_required(v.get("authored"), "authoredOn", _("开具时间")),
        medication_code=v.get("code", ""),
        dosage_text=v.get("dosage", ""),
        quantity=v.get("quantity"),
        prescriber_name=v.get("prescriber", "")[:100],
        encounter_source_id=v.get("encounter_source_id", ""),
    )


def _procedure(data: Any, v: dict[str, Any]) -> Any:
    grade = str(v.get("grade", ""))
    return data.ProcedureData(
        code=_required(v.get("code"), "code", _("手术/操作编码")),
        display=v.get("text", "") or v["code"],
        performed_at=_required(v.get("performed"), "performed", _("手术/操作时间")),
        grade=int(grade) if grade.isdigit() else None,
        encounter_source_id=v.get("encounter_source_id", ""),
    )


def _document(data: Any, v: dict[str, Any]) -> Any:
    return data.DocumentReferenceData(
        kind=DOCUMENT_KINDS.get(v.get("type_code", ""), "other"),
        title=_required(v.get("title") or v.get("type"), "title", _("文书标题")),
        dated_at=_required(v.get("date"), "date", _("文书日期")),
        text=v.get("text", ""),
        attachment_url=v.get("url", ""),
        content_type=v.get("content_type", ""),
        encounter_source_id=v.get("encounter_source_id", ""),
    )


def _settlement(data: Any, v: dict[str, Any]) -> Any:
    return data.InsuranceSettlementData(
        encounter_class=ENCOUNTER_CLASSES.get(str(v.get("class_code", "AMB")).upper(), "outpatient"),
        payer_type=PAYER_TYPES.get(v.get("payer_type", ""), "resident"),
        settled_at=_required(v.get("settled"), "settled", _("结算时间")),
        total_cost=_required(v.get("total"), "total", _("总费用")),
        fund_paid=_money(v.get("fund_paid")),
        personal_paid=_money(v.get("self_paid")),
        provider_name=v.get("provider_name", ""),
        provider_code=v.get("provider_code", ""),
        provider_region=v.get("provider_region", ""),
        encounter_source_id=v.get("encounter_source_id", ""),
    )


# resource -> (records service, dataclass builder)
WRITERS = {
    "Encounter": ("encounter_upsert", _encounter),
    "Condition": ("condition_upsert", _condition),
    "Observation": ("observation_upsert", _observation),
    "DiagnosticReport": ("diagnostic_report_upsert", _report),
    "ImagingStudy": ("diagnostic_report_upsert", _imaging),
    "MedicationRequest": ("medication_request_upsert", _medication),
    "Procedure": ("procedure_upsert", _procedure),
    "DocumentReference": ("document_reference_upsert", _document),
    "InsuranceSettlement": ("insurance_settlement_upsert", _settlement),
}


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

    def apply(self, item: Item) -> Applied | None:
        if isinstance(item, IdentityItem):
            if self.dry_run:
                self.identities.setdefault(item.data.local_id, SourceIdentity(local_id=item.data.local_id))
                return None
            outcome = _patients().identity_ingest(institution=self.institution, data=item.data)
            self.identities[item.data.local_id] = outcome.identity
            return Applied("Patient", outcome.patient.uuid, outcome.created)
        if isinstance(item, RecordItem):
            service_name, build = WRITERS[item.resource]
            services, data = _records()
            record_data = build(data, item.values)
            if self.dry_run:
                self.identity(item.patient_local_id)
                return None
            identity = self.identity(item.patient_local_id)
            upserted = getattr(services, service_name)(
                institution=self.institution, identity=identity, source_id=item.source_id, data=record_data
            )
            resource = "DiagnosticReport" if item.resource == "ImagingStudy" else item.resource
            return Applied(resource, upserted.record.uuid, upserted.created)
        return self._merge(item)

    def _merge(self, item: MergeItem) -> Applied | None:
        survivor = self.identity(item.survivor_local_id)
        merged = self.identity(item.merged_local_id)
        if self.dry_run or survivor.patient_id == merged.patient_id:
            return None  # already one person: a second A40 changes nothing
        if self.actor is None:
            raise ValidationError(_("合并患者需要发送机构的身份。"))
        _patients().patient_merge(
            actor=self.actor,
            survivor=survivor.patient,
            merged=merged.patient,
            reason=_("HL7 ADT^A40：%(merged)s 并入 %(survivor)s")
            % {"merged": item.merged_local_id, "survivor": item.survivor_local_id},
        )
        return Applied("Patient", survivor.patient.uuid, False)
