"""What a member system tells us about a patient: the input of identity_ingest (ADR 0003)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from yilian.patients.models import IdentityDocumentType, Patient, Sex, SourceIdentity


@dataclass(frozen=True)
class IdentityData:
    """One source identity as sent: `local_id` is the sender's patient id (PID-3, Patient.identifier)."""

    local_id: str
    name: str
    sex: str = Sex.UNKNOWN
    birth_date: dt.date | None = None
    id_type: str = IdentityDocumentType.RESIDENT_ID
    id_number: str = ""
    phone: str = ""
    address: str = ""
    town: str = ""
    record_number: str = ""
    health_card_number: str = ""
    insurance_number: str = ""


@dataclass(frozen=True)
class IdentityOutcome:
    """What identity_ingest did: the identity, the golden patient it is linked to, whether the
    identity is new, how it was linked (LinkMethod) and whether a review item is open for it."""

    identity: SourceIdentity
    patient: Patient
    created: bool
    method: str
    needs_review: bool
