"""The channels write the shared record (records.services.<resource>_upsert): what arrives is seen
in the patient 360 timeline, bad codes are refused whole and kept, resending changes nothing."""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from typing import Any

import pytest
from django.test import Client

from yilian.accounts.actors import Actor
from yilian.accounts.selectors import current_memberships
from yilian.interop import csvimport, hl7v2, services
from yilian.interop.models import Channel, ImportKind, ImportStatus, InboundMessage, MessageStatus
from yilian.interop.tests.conftest import PID, PV1, SAMPLES, hl7
from yilian.patients.models import SourceIdentity
from yilian.records.models import (
    Condition,
    DiagnosticReport,
    DocumentReference,
    Encounter,
    InsuranceSettlement,
    MedicationRequest,
    Observation,
    Procedure,
)
from yilian.records.selectors import TimelineFilter, timeline_page
from yilian.testing.world import World

RECORD_MODELS = (
    Encounter,
    Condition,
    Observation,
    DiagnosticReport,
    MedicationRequest,
    Procedure,
    DocumentReference,
    InsuranceSettlement,
)
HL7_URL = "/api/v1/interop/hl7"


def snapshot() -> dict[str, list[tuple[Any, ...]]]:
    """Every record row with its update time: equal snapshots mean nothing was written."""
    return {
        model.__name__: sorted(model._default_manager.values_list("uuid", "source_id", "updated_at")) for model in RECORD_MODELS
    }


def post_fhir(client: Client, key: str, body: object, url: str = "/fhir/") -> Any:
    return client.post(
        url,
        data=json.dumps(body, ensure_ascii=False).encode(),
        content_type="application/fhir+json",
        headers={"Authorization": f"Bearer {key}"},
    )


def post_hl7(client: Client, key: str, text: str, codec: str = "utf-8") -> bytes:
    response = client.post(
        HL7_URL, data=text.encode(codec), content_type="x-application/hl7-v2+er7", headers={"Authorization": f"Bearer {key}"}
    )
    assert response.status_code == 200
    return response.content


PATIENT = {
    "resourceType": "Patient",
    "id": "P0001",
    "identifier": [{"type": {"coding": [{"code": "NNCHN"}]}, "value": "440781195803070012"}],
    "name": [{"family": "伍", "given": ["国华"]}],
    "gender": "male",
    "birthDate": "1958-03-07",
}


def entry(resource: dict[str, Any]) -> dict[str, Any]:
    url = f"{resource['resourceType']}/{resource['id']}"
    return {
        "fullUrl": f"urn:uuid:{resource['resourceType'].lower()}-{resource['id']}",
        "resource": resource,
        "request": {"method": "PUT", "url": url},
    }


def bundle(*resources: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": [entry(r) for r in resources]}


ENCOUNTER = {
    "resourceType": "Encounter",
    "id": "V0001",
    "status": "finished",
    "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB", "display": "门诊"},
    "subject": {"reference": "Patient/P0001"},
    "participant": [{"individual": {"display": "黄晓敏"}}],
    "period": {"start": "2026-01-05T09:30:00+08:00", "end": "2026-01-05T10:00:00+08:00"},
    "serviceProvider": {"display": "全科医学科"},
}
CONDITION = {
    "resourceType": "Condition",
    "id": "D0001",
    "category": [{"coding": [{"code": "encounter-diagnosis"}]}],
    "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "I10", "display": "特发性（原发性）高血压"}]},
    "subject": {"reference": "Patient/P0001"},
    "encounter": {"reference": "Encounter/V0001"},
    "recordedDate": "2026-01-05",
}
OBSERVATION = {
    "resourceType": "Observation",
    "id": "R0001",
    "status": "final",
    "category": [{"coding": [{"code": "laboratory"}]}],
    "code": {"coding": [{"system": "http://loinc.org", "code": "1558-6", "display": "空腹血糖"}]},
    "subject": {"reference": "Patient/P0001"},
    "encounter": {"reference": "Encounter/V0001"},
    "effectiveDateTime": "2026-01-05T09:45:00+08:00",
    "valueQuantity": {"value": 6.8, "unit": "mmol/L"},
    "referenceRange": [{"low": {"value": 3.9}, "high": {"value": 6.1}}],
}


