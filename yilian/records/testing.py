"""Factories for records tests: source identities made directly with the ORM (the MPI's
`identity_ingest` is built in parallel), and a few records sent through the real services."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from django.utils import timezone

from yilian.organizations.models import Institution
from yilian.patients.models import LinkMethod, Patient, SourceIdentity
from yilian.records import services
from yilian.records.data import ConditionData, DiagnosticReportData, EncounterData, ObservationData
from yilian.records.models import EncounterClass, ObservationCategory, PayerType, ReportCategory


def make_identity(patient: Patient, institution: Institution, local_id: str | None = None) -> SourceIdentity:
    """The patient as `institution`'s system knows them, linked to `patient`."""
    return SourceIdentity.objects.create(
        institution=institution,
        local_id=local_id or f"P{patient.pk:06d}-{institution.pk}",
        name=patient.name,
        sex=patient.sex,
        birth_date=patient.birth_date,
        id_type=patient.id_type,
        id_number=patient.id_number,
        id_number_valid=patient.id_number_valid,
        patient=patient,
        link_method=LinkMethod.NATIONAL_ID,
        link_score=1.0,
        linked_at=timezone.now(),
    )


def ago(days: float = 0, hours: float = 0) -> dt.datetime:
    return timezone.now() - dt.timedelta(days=days, hours=hours)


def make_visit(
    identity: SourceIdentity, source_id: str, *, days_ago: float = 1, icd10: str = "I10", display: str = ""
) -> services.Upserted:  # type: ignore[type-arg]
    """An outpatient encounter with one primary diagnosis, sent by the identity's institution."""
    institution = identity.institution
    encounter = services.encounter_upsert(
        institution=institution,
        identity=identity,
        source_id=source_id,
        data=EncounterData(
            encounter_class=EncounterClass.OUTPATIENT,
            started_at=ago(days_ago),
            ended_at=ago(days_ago, hours=-0.5),
            department_name="全科",
            practitioner_name="王医生",
            payer_type=PayerType.RESIDENT_INSURANCE,
            total_cost=Decimal("86.50"),
            insurance_paid=Decimal("43.25"),
        ),
    )
    services.condition_upsert(
        institution=institution,
        identity=identity,
        source_id=f"{source_id}-dx",
        data=ConditionData(
            icd10_code=icd10, display=display, recorded_at=ago(days_ago), is_primary=True, encounter_source_id=source_id
        ),
    )
    return encounter


def make_glucose(identity: SourceIdentity, source_id: str, *, days_ago: float, value: str = "7.8") -> services.Upserted:  # type: ignore[type-arg]
    return services.observation_upsert(
        institution=identity.institution,
        identity=identity,
        source_id=source_id,
        data=ObservationData(
            category=ObservationCategory.LABORATORY,
            code="1558-6",
            display="空腹血糖",
            value_quantity=Decimal(value),
            unit="mmol/L",
            reference_low=Decimal("3.9"),
            reference_high=Decimal("6.1"),
            effective_at=ago(days_ago),
        ),
    )


def make_chest_xray(identity: SourceIdentity, source_id: str, *, days_ago: float) -> services.Upserted:  # type: ignore[type-arg]
    return services.diagnostic_report_upsert(
        institution=identity.institution,
        identity=identity,
        source_id=source_id,
        data=DiagnosticReportData(
            category=ReportCategory.IMAGING,
            code="36643-5",
            display="胸部X线摄影（正侧位）",
            text="双肺纹理清晰，未见实变影。",
            conclusion="心肺未见明显异常。",
            performer_name="赵影像",
            effective_at=ago(days_ago),
            issued_at=ago(days_ago, hours=-2),
        ),
    )
