"""FHIR R4 JSON → items (IdentityData for Patient, RecordItem for the clinical resources).

Identity rules (documented in the CapabilityStatement):
- a Patient's local id is its `id` (the sender's logical id), else its identifier typed PI, else MR;
- other resources are idempotent on their `id`, else their first identifier's value: one of the two
  is required, since a `urn:uuid` fullUrl changes with every send;
- `subject` is `Patient/<local id>`, a fullUrl of a Patient in the same Bundle, or an identifier
  (`subject.identifier.value` = local id);
- the national ID number is the identifier typed NI or NNCHN (HL7 v2 table 0203), checked against GB 11643.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from yilian.interop.fhir.schema import validate
from yilian.interop.items import IdentityItem, Item, ParseError, RecordItem
from yilian.interop.values import MAX_MEASUREMENT, bounded, check_id_number, parse_date, parse_datetime, parse_decimal
from yilian.patients.identities import IdentityData
from yilian.patients.models import IdentityDocumentType, Sex

SUPPORTED = (
    "Patient",
    "Encounter",
    "Condition",
    "Observation",
    "DiagnosticReport",
    "MedicationRequest",
    "Procedure",
    "DocumentReference",
    "ImagingStudy",
)
RECORD_RESOURCES = SUPPORTED[1:]

GENDER = {"male": Sex.MALE, "female": Sex.FEMALE, "other": Sex.UNSPECIFIED, "unknown": Sex.UNKNOWN}
NATIONAL_ID_TYPES = {"NI", "NNCHN"}
ICD10_SYSTEMS = {"http://hl7.org/fhir/sid/icd-10", "http://hl7.org/fhir/sid/icd-10-cn", "urn:oid:2.16.156.10011.2.3.3.11"}
MAX_DOCUMENT_BYTES = 5 * 1024 * 1024


def loads(raw: bytes) -> Any:
    """JSON from the wire: UTF-8, no NaN/Infinity, a clear Chinese message otherwise."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ParseError("请求体不是 UTF-8 编码的 JSON。", code="structure") from None

    def refuse_constant(name: str) -> Any:
        raise ValueError(name)

    try:
        return json.loads(text, parse_constant=refuse_constant)
    except (ValueError, RecursionError) as exc:
        raise ParseError(f"请求体不是有效的 JSON：{str(exc)[:120]}", code="structure") from None


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _codeable(concept: Any) -> tuple[str, str, str]:
    """(code, display or text, system) of a CodeableConcept's first coding."""
    if not isinstance(concept, dict):
        return "", "", ""
    coding: dict[str, Any] = next(iter(concept.get("coding") or []), {})
    text = _text(concept.get("text")) or _text(coding.get("display"))
    return _text(coding.get("code")), text, _text(coding.get("system"))


def _type_code(identifier: dict[str, Any]) -> str:
    return _codeable(identifier.get("type"))[0].upper()


def _first_identifier(resource: dict[str, Any]) -> str:
    for identifier in resource.get("identifier") or []:
        if value := _text(identifier.get("value")):
            return value
    return ""


def patient_local_id(resource: dict[str, Any]) -> str:
    if resource.get("id"):
        return str(resource["id"])
    identifiers = resource.get("identifier") or []
    for wanted in ("PI", "MR"):
        for identifier in identifiers:
            if _type_code(identifier) == wanted and identifier.get("value"):
                return str(identifier["value"])
    return ""