def test_transaction_bundle_lands_in_the_patient_timeline(world: World, b_key: str, client: Client) -> None:
    response = post_fhir(client, b_key, bundle(PATIENT, ENCOUNTER, CONDITION, OBSERVATION))
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["type"] == "transaction-response"
    assert [e["response"]["status"] for e in body["entry"]] == [
        "201 Created"
    ] * 4  # the identity is new, its golden patient is not
    # 伍国华's national ID links the sender's P0001 to the golden patient registered at A
    patient = world.patients["at_a"]
    assert SourceIdentity.objects.get(institution=world.b, local_id="P0001").patient == patient
    items, count = timeline_page(patient, TimelineFilter(), page=1, page_size=20)
    assert count == 3
    kinds = {item.kind: item for item in items}
    assert set(kinds) == {"encounter", "condition", "observation"}
    assert kinds["condition"].code == "I10" and kinds["condition"].institution == world.b
    observation = kinds["observation"].record
    assert (observation.value_display, observation.interpretation) == ("6.8 mmol/L", "H")  # derived from the range
    assert observation.encounter == kinds["encounter"].record
    assert kinds["encounter"].record.practitioner_name == "黄晓敏"

    before = snapshot()
    again = post_fhir(client, b_key, bundle(PATIENT, ENCOUNTER, CONDITION, OBSERVATION))
    assert again.status_code == 200 and again.json() == body
    assert snapshot() == before
    # the same content sent differently (another Bundle) updates in place, never duplicates
    other = bundle(PATIENT, ENCOUNTER, CONDITION, OBSERVATION)
    other["id"] = "resend"
    assert post_fhir(client, b_key, other).status_code == 200
    assert snapshot() == before


def test_every_clinical_resource_is_written(world: World, b_key: str, client: Client) -> None:
    subject = {"reference": "Patient/P0001"}
    resources: list[dict[str, Any]] = [
        PATIENT,
        ENCOUNTER,
        {
            "resourceType": "DiagnosticReport",
            "id": "RPT1",
            "status": "final",
            "category": [{"coding": [{"code": "RAD"}]}],
            "code": {"coding": [{"code": "CT-HEAD", "display": "头颅CT平扫"}]},
            "subject": subject,
            "effectiveDateTime": "2026-01-05T09:50:00+08:00",
            "issued": "2026-01-05T11:00:00+08:00",
            "conclusion": "未见明显异常。",
        },
        {
            "resourceType": "MedicationRequest",
            "id": "RX1",
            "status": "active",
            "intent": "order",
            "medicationCodeableConcept": {"coding": [{"code": "XC09AAC001", "display": "卡托普利片"}]},
            "subject": subject,
            "authoredOn": "2026-01-05T10:00:00+08:00",
            "dosageInstruction": [{"text": "口服，一次 25 mg，一日 3 次"}],
            "dispenseRequest": {"quantity": {"value": 42, "unit": "片"}},
        },
        {
            "resourceType": "Procedure",
            "id": "OP1",
            "status": "completed",
            "code": {"coding": [{"code": "86.5901", "display": "皮肤缝合术"}]},
            "subject": subject,
            "performedDateTime": "2026-01-05T09:40:00+08:00",
            "performer": [{"actor": {"display": "黄晓敏"}}],
        },
        {
            "resourceType": "DocumentReference",
            "id": "DOC1",
            "status": "current",
            "type": {"coding": [{"system": "http://loinc.org", "code": "18842-5", "display": "出院小结"}]},
            "subject": subject,
            "date": "2026-01-05T10:00:00+08:00",
            "content": [{"attachment": {"contentType": "text/plain", "data": "5Ye66Zmi5bCP57uT", "title": "出院小结"}}],
        },
        {
            "resourceType": "ImagingStudy",
            "id": "RPT1",  # the same accession number as the report: kept apart
            "status": "available",
            "identifier": [{"system": "urn:dicom:uid", "value": "urn:oid:1.2.156.112605.1"}],
            "modality": [{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "CT"}],
            "subject": subject,
            "started": "2026-01-05T09:50:00+08:00",
            "numberOfSeries": 2,
            "numberOfInstances": 240,
            "description": "头颅CT",
        },
    ]
    response = post_fhir(client, b_key, bundle(*resources))
    assert response.status_code == 200, response.content
    report = DiagnosticReport.objects.get(institution=world.b, source_id="RPT1")
    assert (report.category, report.conclusion) == ("imaging", "未见明显异常。")
    study = DiagnosticReport.objects.get(institution=world.b, source_id="IS-RPT1")
    assert study.code == "CT" and "1.2.156.112605.1" in study.text and "240" in study.text
    medication = MedicationRequest.objects.get(institution=world.b, source_id="RX1")
    assert (medication.medication_name, medication.quantity, medication.quantity_unit) == ("卡托普利片", 42, "片")
    procedure = Procedure.objects.get(institution=world.b, source_id="OP1")
    assert (procedure.display, procedure.performer_name) == ("皮肤缝合术", "黄晓敏")
    document = DocumentReference.objects.get(institution=world.b, source_id="DOC1")
    assert (document.kind, document.text) == ("discharge_summary", "出院小结")
    items, count = timeline_page(world.patients["at_a"], TimelineFilter(), page=1, page_size=20)
    assert count == 6
    assert {i.kind for i in items} == {"encounter", "report", "medication", "procedure", "document"}


