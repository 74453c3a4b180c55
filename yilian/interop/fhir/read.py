"""Read and search at /fhir.

Who reads what: a logged-in user (staff session) reads through the patient gatekeeper
(`patients.access` / `records.access.access_patient_record`); a member system (institution API key)
reads what its institution holds — the patients it or its village clinics sent or registered —
or has an active grant for, through the same gatekeeper (`MemberSystemReader` adds PATIENT_VIEW to
the key's actor for reads only). Every read of a patient's record writes access-log rows (the
gatekeeper does it); what an actor may not see is "not found", never "forbidden".

Ids: a clinical resource's id is our UUID; its identifier is the sender's id for the row
(`system` = urn:yilian:institution:<institution uuid>). A member system may also address its own
rows, and its own patients, by the ids it sent (`Encounter/V0001`, `Patient/P0001`).
"""

from __future__ import annotations

import base64
import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from functools import cached_property
from typing import Any
from uuid import UUID

from django.db.models import Model, Q, QuerySet
from django.http import Http404, QueryDict
from django.utils import timezone

from yilian.accounts.actors import Actor
from yilian.accounts.roles import Permission
from yilian.patients.access import access_patient, patient_scope_filter, patients_listed
from yilian.patients.models import Patient, Sex, SourceIdentity
from yilian.records.access import access_patient_record
from yilian.records.models import (
    Condition,
    DiagnosticReport,
    DocumentReference,
    Encounter,
    MedicationRequest,
    Observation,
    Procedure,
)

MAX_COUNT = 100
MAX_PAGE = 1000
IMAGING_PREFIX = "IS-"  # see apply.py: an ImagingStudy is kept as an imaging DiagnosticReport
GENDER: dict[str, str] = {Sex.MALE: "male", Sex.FEMALE: "female", Sex.UNSPECIFIED: "other", Sex.UNKNOWN: "unknown"}
CLINICAL_PARAMETERS = {"_id": "token", "identifier": "token", "patient": "reference", "subject": "reference", "date": "date"}
SEARCH_PARAMETERS: dict[str, dict[str, str]] = {
    "Patient": {"_id": "token", "identifier": "token", "name": "string", "birthdate": "date"},
    "Encounter": {**CLINICAL_PARAMETERS, "class": "token"},
    "Condition": {**CLINICAL_PARAMETERS, "code": "token"},
    "Observation": {**CLINICAL_PARAMETERS, "code": "token"},
    "DiagnosticReport": {**CLINICAL_PARAMETERS, "code": "token"},
    "MedicationRequest": {**CLINICAL_PARAMETERS, "code": "token"},
    "Procedure": {**CLINICAL_PARAMETERS, "code": "token"},
    "DocumentReference": {**CLINICAL_PARAMETERS, "type": "token"},
    "ImagingStudy": {**CLINICAL_PARAMETERS, "modality": "token"},
}


class SearchError(ValueError):
    """A search the server will not run (400 with the message)."""


class MemberSystemReader(Actor):
    """A member system's key reading patients: PATIENT_VIEW on top of what the key may do, so
    the patient gatekeeper scopes it like a clinician of its institution (holder or grantee)."""

    @cached_property
    def permissions(self) -> frozenset[Permission]:
        base = super().permissions
        return base | {Permission.PATIENT_VIEW} if base else base


def reader(actor: Actor) -> Actor:
    if actor.api_key is not None and not isinstance(actor, MemberSystemReader):
        return MemberSystemReader(user=None, api_key=actor.api_key, ip_address=actor.ip_address)
    return actor


# --- R4 JSON out ----------------------------------------------------------------------------


def _when(value: dt.datetime | None) -> str | None:
    return timezone.localtime(value).isoformat(timespec="seconds") if value is not None else None


def _number(value: Decimal) -> int | float:
    normal = value.normalize()
    return int(normal) if normal == normal.to_integral_value() else float(normal)


def _drop_empty(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if v not in (None, "", [], {})}