def _patient(resource: dict[str, Any], where: str) -> IdentityData:
    local_id = bounded(patient_local_id(resource), 64, f"{where}.id")
    if not local_id:
        raise ParseError("", issues=[(f"{where}.id", "Patient 须有 id 或类型为 PI/MR 的 identifier（本机构患者标识）。")])
    names = resource.get("name") or []
    name = ""
    if names:
        human = next((n for n in names if n.get("use") == "official"), names[0])
        name = _text(human.get("text")) or (_text(human.get("family")) + "".join(human.get("given") or []))
    if not name.strip():
        raise ParseError("", issues=[(f"{where}.name", "缺少患者姓名。")])
    values: dict[str, str] = {"record_number": "", "id_number": "", "health_card_number": "", "insurance_number": ""}
    id_type = IdentityDocumentType.RESIDENT_ID
    for index, identifier in enumerate(resource.get("identifier") or []):
        code, value = _type_code(identifier), _text(identifier.get("value"))
        target = {"MR": "record_number", "HC": "health_card_number", "SB": "insurance_number", "MC": "insurance_number"}.get(code)
        if code in NATIONAL_ID_TYPES:
            target = "id_number"
        elif code == "PPN":
            target, id_type = "id_number", IdentityDocumentType.PASSPORT
        if target and not values[target]:
            values[target] = bounded(value, 64 if target != "id_number" else 30, f"{where}.identifier[{index}].value")
    values["id_number"] = check_id_number(id_type, values["id_number"], f"{where}.identifier")
    phone = next((_text(t.get("value")) for t in resource.get("telecom") or [] if t.get("system") == "phone"), "")
    address, town = "", ""
    if addresses := resource.get("address"):
        first = addresses[0]
        address = _text(first.get("text")) or "".join(
            [_text(first.get(k)) for k in ("state", "city", "district")] + list(first.get("line") or [])
        )
        town = _text(first.get("district"))
    return IdentityData(
        local_id=local_id,
        name=bounded(name, 50, f"{where}.name"),
        sex=GENDER.get(_text(resource.get("gender")), Sex.UNKNOWN),
        birth_date=parse_date(_text(resource.get("birthDate")), f"{where}.birthDate"),
        id_type=id_type,
        phone=bounded(phone, 20, f"{where}.telecom"),
        address=bounded(address, 200, f"{where}.address"),
        town=bounded(town, 50, f"{where}.address.district"),
        **values,
    )


@dataclass
class References:
    """How references inside one request resolve: fullUrl or Patient/<id> → the sender's patient id."""

    patients: dict[str, str] = field(default_factory=dict)
    records: dict[str, str] = field(default_factory=dict)  # "Encounter/x" or fullUrl → source id

    def patient(self, reference: Any, where: str) -> str:
        if isinstance(reference, dict):
            if ref := _text(reference.get("reference")):
                if ref in self.patients:
                    return self.patients[ref]
                if ref.startswith("Patient/") and len(ref) > 8:
                    return bounded(ref.removeprefix("Patient/").split("/_history")[0], 64, where)
            elif value := _text((reference.get("identifier") or {}).get("value")):
                return bounded(value, 64, where)
        raise ParseError("", issues=[(where, "须引用患者：Patient/<本机构患者标识>、同一 Bundle 内的 fullUrl 或 identifier。")])

    def record(self, reference: Any, resource: str, where: str) -> str:
        """The source id of a referenced Encounter (or other record), '' when absent."""
        if not isinstance(reference, dict):
            return ""
        ref = _text(reference.get("reference"))
        if ref in self.records:
            return self.records[ref]
        if ref.startswith(f"{resource}/"):
            return bounded(ref.removeprefix(f"{resource}/"), 64, where)
        if ref:
            raise ParseError(
                "", issues=[(where, f"无法解析的引用：{ref[:80]}（应为 {resource}/<id> 或同一 Bundle 内的 fullUrl）。")]
            )
        return bounded(_text((reference.get("identifier") or {}).get("value")), 64, where)


def source_id(resource: dict[str, Any], where: str) -> str:
    value = _text(resource.get("id")) or _first_identifier(resource)
    if not value:
        raise ParseError("", issues=[(f"{where}.id", "资源须有 id 或 identifier，以便重复发送时不产生重复记录。")])
    return bounded(value, 64, f"{where}.id")


def _period(resource: dict[str, Any], key: str, where: str) -> tuple[Any, Any]:
    period = resource.get(key) or {}
    return parse_datetime(_text(period.get("start")), f"{where}.{key}.start"), parse_datetime(
        _text(period.get("end")), f"{where}.{key}.end"
    )


def _effective(resource: dict[str, Any], where: str, *names: str) -> Any:
    for name in names:
        if value := _text(resource.get(name)):
            return parse_datetime(value, f"{where}.{name}")
        if name.endswith("Period") and resource.get(name):
            return _period(resource, name, where)[0]
    return None


DAY_UNITS = {"d": 1, "day": 1, "days": 1, "天": 1, "wk": 7, "week": 7, "weeks": 7, "周": 7}