def test_unknown_icd_code_refuses_the_whole_bundle(world: World, b_key: str, client: Client) -> None:
    bad: dict[str, Any] = copy.deepcopy(CONDITION)
    bad["code"]["coding"][0]["code"] = "Q99.9X"
    response = post_fhir(client, b_key, bundle(PATIENT, ENCOUNTER, bad, OBSERVATION))
    assert response.status_code == 422
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert "Q99.9X" in outcome["issue"][0]["diagnostics"]
    assert outcome["issue"][0]["expression"] == ["Condition[D0001].icd10_code"]
    assert not SourceIdentity.objects.filter(institution=world.b, local_id="P0001").exists()
    assert snapshot() == {model.__name__: [] for model in RECORD_MODELS}
    message = InboundMessage.objects.get()
    assert message.status == MessageStatus.REJECTED and "ICD-10" in message.reason


def test_oru_writes_the_report_and_its_observations(world: World, b_key: str, client: Client) -> None:
    text = hl7("ORU^R01", SAMPLES["ORU^R01"], charset_field="GB 18030-2000")
    ack = post_hl7(client, b_key, text, "gb18030")
    assert hl7v2.ack_code(ack) == "AA", ack
    report = DiagnosticReport.objects.get(institution=world.b, source_id="LAB0001")
    assert (report.category, report.display, report.conclusion) == ("laboratory", "空腹血糖", "血糖偏高，建议复查")
    observation = Observation.objects.get(institution=world.b)
    assert (observation.code, observation.display, observation.value_display) == ("GLU", "空腹血糖", "6.8 mmol/L")
    assert (observation.reference_low, observation.reference_high, observation.interpretation) == (
        Decimal("3.9"),
        Decimal("6.1"),
        "H",
    )
    assert observation.encounter == Encounter.objects.get(institution=world.b, source_id="V0001")
    assert observation.identity.patient == world.patients["at_a"]
    before = snapshot()
    assert hl7v2.ack_code(post_hl7(client, b_key, text, "gb18030")) == "AA"
    # a second sending with a new control id (a resend by the HIS) is the same rows again
    assert hl7v2.ack_code(post_hl7(client, b_key, text.replace("MSG0001", "MSG0002"), "gb18030")) == "AA"
    assert snapshot() == before


def test_the_first_refused_row_of_a_message_is_the_one_reported(world: World, b_key: str, client: Client) -> None:
    # OBX 1 is refused by the records service (its range runs backwards), OBX 2 earlier, while it is
    # mapped (no code): the rows go to the records service together, yet the answer names OBX 1,
    # the first in the message, as when they went one by one.
    results = (
        "OBR|1|O1|LAB0001|GLU^空腹血糖|||20260105094500\r"
        "OBX|1|NM|GLU^空腹血糖^L||6.8|mmol/L|6.1-3.9|H|||F\r"
        "OBX|2|NM|||5.0|mmol/L|3.9-6.1||||F\r"
    )
    nak = post_hl7(client, b_key, hl7("ORU^R01", PID + PV1 + results, control_id="R1"))
    assert hl7v2.ack_code(nak) == "AE"
    message = InboundMessage.objects.get(control_id="R1")
    assert message.status == MessageStatus.REJECTED
    assert "Observation[LAB0001-1]" in message.reason and "参考下限不能大于参考上限" in message.reason
    assert "缺少项目编码" not in message.reason
    assert snapshot() == {model.__name__: [] for model in RECORD_MODELS}

    # With OBX 1 right, OBX 2 is the one named.
    nak = post_hl7(client, b_key, hl7("ORU^R01", PID + PV1 + results.replace("6.1-3.9", "3.9-6.1"), control_id="R2"))
    assert hl7v2.ack_code(nak) == "AE"
    reason = InboundMessage.objects.get(control_id="R2").reason
    assert "Observation[LAB0001-2]" in reason and "缺少项目编码" in reason
    assert snapshot() == {model.__name__: [] for model in RECORD_MODELS}


