"""What a member system sends for each kind of record: the inputs of the `<resource>_upsert`
services (ADR 0003). Plain frozen dataclasses, no HTTP and no FHIR objects; interop maps FHIR,
HL7 v2 and CSV into these, the demo and the pages build them directly.

`encounter_source_id` names the Encounter (the sender's id for it) a row belongs to, when it does.
Times must be timezone-aware; naive ones are read as Asia/Shanghai.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

from yilian.organizations.models import Institution
from yilian.records.models import PayerType


@dataclass(frozen=True)
class EncounterData:
    encounter_class: str
    started_at: dt.datetime
    ended_at: dt.datetime | None = None
    department_name: str = ""
    practitioner_name: str = ""
    reason: str = ""
    payer_type: str = PayerType.SELF_PAY
    total_cost: Decimal = Decimal(0)
    insurance_paid: Decimal = Decimal(0)


@dataclass(frozen=True)
class ConditionData:
    icd10_code: str
    recorded_at: dt.datetime
    display: str = ""  # blank: the catalogue's name for the code
    is_primary: bool = False
    encounter_source_id: str = ""


@dataclass(frozen=True)
class ObservationData:
    category: str
    code: str
    display: str
    effective_at: dt.datetime
    value_quantity: Decimal | None = None
    value_text: str = ""
    unit: str = ""
    reference_low: Decimal | None = None
    reference_high: Decimal | None = None
    reference_text: str = ""
    interpretation: str = ""  # blank: derived from the value and the reference range when both are given
    encounter_source_id: str = ""


@dataclass(frozen=True)
class DiagnosticReportData:
    category: str
    code: str
    display: str
    effective_at: dt.datetime
    text: str = ""
    conclusion: str = ""
    performer_name: str = ""
    issued_at: dt.datetime | None = None
    encounter_source_id: str = ""


@dataclass(frozen=True)
class MedicationRequestData:
    medication_name: str
    authored_at: dt.datetime
    medication_code: str = ""
    dosage_text: str = ""
    quantity: Decimal | None = None
    quantity_unit: str = ""
    days_supply: int | None = None
    prescriber_name: str = ""
    encounter_source_id: str = ""


@dataclass(frozen=True)
class ProcedureData:
    code: str
    display: str
    performed_at: dt.datetime
    grade: int | None = None
    performer_name: str = ""
    encounter_source_id: str = ""


@dataclass(frozen=True)
class DocumentReferenceData:
    kind: str
    title: str
    dated_at: dt.datetime
    text: str = ""
    attachment_url: str = ""
    content_type: str = ""
    author_name: str = ""
    encounter_source_id: str = ""


@dataclass(frozen=True)
class InsuranceSettlementData:
    """A settlement. Name the provider by `provider_institution` when it is a member, otherwise by
    name, insurance code and GB/T 2260 region code (a hospital outside the county)."""

    encounter_class: str
    payer_type: str
    settled_at: dt.datetime
    total_cost: Decimal
    fund_paid: Decimal = Decimal(0)
    personal_paid: Decimal = Decimal(0)
    provider_institution: Institution | None = None
    provider_name: str = ""
    provider_code: str = ""
    provider_region: str = ""
    encounter_source_id: str = ""