def _days(duration: dict[str, Any], where: str) -> int | None:
    """A Duration in whole days (d or wk), or None."""
    value = parse_decimal(duration.get("value"), where, maximum=Decimal(3650))
    if value is None:
        return None
    factor = DAY_UNITS.get(_text(duration.get("code")) or _text(duration.get("unit")))
    if factor is None or value != value.to_integral_value():
        raise ParseError("", issues=[(where, "用药天数应为整数天（单位 d 或 wk）。")])
    return int(value) * factor


def _reference_display(value: Any, inner: str = "") -> str:
    """The display of the first Reference in a list (or of its `inner` element)."""
    first = next(iter(value), None) if isinstance(value, list) else None
    if isinstance(first, dict) and inner:
        first = first.get(inner)
    return _text(first.get("display")) if isinstance(first, dict) else ""


def _encounter(r: dict[str, Any], refs: References, where: str) -> dict[str, Any]:
    start, end = _period(r, "period", where)
    hospitalization = r.get("hospitalization") or {}
    participant: dict[str, Any] = next(iter(r.get("participant") or []), {})
    service_provider = r.get("serviceProvider") or {}
    return {
        "class_code": _text((r.get("class") or {}).get("code")),
        "type": _codeable(next(iter(r.get("type") or []), None))[1],
        "status": _text(r.get("status")),
        "start": start,
        "end": end,
        "department": _text(service_provider.get("display")),
        "practitioner": _text((participant.get("individual") or {}).get("display")),
        "admission_source": _codeable(hospitalization.get("admitSource"))[1],
        "discharge_disposition": _codeable(hospitalization.get("dischargeDisposition"))[1],
        "reason": _codeable(next(iter(r.get("reasonCode") or []), None))[1],
    }


def _condition(r: dict[str, Any], refs: References, where: str) -> dict[str, Any]:
    code, text, system = _codeable(r.get("code"))
    if not code:
        raise ParseError("", issues=[(f"{where}.code", "诊断须有编码（ICD-10）。")])
    categories = {_codeable(c)[0] for c in r.get("category") or []}
    return {
        "code": bounded(code, 30, f"{where}.code"),
        "code_system": system,
        "text": bounded(text, 200, f"{where}.code.text"),
        "primary": "primary" in categories
        or any(e.get("url", "").endswith("condition-primary") and e.get("valueBoolean") for e in r.get("extension") or []),
        "clinical_status": _codeable(r.get("clinicalStatus"))[0],
        "recorded": parse_datetime(_text(r.get("recordedDate")), f"{where}.recordedDate")
        or _effective(r, where, "onsetDateTime"),
        "encounter_source_id": refs.record(r.get("encounter"), "Encounter", f"{where}.encounter"),
    }


def _observation(r: dict[str, Any], refs: References, where: str) -> dict[str, Any]:
    code, text, system = _codeable(r.get("code"))
    quantity = r.get("valueQuantity") or {}
    value_text = _text(r.get("valueString")) or _codeable(r.get("valueCodeableConcept"))[1]
    if "valueInteger" in r:
        quantity = {"value": r["valueInteger"]}
    ranges = r.get("referenceRange") or []
    reference_range = ""
    if ranges:
        low, high = ranges[0].get("low") or {}, ranges[0].get("high") or {}
        reference_range = _text(ranges[0].get("text")) or (
            f"{low.get('value', '')}-{high.get('value', '')}" if low or high else ""
        )
    return {
        "category": _codeable(next(iter(r.get("category") or []), None))[0],
        "code": bounded(code or text, 64, f"{where}.code"),
        "code_system": system,
        "text": bounded(text, 200, f"{where}.code.text"),
        "value_number": parse_decimal(quantity.get("value"), f"{where}.valueQuantity.value", maximum=MAX_MEASUREMENT),
        "value_text": bounded(value_text, 500, f"{where}.value[x]"),
        "unit": bounded(_text(quantity.get("unit")) or _text(quantity.get("code")), 30, f"{where}.valueQuantity.unit"),
        "reference_range": bounded(reference_range, 60, f"{where}.referenceRange"),
        "abnormal_flag": _codeable(next(iter(r.get("interpretation") or []), None))[0],
        "status": _text(r.get("status")),
        "effective": _effective(r, where, "effectiveDateTime", "effectivePeriod", "issued"),
        "encounter_source_id": refs.record(r.get("encounter"), "Encounter", f"{where}.encounter"),
    }