def _common(name: str, record: Any) -> dict[str, Any]:
    patient = record.identity.patient
    source_id = record.source_id.removeprefix(IMAGING_PREFIX) if name == "ImagingStudy" else record.source_id
    body: dict[str, Any] = {
        "resourceType": name,
        "id": str(record.uuid),
        "meta": {"lastUpdated": _when(record.updated_at)},
        "identifier": [{"system": f"urn:yilian:institution:{record.institution.uuid}", "value": source_id}],
        "subject": {"reference": f"Patient/{patient.uuid}", "display": patient.name},
    }
    encounter = getattr(record, "encounter", None)
    if encounter is not None:
        body["encounter"] = {"reference": f"Encounter/{encounter.uuid}"}
    return body


def _coding(code: str, display: str, system: str = "") -> dict[str, Any]:
    return {"coding": [_drop_empty({"system": system, "code": code, "display": display})], "text": display or code}


ENCOUNTER_CLASS_CODES = {
    "outpatient": "AMB",
    "emergency": "EMER",
    "inpatient": "IMP",
    "health_check": "CHECKUP",
    "follow_up": "FOLLOWUP",
}


def _encounter(record: Encounter) -> dict[str, Any]:
    body = _common("Encounter", record)
    body["status"] = "finished" if record.ended_at else "in-progress"
    code = ENCOUNTER_CLASS_CODES[record.encounter_class]
    system = (
        "http://terminology.hl7.org/CodeSystem/v3-ActCode" if code in {"AMB", "EMER", "IMP"} else "urn:yilian:encounter-class"
    )
    body["class"] = {"system": system, "code": code, "display": record.get_encounter_class_display()}
    body["period"] = _drop_empty({"start": _when(record.started_at), "end": _when(record.ended_at)})
    if record.practitioner_name:
        body["participant"] = [{"individual": {"display": record.practitioner_name}}]
    if record.reason:
        body["reasonCode"] = [{"text": record.reason}]
    if record.department_name:
        body["serviceProvider"] = {"display": record.department_name}
    return body


def _condition(record: Condition) -> dict[str, Any]:
    body = _common("Condition", record)
    body["category"] = [
        {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category", "code": "encounter-diagnosis"}]}
    ]
    if record.is_primary:
        body["extension"] = [{"url": "urn:yilian:fhir:condition-primary", "valueBoolean": True}]
    body["code"] = _coding(record.icd10_code, record.display, "http://hl7.org/fhir/sid/icd-10-cn")
    body["recordedDate"] = _when(record.recorded_at)
    return body


OBSERVATION_CATEGORY_CODES = {"vital_signs": "vital-signs", "laboratory": "laboratory"}


def _observation(record: Observation) -> dict[str, Any]:
    body = _common("Observation", record)
    body["status"] = "final"
    body["category"] = [
        {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                    "code": OBSERVATION_CATEGORY_CODES[record.category],
                }
            ]
        }
    ]
    body["code"] = _coding(record.code, record.display)
    body["effectiveDateTime"] = _when(record.effective_at)
    if record.value_quantity is not None:
        body["valueQuantity"] = _drop_empty({"value": _number(record.value_quantity), "unit": record.unit})
    else:
        body["valueString"] = record.value_text
    if record.interpretation:
        body["interpretation"] = [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
                        "code": record.interpretation,
                        "display": record.get_interpretation_display(),
                    }
                ]
            }
        ]
    reference: dict[str, Any] = {}
    if record.reference_low is not None:
        reference["low"] = _drop_empty({"value": _number(record.reference_low), "unit": record.unit})
    if record.reference_high is not None:
        reference["high"] = _drop_empty({"value": _number(record.reference_high), "unit": record.unit})
    if record.reference_text:
        reference["text"] = record.reference_text
    if reference:
        body["referenceRange"] = [reference]
    return body


REPORT_CATEGORY_CODES = {"laboratory": "LAB", "imaging": "RAD", "ecg": "EC", "pathology": "PAT"}