def test_adt_diagnoses_are_written_and_an_unknown_code_is_a_nak(world: World, b_key: str, client: Client) -> None:
    dg1 = "DG1|1||I10^高血压^I10||20260105|F|||||||||1\rDG1|2||E11.9^2型糖尿病^I10||20260105|F\r"
    ack = post_hl7(client, b_key, hl7("ADT^A04", PID + PV1 + dg1, control_id="DG1"))
    assert hl7v2.ack_code(ack) == "AA", ack
    conditions = {c.icd10_code: c for c in Condition.objects.filter(institution=world.b)}
    assert set(conditions) == {"I10", "E11.9"}
    assert conditions["I10"].is_primary and not conditions["E11.9"].is_primary
    assert conditions["I10"].encounter == Encounter.objects.get(institution=world.b, source_id="V0001")

    before = snapshot()
    bad = PID.replace("P0001", "P0003").replace("440781195803070012", "") + PV1.replace("V0001", "V0003")
    nak = post_hl7(client, b_key, hl7("ADT^A04", bad + "DG1|1||Q99.9X^不存在^I10||20260105|F\r", control_id="DG2"))
    assert hl7v2.ack_code(nak) == "AE"
    assert "Q99.9X" in nak.decode()
    assert snapshot() == before
    assert not SourceIdentity.objects.filter(institution=world.b, local_id="P0003").exists()
    assert InboundMessage.objects.get(control_id="DG2").status == MessageStatus.REJECTED


def _actor(world: World) -> Actor:
    user = world.user("institution_admin")
    return Actor(user=user, membership=current_memberships(user)[0])


def _import(world: World, kind: str, rows: list[list[str]]) -> Any:
    content = csvimport.template(kind).decode("utf-8-sig").splitlines()[0] + "\n"
    content += "".join(",".join(row) + "\n" for row in rows)
    job = services.import_job_create(
        actor=_actor(world), institution=world.b, kind=kind, file_name=f"{kind}.csv", content=content.encode()
    )
    return services.import_job_run(job_id=job.pk)


def test_csv_imports_write_every_kind_and_row_errors_are_dead_letters(world: World) -> None:
    for kind in (ImportKind.PATIENTS, ImportKind.ENCOUNTERS, ImportKind.DIAGNOSES, ImportKind.RESULTS, ImportKind.SETTLEMENTS):
        job = _import(world, kind, [csvimport.EXAMPLES[kind]])
        assert (job.status, job.accepted_rows, job.error_rows) == (ImportStatus.DONE, 1, 0), (kind, job.errors)
    assert Encounter.objects.get(institution=world.b, source_id="V0001").total_cost == 256.5
    assert Condition.objects.get(institution=world.b, source_id="D0001").encounter is not None
    assert Observation.objects.get(institution=world.b, source_id="R0001").interpretation == "H"
    settlement = InsuranceSettlement.objects.get(institution=world.b, source_id="S0001")
    assert (settlement.provider_name, settlement.within_county) == ("台山市人民医院", True)
    _items, count = timeline_page(world.patients["at_a"], TimelineFilter(), page=1, page_size=20)
    assert count == 4

    before = snapshot()
    diagnosis = csvimport.EXAMPLES[ImportKind.DIAGNOSES]
    job = _import(world, ImportKind.DIAGNOSES, [diagnosis, ["D0002", "P0001", "V0001", "Q99.9X", "不存在", "", "2026-01-05"]])
    assert (job.accepted_rows, job.error_rows) == (1, 1)
    assert job.errors[0]["row"] == 3 and "Q99.9X" in job.errors[0]["message"]
    assert snapshot() == before  # the good row was already there: unchanged; the bad one wrote nothing
    dead = InboundMessage.objects.get(channel=Channel.CSV)
    assert dead.status == MessageStatus.REJECTED and "ICD-10" in dead.reason


@pytest.mark.parametrize("kind", [ImportKind.ENCOUNTERS, ImportKind.RESULTS])
def test_csv_rows_for_an_unknown_patient_are_refused(world: World, kind: str) -> None:
    job = _import(world, kind, [csvimport.EXAMPLES[kind]])
    assert (job.accepted_rows, job.error_rows) == (0, 1)
    assert "P0001" in job.errors[0]["message"]
    assert snapshot() == {model.__name__: [] for model in RECORD_MODELS}
