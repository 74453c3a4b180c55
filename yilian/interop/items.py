"""What a parsed message asks for, before anything is written: plain data, no HTTP, no FHIR objects.

Every parser (FHIR R4 JSON, HL7 v2, CSV) turns its input into a list of items; `apply.py` writes
them through `patients.services.identity_ingest` and the records upserts in one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from yilian.patients.identities import IdentityData


class ParseError(Exception):
    """Input that cannot be understood: malformed JSON, wrong FHIR types, broken HL7 segments,
    undecodable bytes, impossible dates. `issues` are (location, Chinese message) pairs."""

    def __init__(self, message: str, *, issues: list[tuple[str, str]] | None = None, code: str = "invalid") -> None:
        self.message = message
        self.issues = issues or [("", message)]
        self.code = code
        super().__init__(message)

    def __str__(self) -> str:
        details = "；".join(f"{where}：{what}" if where else what for where, what in self.issues)
        return details or self.message


@dataclass(frozen=True)
class IdentityItem:
    """A patient as the sender knows them (FHIR Patient, PID segment, a CSV patient row)."""

    data: IdentityData
    reference: str = ""  # how the rest of the message refers to it (fullUrl, Patient/<id>)


@dataclass(frozen=True)
class RecordItem:
    """One clinical row: `resource` is the FHIR resource name (Encounter, Condition, Observation,
    DiagnosticReport, MedicationRequest, Procedure, DocumentReference, ImagingStudy,
    InsuranceSettlement), `source_id` the sender's id for the row, `patient_local_id` the sender's
    patient id, `values` the row's fields by name (see apply.py for the mapping)."""

    resource: str
    source_id: str
    patient_local_id: str
    values: dict[str, Any] = field(default_factory=dict)
    reference: str = ""


@dataclass(frozen=True)
class MergeItem:
    """HL7 ADT^A40: the sender merged `merged_local_id` into `survivor_local_id`."""

    survivor_local_id: str
    merged_local_id: str


Item = IdentityItem | RecordItem | MergeItem