def _diagnostic_report(record: DiagnosticReport) -> dict[str, Any]:
    body = _common("DiagnosticReport", record)
    body["status"] = "final"
    body["category"] = [
        {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/v2-0074",
                    "code": REPORT_CATEGORY_CODES[record.category],
                    "display": record.get_category_display(),
                }
            ]
        }
    ]
    body["code"] = _coding(record.code, record.display)
    body["effectiveDateTime"] = _when(record.effective_at)
    if record.issued_at:
        body["issued"] = _when(record.issued_at)
    if record.performer_name:
        body["performer"] = [{"display": record.performer_name}]
    if record.conclusion:
        body["conclusion"] = record.conclusion
    if record.text:
        body["presentedForm"] = [
            {
                "contentType": "text/plain; charset=utf-8",
                "data": base64.b64encode(record.text.encode()).decode(),
                "title": "检查所见",
            }
        ]
    return body


def _medication_request(record: MedicationRequest) -> dict[str, Any]:
    body = _common("MedicationRequest", record)
    body["status"] = "unknown"
    body["intent"] = "order"
    body["medicationCodeableConcept"] = _coding(record.medication_code, record.medication_name)
    if not record.medication_code:
        body["medicationCodeableConcept"] = {"text": record.medication_name}
    body["authoredOn"] = _when(record.authored_at)
    if record.prescriber_name:
        body["requester"] = {"display": record.prescriber_name}
    if record.dosage_text:
        body["dosageInstruction"] = [{"text": record.dosage_text}]
    dispense: dict[str, Any] = {}
    if record.quantity is not None:
        dispense["quantity"] = _drop_empty({"value": _number(record.quantity), "unit": record.quantity_unit})
    if record.days_supply is not None:
        dispense["expectedSupplyDuration"] = {
            "value": record.days_supply,
            "unit": "d",
            "system": "http://unitsofmeasure.org",
            "code": "d",
        }
    if dispense:
        body["dispenseRequest"] = dispense
    return body


def _procedure(record: Procedure) -> dict[str, Any]:
    body = _common("Procedure", record)
    if record.grade is not None:
        body["extension"] = [{"url": "urn:yilian:fhir:procedure-grade", "valueInteger": record.grade}]
    body["status"] = "completed"
    body["code"] = _coding(record.code, record.display)
    body["performedDateTime"] = _when(record.performed_at)
    if record.performer_name:
        body["performer"] = [{"actor": {"display": record.performer_name}}]
    return body


DOCUMENT_TYPE_CODES = {"discharge_summary": "18842-5", "referral_letter": "57133-1", "progress_note": "11506-3"}


def _document_reference(record: DocumentReference) -> dict[str, Any]:
    body = _common("DocumentReference", record)
    body["status"] = "current"
    loinc = DOCUMENT_TYPE_CODES.get(record.kind)
    body["type"] = _coding(loinc, record.get_kind_display(), "http://loinc.org") if loinc else {"text": record.get_kind_display()}
    body["date"] = _when(record.dated_at)
    if record.author_name:
        body["author"] = [{"display": record.author_name}]
    attachment: dict[str, Any] = {"title": record.title}
    if record.text:
        attachment["contentType"] = "text/plain; charset=utf-8"
        attachment["data"] = base64.b64encode(record.text.encode()).decode()
    else:
        attachment["contentType"] = record.content_type or None
        attachment["url"] = record.attachment_url
    body["content"] = [{"attachment": _drop_empty(attachment)}]
    encounter = body.pop("encounter", None)
    if encounter:
        body["context"] = {"encounter": [encounter]}
    return body