def _diagnostic_report(r: dict[str, Any], refs: References, where: str) -> dict[str, Any]:
    code, text, _system = _codeable(r.get("code"))
    performer: dict[str, Any] = next(iter(r.get("performer") or []), {})
    return {
        "category": _codeable(next(iter(r.get("category") or []), None))[0],
        "code": bounded(code or text, 64, f"{where}.code"),
        "text": bounded(text, 200, f"{where}.code.text"),
        "conclusion": bounded(_text(r.get("conclusion")), 4000, f"{where}.conclusion"),
        "performer": bounded(_text(performer.get("display")), 100, f"{where}.performer"),
        "status": _text(r.get("status")),
        "effective": _effective(r, where, "effectiveDateTime", "effectivePeriod"),
        "issued": parse_datetime(_text(r.get("issued")), f"{where}.issued"),
        "result_source_ids": [refs.record(o, "Observation", f"{where}.result") for o in r.get("result") or []],
        "encounter_source_id": refs.record(r.get("encounter"), "Encounter", f"{where}.encounter"),
    }


def _medication_request(r: dict[str, Any], refs: References, where: str) -> dict[str, Any]:
    code, text, _system = _codeable(r.get("medicationCodeableConcept"))
    if not (code or text) and isinstance(r.get("medicationReference"), dict):
        text = _text(r["medicationReference"].get("display"))
    dosage: dict[str, Any] = next(iter(r.get("dosageInstruction") or []), {})
    dispense = r.get("dispenseRequest") or {}
    return {
        "code": bounded(code, 64, f"{where}.medication"),
        "text": bounded(text, 200, f"{where}.medication"),
        "dosage": bounded(_text(dosage.get("text")), 500, f"{where}.dosageInstruction.text"),
        "quantity": parse_decimal((dispense.get("quantity") or {}).get("value"), f"{where}.dispenseRequest.quantity"),
        "quantity_unit": _text((dispense.get("quantity") or {}).get("unit")),
        "days_supply": _days((dispense.get("expectedSupplyDuration") or {}), f"{where}.dispenseRequest.expectedSupplyDuration"),
        "status": _text(r.get("status")),
        "authored": parse_datetime(_text(r.get("authoredOn")), f"{where}.authoredOn"),
        "prescriber": _text((r.get("requester") or {}).get("display")),
        "encounter_source_id": refs.record(r.get("encounter"), "Encounter", f"{where}.encounter"),
    }


def _procedure(r: dict[str, Any], refs: References, where: str) -> dict[str, Any]:
    code, text, system = _codeable(r.get("code"))
    grade = next(
        (e.get("valueInteger") or e.get("valueString") for e in r.get("extension") or [] if "grade" in _text(e.get("url"))),
        None,
    )
    return {
        "code": bounded(code or text, 64, f"{where}.code"),
        "code_system": system,
        "text": bounded(text, 200, f"{where}.code.text"),
        "grade": str(grade) if grade is not None else "",
        "performer": _reference_display(r.get("performer"), "actor"),
        "status": _text(r.get("status")),
        "performed": _effective(r, where, "performedDateTime", "performedPeriod"),
        "encounter_source_id": refs.record(r.get("encounter"), "Encounter", f"{where}.encounter"),
    }


