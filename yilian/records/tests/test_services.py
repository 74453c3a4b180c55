"""The upsert services: idempotent on (institution, source_id), validated, all-or-nothing."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from yilian.records import services
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
    Condition,
    DocumentKind,
    Encounter,
    EncounterClass,
    InsuranceSettlement,
    MedicationRequest,
    Observation,
    PayerType,
    Procedure,
    ReportCategory,
)
from yilian.records.testing import ago, make_identity, make_visit
from yilian.testing.world import World


@pytest.fixture
def identity(world: World):  # type: ignore[no-untyped-def]
    return make_identity(world.patients["at_a"], world.a)


def inpatient(**changes: object) -> EncounterData:
    values: dict[str, object] = {
        "encounter_class": EncounterClass.INPATIENT,
        "started_at": ago(10),
        "ended_at": ago(3),
        "department_name": "心血管内科",
        "payer_type": PayerType.EMPLOYEE_INSURANCE,
        "total_cost": Decimal("12800.00"),
        "insurance_paid": Decimal("9000.00"),
    }
    values.update(changes)
    return EncounterData(**values)  # type: ignore[arg-type]


def test_the_same_row_twice_is_one_row_and_changes_nothing(world: World, identity) -> None:  # type: ignore[no-untyped-def]
    data = inpatient()
    first = services.encounter_upsert(institution=world.a, identity=identity, source_id="ZY-1", data=data)
    assert first.created and not first.changed
    stamp = Encounter.objects.get().updated_at
    again = services.encounter_upsert(institution=world.a, identity=identity, source_id="ZY-1", data=data)
    assert not again.created and not again.changed and again.record.pk == first.record.pk
    assert Encounter.objects.count() == 1 and Encounter.objects.get().updated_at == stamp


def test_a_changed_row_is_updated_in_place(world: World, identity) -> None:  # type: ignore[no-untyped-def]
    services.encounter_upsert(institution=world.a, identity=identity, source_id="ZY-1", data=inpatient())
    result = services.encounter_upsert(
        institution=world.a, identity=identity, source_id="ZY-1", data=inpatient(total_cost=Decimal("13000.00"))
    )
    assert result.changed and not result.created
    assert Encounter.objects.get().total_cost == Decimal("13000.00")
    # The same source id from another institution is another row.
    other = make_identity(world.patients["at_a"], world.b)
    services.encounter_upsert(institution=world.b, identity=other, source_id="ZY-1", data=inpatient())
    assert Encounter.objects.count() == 2


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"ended_at": ago(11)}, "ended_at", "出院时间不能早于入院时间。"),
        ({"started_at": timezone.now() + dt.timedelta(days=2), "ended_at": None}, "started_at", "时间不能晚于当前时间。"),
        ({"total_cost": Decimal("-1")}, "total_cost", "不能为负数。"),
        ({"insurance_paid": Decimal("20000")}, "insurance_paid", "医保支付不能超过总费用。"),
        ({"encounter_class": "spa"}, "encounter_class", None),
    ],
)
def test_impossible_encounters_are_refused_in_chinese(world: World, identity, changes, field, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValidationError) as caught:
        services.encounter_upsert(institution=world.a, identity=identity, source_id="ZY-1", data=inpatient(**changes))
    assert field in caught.value.message_dict
    if message:
        assert message in caught.value.message_dict[field]
    assert not Encounter.objects.exists()


def test_icd10_catalogue_accepts_who_and_clinical_version_codes() -> None:
    assert icd10_lookup("I10").name == "原发性高血压"  # type: ignore[union-attr]
    assert icd10_lookup("i10.x00x002").code == "I10.x00x002"  # type: ignore[union-attr]
    assert icd10_lookup("I10.x00x002").who_code == "I10"  # type: ignore[union-attr]
    assert icd10_lookup("E11.900").who_code == "E11.9"  # type: ignore[union-attr]
    assert icd10_lookup("J44.9").name == "慢性阻塞性肺病"  # type: ignore[union-attr]
    assert icd10_lookup("S72.000").who_code == "S72.0"  # type: ignore[union-attr]
    assert icd10_lookup("J06.9") is not None
    for bad in ("I10.0", "Q99.99", "E11.9x", "XYZ", "I10.x", "", "I00-I99", "U99.9"):
        assert icd10_lookup(bad) is None, bad


def test_unknown_icd10_code_writes_nothing_even_inside_a_visit(world: World, identity) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValidationError) as caught:
        make_visit(identity, "MZ-1", icd10="I10.9")
    assert "不是有效的 ICD-10 编码：I10.9。" in caught.value.message_dict["icd10_code"]
    # make_visit wrote the encounter first in its own service call; the diagnosis is absent.
    assert not Condition.objects.exists()


def test_condition_takes_the_catalogue_name_and_links_its_encounter(world: World, identity) -> None:  # type: ignore[no-untyped-def]
    make_visit(identity, "MZ-1", icd10="e11.900")
    condition = Condition.objects.get()
    assert condition.icd10_code == "E11.900" and condition.display == "2型糖尿病不伴有并发症" and condition.is_primary
    assert condition.encounter == Encounter.objects.get(source_id="MZ-1")
    with pytest.raises(ValidationError) as caught:
        services.condition_upsert(
            institution=world.a,
            identity=identity,
            source_id="DX-2",
            data=ConditionData(icd10_code="I10", recorded_at=ago(1), encounter_source_id="NO-SUCH"),
        )
    assert "encounter_source_id" in caught.value.message_dict


def test_identity_must_belong_to_the_sender(world: World, identity) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValidationError) as caught:
        services.encounter_upsert(institution=world.b, identity=identity, source_id="ZY-1", data=inpatient())
    assert "identity" in caught.value.message_dict
    with pytest.raises(ValidationError):
        services.encounter_upsert(institution=world.a, identity=identity, source_id="  ", data=inpatient())
    assert not Encounter.objects.exists()


def test_observation_flag_is_derived_from_the_range(world: World, identity) -> None:  # type: ignore[no-untyped-def]
    def send(source_id: str, value: str) -> Observation:
        return services.observation_upsert(
            institution=world.a,
            identity=identity,
            source_id=source_id,
            data=ObservationData(
                category="laboratory",
                code="1558-6",
                display="空腹血糖",
                value_quantity=Decimal(value),
                unit="mmol/L",
                reference_low=Decimal("3.9"),
                reference_high=Decimal("6.1"),
                effective_at=ago(1),
            ),
        ).record

    assert send("L1", "7.8").interpretation == "H"
    assert send("L2", "3.1").interpretation == "L"
    assert send("L3", "5.0").interpretation == "N"
    with pytest.raises(ValidationError) as caught:
        services.observation_upsert(
            institution=world.a,
            identity=identity,
            source_id="L4",
            data=ObservationData(
                category="laboratory",
                code="X",
                display="X",
                effective_at=ago(1),
                value_quantity=Decimal(1),
                reference_low=Decimal(5),
                reference_high=Decimal(1),
            ),
        )
    assert "参考下限不能大于参考上限。" in caught.value.message_dict["reference_low"]


def test_reports_prescriptions_procedures_documents(world: World, identity) -> None:  # type: ignore[no-untyped-def]
    common = {"institution": world.a, "identity": identity}
    services.diagnostic_report_upsert(
        **common,
        source_id="R1",
        data=DiagnosticReportData(
            category=ReportCategory.ECG, code="11524-6", display="十二导联心电图", conclusion="窦性心律", effective_at=ago(2)
        ),
    )
    with pytest.raises(ValidationError) as caught:
        services.diagnostic_report_upsert(
            **common,
            source_id="R2",
            data=DiagnosticReportData(category="ecg", code="11524-6", display="心电图", effective_at=ago(2), issued_at=ago(3)),
        )
    assert "报告时间不能早于检查时间。" in caught.value.message_dict["issued_at"]
    services.medication_request_upsert(
        **common,
        source_id="RX1",
        data=MedicationRequestData(
            medication_name="苯磺酸氨氯地平片",
            dosage_text="5mg 口服 每日一次",
            quantity=Decimal(28),
            quantity_unit="片",
            authored_at=ago(2),
        ),
    )
    with pytest.raises(ValidationError):
        services.medication_request_upsert(
            **common, source_id="RX2", data=MedicationRequestData(medication_name="x", quantity=Decimal(-1), authored_at=ago(2))
        )
    services.procedure_upsert(
        **common, source_id="OP1", data=ProcedureData(code="81.51", display="全髋关节置换术", grade=4, performed_at=ago(5))
    )
    with pytest.raises(ValidationError) as caught:
        services.procedure_upsert(
            **common, source_id="OP2", data=ProcedureData(code="x", display="x", grade=5, performed_at=ago(5))
        )
    assert "手术分级为 1–4 级。" in caught.value.message_dict["grade"]
    services.document_reference_upsert(
        **common,
        source_id="DOC1",
        data=DocumentReferenceData(kind=DocumentKind.DISCHARGE_SUMMARY, title="出院小结", text="病情稳定出院。", dated_at=ago(3)),
    )
    assert MedicationRequest.objects.count() == 1 and Procedure.objects.count() == 1


def test_settlements_outside_the_county_are_named_not_linked(world: World, identity) -> None:  # type: ignore[no-untyped-def]
    common = {"institution": world.a, "identity": identity}
    inside = services.insurance_settlement_upsert(
        **common,
        source_id="S1",
        data=InsuranceSettlementData(
            encounter_class=EncounterClass.OUTPATIENT,
            payer_type=PayerType.RESIDENT_INSURANCE,
            settled_at=ago(4),
            total_cost=Decimal(100),
            fund_paid=Decimal(50),
            personal_paid=Decimal(50),
            provider_institution=world.b,
        ),
    ).record
    assert inside.within_county and inside.provider_name == "水步镇卫生院" and inside.provider_region == "440781"
    outside = services.insurance_settlement_upsert(
        **common,
        source_id="S2",
        data=InsuranceSettlementData(
            encounter_class=EncounterClass.INPATIENT,
            payer_type=PayerType.RESIDENT_INSURANCE,
            settled_at=ago(4),
            total_cost=Decimal(30000),
            fund_paid=Decimal(18000),
            personal_paid=Decimal(12000),
            provider_name="广东省人民医院",
            provider_code="H44010600001",
            provider_region="440104",
        ),
    ).record
    assert not outside.within_county and outside.provider_institution is None
    for bad, field in (
        ({"fund_paid": Decimal(80), "personal_paid": Decimal(80)}, "fund_paid"),
        ({"personal_paid": Decimal(-1)}, "personal_paid"),
        ({"provider_name": ""}, "provider_name"),
        ({"provider_region": "99"}, "provider_region"),
        ({"settled_at": timezone.now() + dt.timedelta(days=1)}, "settled_at"),
    ):
        values: dict[str, object] = {
            "encounter_class": "outpatient",
            "payer_type": "resident",
            "settled_at": ago(1),
            "total_cost": Decimal(100),
            "provider_name": "江门市中心医院",
            "provider_region": "440703",
        }
        values.update(bad)
        with pytest.raises(ValidationError) as caught:
            services.insurance_settlement_upsert(**common, source_id="S3", data=InsuranceSettlementData(**values))  # type: ignore[arg-type]
        assert field in caught.value.message_dict, bad
    assert InsuranceSettlement.objects.count() == 2
