"""Read and search at /fhir.

A member system (institution API key) reads what its institution sent: its source identities
(`Patient/<local id>`). A logged-in user reads golden patients (`Patient/<uuid>`) through the
patient gatekeeper, which writes the access log. Clinical resources are served once the records
app provides its selectors; until then their searches are empty.
"""

from __future__ import annotations

from typing import Any

from django.http import Http404, QueryDict

from yilian.accounts.actors import Actor
from yilian.accounts.roles import Permission
from yilian.patients.access import access_patient, patients_listed
from yilian.patients.models import Patient, Sex, SourceIdentity

MAX_COUNT = 100
SEARCH_PARAMETERS: dict[str, dict[str, str]] = {
    "Patient": {"_id": "token", "identifier": "token", "name": "string", "birthdate": "date"},
}
GENDER: dict[str, str] = {Sex.MALE: "male", Sex.FEMALE: "female", Sex.UNSPECIFIED: "other", Sex.UNKNOWN: "unknown"}


def _patient(row: Patient | SourceIdentity, id_value: str) -> dict[str, Any]:
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


def read_resource(actor: Actor, name: str, key: str) -> dict[str, Any] | None:
    if name != "Patient" or len(key) > 64:
        return None
    if actor.api_key is not None:
        identity = (
            SourceIdentity.objects.select_related("patient").filter(institution=actor.api_key.institution, local_id=key).first()
        )
        return _patient(identity, identity.local_id) if identity is not None else None
    if not actor.can(Permission.PATIENT_VIEW):
        return None
    try:
        patient = access_patient(actor, key, path=f"/fhir/Patient/{key}")
    except (Http404, ValueError):
        return None
    return _patient(patient, str(patient.uuid))


def _count(query: QueryDict) -> int:
    raw = query.get("_count", "20")
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_COUNT:
        raise ValueError(f"_count 应为 1–{MAX_COUNT} 的整数。")
    return int(raw)


def search_resources(actor: Actor, name: str, query: QueryDict, *, base: str) -> dict[str, Any]:
    count = _count(query)
    entries: list[dict[str, Any]] = []
    total = 0
    if name == "Patient":
        for param in ("_id", "identifier", "name", "birthdate"):
            if len(query.get(param, "")) > 100:
                raise ValueError(f"{param} 过长。")
        if actor.api_key is not None:
            identities = SourceIdentity.objects.select_related("patient").filter(institution=actor.api_key.institution)
            if value := query.get("_id"):
                identities = identities.filter(local_id=value)
            if value := query.get("identifier"):
                value = value.split("|")[-1]
                identities = identities.filter(local_id=value) | identities.filter(id_number=value.upper())
            if value := query.get("name"):
                identities = identities.filter(name__contains=value)
            total = identities.count()
            entries = [{"resource": _patient(i, i.local_id)} for i in identities.order_by("id")[:count]]
        elif actor.can(Permission.PATIENT_VIEW):
            patients = Patient.objects.visible_to(actor)
            if not (query.get("_id") or query.get("identifier")):
                raise ValueError("请按 _id 或 identifier（身份证号）查询患者。")
            if value := query.get("_id"):
                patients = patients.filter(uuid__in=[value]) if len(value) == 36 else patients.none()
            if value := query.get("identifier"):
                patients = patients.filter(id_number=value.split("|")[-1].upper())
            total = patients.count()
            found = list(patients.order_by("id")[:count])
            patients_listed(actor, found, path="/fhir/Patient")
            entries = [{"resource": _patient(p, str(p.uuid))} for p in found]
    for entry in entries:
        entry["fullUrl"] = f"{base}{name}/{entry['resource']['id']}"
    return {"resourceType": "Bundle", "type": "searchset", "total": total, "entry": entries}