def _imaging_study(record: DiagnosticReport) -> dict[str, Any]:
    body = _common("ImagingStudy", record)
    uid = re.search(r"Study Instance UID ([0-9.]+)", record.text)
    if uid:
        body["identifier"].append({"system": "urn:dicom:uid", "value": f"urn:oid:{uid[1]}"})
    body["status"] = "available"
    if record.code != "IMAGING":
        body["modality"] = [
            {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": code} for code in record.code.split(",") if code
        ]
    body["started"] = _when(record.effective_at)
    counts = re.search(r"序列 (\d+)，图像 (\d+)", record.text)
    if counts:
        body["numberOfSeries"], body["numberOfInstances"] = int(counts[1]), int(counts[2])
    body["description"] = record.display
    return body


@dataclass(frozen=True)
class Kind:
    model: type[Model]
    time_field: str
    code_field: str
    serialize: Callable[[Any], dict[str, Any]]
    related: tuple[str, ...] = ("encounter",)


KINDS: dict[str, Kind] = {
    "Encounter": Kind(Encounter, "started_at", "encounter_class", _encounter, ()),
    "Condition": Kind(Condition, "recorded_at", "icd10_code", _condition),
    "Observation": Kind(Observation, "effective_at", "code", _observation),
    "DiagnosticReport": Kind(DiagnosticReport, "effective_at", "code", _diagnostic_report),
    "MedicationRequest": Kind(MedicationRequest, "authored_at", "medication_code", _medication_request),
    "Procedure": Kind(Procedure, "performed_at", "code", _procedure),
    "DocumentReference": Kind(DocumentReference, "dated_at", "kind", _document_reference),
    "ImagingStudy": Kind(DiagnosticReport, "effective_at", "code", _imaging_study),
}


def _base(name: str) -> QuerySet[Any]:
    kind = KINDS[name]
    queryset = kind.model._default_manager.select_related("identity__patient", "institution", *kind.related)
    if name == "ImagingStudy":
        return queryset.filter(source_id__startswith=IMAGING_PREFIX)
    if name == "DiagnosticReport":
        return queryset.exclude(source_id__startswith=IMAGING_PREFIX)
    return queryset


def _patient_json(row: Patient | SourceIdentity, id_value: str) -> dict[str, Any]:
    identifiers: list[dict[str, Any]] = []
    if isinstance(row, SourceIdentity):
        identifiers.append({"type": {"coding": [{"code": "PI"}]}, "value": row.local_id})
        identifiers.append({"system": "urn:yilian:patient", "value": str(row.patient.uuid)})
    if row.id_number:
        identifiers.append({"type": {"coding": [{"code": "NNCHN"}]}, "value": row.id_number})
    body: dict[str, Any] = {
        "resourceType": "Patient",
        "id": id_value,
        "identifier": identifiers,
        "name": [{"text": row.name}],
        "gender": GENDER.get(row.sex, "unknown"),
    }
    if row.birth_date:
        body["birthDate"] = row.birth_date.isoformat()
    if row.phone:
        body["telecom"] = [{"system": "phone", "value": row.phone}]
    if row.address:
        body["address"] = [{"text": row.address}]
    return body


# --- read -----------------------------------------------------------------------------------


def _is_uuid(value: str) -> bool:
    try:
        UUID(value)
    except ValueError:
        return False
    return True


def _own_identity(actor: Actor, local_id: str) -> SourceIdentity | None:
    if actor.api_key is None:
        return None
    return (
        SourceIdentity.objects.select_related("patient").filter(institution=actor.api_key.institution, local_id=local_id).first()
    )


def read_resource(actor: Actor, name: str, key: str) -> dict[str, Any] | None:
    """One resource by id, or None (missing or not visible to `actor`). Logs the read."""
    if len(key) > 64:
        return None
    actor = reader(actor)
    path = f"/fhir/{name}/{key}"
    if name == "Patient":
        identity = _own_identity(actor, key)
        if identity is not None:
            access_patient(actor, identity.patient.uuid, path=path)
            return _patient_json(identity, identity.local_id)
        if not _is_uuid(key) or not actor.can(Permission.PATIENT_VIEW):
            return None
        try:
            patient = access_patient(actor, key, path=path)
        except Http404:
            return None
        return _patient_json(patient, str(patient.uuid))
    if name not in KINDS:
        return None
    queryset = _base(name)
    if _is_uuid(key):
        record = queryset.filter(uuid=key).first()
    elif actor.api_key is not None:
        own = IMAGING_PREFIX + key if name == "ImagingStudy" else key
        record = queryset.filter(institution=actor.api_key.institution, source_id=own).first()
    else:
        record = None
    if record is None:
        return None
    try:
        access_patient_record(actor, record.identity.patient.uuid, path=path)
    except Http404:
        return None
    return KINDS[name].serialize(record)


# --- search ---------------------------------------------------------------------------------


def _int(query: QueryDict, name: str, default: int, high: int) -> int:
    raw = query.get(name, str(default))
    if not raw.isdigit() or not 1 <= int(raw) <= high:
        raise SearchError(f"{name} 应为 1–{high} 的整数。")
    return int(raw)


DATE = re.compile(r"(eq|lt|le|gt|ge)?(\d{4})(?:-(\d{2}))?(?:-(\d{2}))?")


def _date_filter(field: str, value: str) -> Q:
    """FHIR date search (YYYY, YYYY-MM or YYYY-MM-DD, with eq/lt/le/gt/ge) in Asia/Shanghai."""
    match = DATE.fullmatch(value)
    if match is None:
        raise SearchError(f"date 格式不正确：{value[:30]}（应为 [ge|le|gt|lt|eq]YYYY[-MM[-DD]]）。")
    prefix, year, month, day = match[1] or "eq", int(match[2]), match[3], match[4]
    try:
        start_day = dt.date(year, int(month or 1), int(day or 1))
    except ValueError:
        raise SearchError(f"日期不存在：{value[:30]}。") from None
    if day:
        end_day = start_day + dt.timedelta(days=1)
    elif month:
        end_day = (start_day.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    else:
        end_day = start_day.replace(year=year + 1) if year < 9999 else dt.date.max
    start = timezone.make_aware(dt.datetime.combine(start_day, dt.time.min))
    end = timezone.make_aware(dt.datetime.combine(end_day, dt.time.min))
    return {
        "eq": Q(**{f"{field}__gte": start, f"{field}__lt": end}),
        "lt": Q(**{f"{field}__lt": start}),
        "le": Q(**{f"{field}__lt": end}),
        "gt": Q(**{f"{field}__gte": end}),
        "ge": Q(**{f"{field}__gte": start}),
    }[prefix]


def _tokens(value: str) -> list[tuple[str, str]]:
    """A token search value: comma-separated `[system|]code`."""
    out = []
    for part in value.split(","):
        system, sep, code = part.partition("|")
        out.append((system if sep else "", code if sep else system))
    return [(s, c) for s, c in out if c]


def _reference_patient(actor: Actor, value: str) -> Patient | None:
    """The patient a `patient=` value names and `actor` may read (logged), or None."""
    key = value.removeprefix("Patient/")
    identity = _own_identity(actor, key)
    if identity is not None:
        key = str(identity.patient.uuid)
    if not _is_uuid(key):
        return None
    try:
        return access_patient_record(actor, key, path="/fhir/")
    except Http404:
        return None


CLASS_BY_CODE = {code: value for value, code in ENCOUNTER_CLASS_CODES.items()}
DOCUMENT_KIND_BY_CODE = {code: value for value, code in DOCUMENT_TYPE_CODES.items()}


def _clinical_search(actor: Actor, name: str, query: QueryDict, count: int, page: int) -> tuple[int, list[dict[str, Any]]]:
    kind = KINDS[name]
    patient_value = query.get("patient") or query.get("subject") or ""
    if not (patient_value or query.get("_id") or query.get("identifier")):
        raise SearchError("请按 patient、_id 或 identifier 查询（不提供全体患者的批量检索）。")
    queryset = _base(name)
    if value := query.get("_id"):
        ids = [v for v in value.split(",") if _is_uuid(v)]
        queryset = queryset.filter(uuid__in=ids)
    if value := query.get("identifier"):
        match = Q()
        for system, code in _tokens(value):
            sid = IMAGING_PREFIX + code if name == "ImagingStudy" else code
            term = Q(source_id=sid)
            if system.startswith("urn:yilian:institution:"):
                institution = system.removeprefix("urn:yilian:institution:")
                term &= Q(institution__uuid=institution) if _is_uuid(institution) else Q(pk__in=[])
            elif system:
                term = Q(pk__in=[])
            match |= term
        queryset = queryset.filter(match)
    for value in query.getlist("date"):
        queryset = queryset.filter(_date_filter(kind.time_field, value))
    code_param = {"Encounter": "class", "DocumentReference": "type", "ImagingStudy": "modality"}.get(name, "code")
    if value := query.get(code_param):
        codes = [code for _system, code in _tokens(value)]
        if name == "Encounter":
            codes = [CLASS_BY_CODE.get(c.upper(), c) for c in codes]
        elif name == "DocumentReference":
            codes = [DOCUMENT_KIND_BY_CODE.get(c, c) for c in codes]
        elif name == "Condition":
            codes = [c.upper() for c in codes]
        queryset = queryset.filter(**{f"{kind.code_field}__in": codes})
    queryset = queryset.order_by(f"-{kind.time_field}", "-id")
    if patient_value:
        patient = _reference_patient(actor, patient_value)
        if patient is None:
            return 0, []
        queryset = queryset.filter(identity__patient=patient)
        total = queryset.count()
        start = (page - 1) * count
        return total, [kind.serialize(r) for r in queryset[start : start + count]]
    # By id or identifier: a few rows; each patient met is let in (and logged) by the gatekeeper.
    visible = Patient.objects.filter(patient_scope_filter(actor)).values("id")
    rows = list(queryset.filter(identity__patient__in=visible)[: MAX_COUNT + 1])
    allowed: dict[int, bool] = {}
    found = []
    for record in rows:
        patient = record.identity.patient
        if patient.pk not in allowed:
            try:
                access_patient_record(actor, patient.uuid, path=f"/fhir/{name}")
                allowed[patient.pk] = True
            except Http404:
                allowed[patient.pk] = False
        if allowed[patient.pk]:
            found.append(record)
    start = (page - 1) * count
    return len(found), [kind.serialize(r) for r in found[start : start + count]]


def _patient_search(actor: Actor, query: QueryDict, count: int) -> tuple[int, list[dict[str, Any]]]:
    for param in ("_id", "identifier", "name", "birthdate"):
        if len(query.get(param, "")) > 100:
            raise SearchError(f"{param} 过长。")
    if actor.api_key is not None:
        identities = SourceIdentity.objects.select_related("patient").filter(institution=actor.api_key.institution)
        if value := query.get("_id"):
            identities = identities.filter(local_id=value)
        if value := query.get("identifier"):
            value = value.split("|")[-1]
            identities = identities.filter(Q(local_id=value) | Q(id_number=value.upper()))
        if value := query.get("name"):
            identities = identities.filter(name__contains=value)
        total = identities.count()
        found_identities = list(identities.order_by("id")[:count])
        patients_listed(actor, [i.patient for i in found_identities], path="/fhir/Patient")
        return total, [_patient_json(i, i.local_id) for i in found_identities]
    if not actor.can(Permission.PATIENT_VIEW):
        return 0, []
    if not (query.get("_id") or query.get("identifier")):
        raise SearchError("请按 _id 或 identifier（身份证号）查询患者。")
    patients = Patient.objects.filter(patient_scope_filter(actor))
    if value := query.get("_id"):
        patients = patients.filter(uuid__in=[value]) if _is_uuid(value) else patients.none()
    if value := query.get("identifier"):
        patients = patients.filter(id_number=value.split("|")[-1].upper())
    total = patients.count()
    found = list(patients.order_by("id")[:count])
    patients_listed(actor, found, path="/fhir/Patient")
    return total, [_patient_json(p, str(p.uuid)) for p in found]


def search_resources(actor: Actor, name: str, query: QueryDict, *, base: str) -> dict[str, Any]:
    """A searchset Bundle; SearchError for a search that is not allowed or not understood."""
    actor = reader(actor)
    count = _int(query, "_count", 20, MAX_COUNT)
    page = _int(query, "_page", 1, MAX_PAGE)
    for param, values in query.lists():
        if any(len(v) > 200 for v in values):
            raise SearchError(f"{param} 过长。")
    if name == "Patient":
        total, resources = _patient_search(actor, query, count)
    else:
        total, resources = _clinical_search(actor, name, query, count, page)
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": total,
        "entry": [{"fullUrl": f"{base}{name}/{r['id']}", "resource": r, "search": {"mode": "match"}} for r in resources],
    }
    if page * count < total:
        following = query.copy()
        following["_page"] = str(page + 1)
        bundle["link"] = [{"relation": "next", "url": f"{base}{name}?{following.urlencode()}"}]
    return bundle