def _document_reference(r: dict[str, Any], refs: References, where: str) -> dict[str, Any]:
    code, text, _system = _codeable(r.get("type"))
    content: dict[str, Any] = next(iter(r.get("content") or []), {}) or {}
    attachment: dict[str, Any] = content.get("attachment") or {}
    body = ""
    if data := _text(attachment.get("data")):
        if len(data) > MAX_DOCUMENT_BYTES * 4 // 3 + 4:
            raise ParseError("", issues=[(f"{where}.content.attachment.data", "附件过大（超过 5 MB）。")])
        try:
            decoded = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise ParseError("", issues=[(f"{where}.content.attachment.data", "附件不是有效的 base64。")]) from None
        if _text(attachment.get("contentType")).startswith("text/"):
            body = decoded.decode("utf-8", errors="replace")
    context = r.get("context") or {}
    encounter = next(iter(context.get("encounter") or []), None)
    return {
        "type_code": code,
        "type": bounded(text, 100, f"{where}.type"),
        "title": bounded(_text(attachment.get("title")) or _text(r.get("description")), 200, f"{where}.content.attachment.title"),
        "content_type": _text(attachment.get("contentType")),
        "text": body,
        "url": bounded(_text(attachment.get("url")), 500, f"{where}.content.attachment.url"),
        "date": parse_datetime(_text(r.get("date")), f"{where}.date"),
        "author": _reference_display(r.get("author")),
        "encounter_source_id": refs.record(encounter, "Encounter", f"{where}.context.encounter"),
    }


def _imaging_study(r: dict[str, Any], refs: References, where: str) -> dict[str, Any]:
    modalities = [_text(m.get("code")) for m in r.get("modality") or []]
    study_uid = next(
        (
            _text(i.get("value")).removeprefix("urn:oid:")
            for i in r.get("identifier") or []
            if _text(i.get("system")) == "urn:dicom:uid"
        ),
        "",
    )
    return {
        "study_uid": bounded(study_uid, 64, f"{where}.identifier"),
        "modality": ",".join(m for m in modalities if m),
        "text": bounded(_text(r.get("description")), 200, f"{where}.description"),
        "started": parse_datetime(_text(r.get("started")), f"{where}.started"),
        "series_count": r.get("numberOfSeries"),
        "instance_count": r.get("numberOfInstances"),
        "status": _text(r.get("status")),
        "encounter_source_id": refs.record(r.get("encounter"), "Encounter", f"{where}.encounter"),
    }


MAPPERS: dict[str, Callable[[dict[str, Any], References, str], dict[str, Any]]] = {
    "Encounter": _encounter,
    "Condition": _condition,
    "Observation": _observation,
    "DiagnosticReport": _diagnostic_report,
    "MedicationRequest": _medication_request,
    "Procedure": _procedure,
    "DocumentReference": _document_reference,
    "ImagingStudy": _imaging_study,
}


def check(resource: Any, where: str = "") -> dict[str, Any]:
    """The resource if it is an R4 resource Yilian accepts; ParseError (with every schema problem) otherwise."""
    problems = validate(resource, location=where)
    if problems:
        raise ParseError("资源不符合 FHIR R4。", issues=problems, code="structure")
    resource_type = resource["resourceType"]
    if resource_type not in SUPPORTED:
        raise ParseError(
            "",
            issues=[(where or resource_type, f"不接收的资源类型：{resource_type}（可接收：{', '.join(SUPPORTED)}）。")],
            code="not-supported",
        )
    return resource  # type: ignore[no-any-return]


def resource_items(resource: dict[str, Any], refs: References, *, where: str = "", full_url: str = "") -> list[Item]:
    """The items of one already-checked resource."""
    resource_type = resource["resourceType"]
    where = where or resource_type
    if resource_type == "Patient":
        data = _patient(resource, where)
        return [IdentityItem(data=data, reference=full_url or f"Patient/{data.local_id}")]
    patient = refs.patient(resource.get("subject") or resource.get("patient"), f"{where}.subject")
    values = MAPPERS[resource_type](resource, refs, where)
    sid = source_id(resource, where)
    return [RecordItem(resource=resource_type, source_id=sid, patient_local_id=patient, values=values, reference=full_url)]


def register(refs: References, resource: dict[str, Any], full_url: str) -> None:
    """Note what a Bundle entry can be referred to by, before any entry is mapped."""
    resource_type = resource.get("resourceType")
    if resource_type == "Patient":
        local_id = patient_local_id(resource)
        if local_id:
            for key in (full_url, f"Patient/{local_id}"):
                if key:
                    refs.patients[key] = local_id
    elif resource_type in RECORD_RESOURCES:
        sid = _text(resource.get("id")) or _first_identifier(resource)
        if sid:
            for key in (full_url, f"{resource_type}/{sid}"):
                if key:
                    refs.records[key] = sid
