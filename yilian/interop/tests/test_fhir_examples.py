"""Official-style R4 examples (tests/fixtures/fhir, written in the manner of the hl7.org examples,
with Chinese content) go in and come back out: POST or PUT, then GET, compare what matters."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from yilian.interop.fhir.schema import validate
from yilian.interop.tests.test_records import bundle, post_fhir
from yilian.testing.world import World

FIXTURES = Path(__file__).parent / "fixtures" / "fhir"
ORDER = (
    "patient",
    "encounter",
    "condition",
    "observation",
    "diagnosticreport",
    "medicationrequest",
    "procedure",
    "documentreference",
    "imagingstudy",
)
# What must survive the round trip, by path (a.b[0].c).
MEANINGFUL: dict[str, tuple[str, ...]] = {
    "Patient": ("id", "gender", "birthDate", "telecom[0].value"),
    "Encounter": (
        "status",
        "class.code",
        "period.start",
        "period.end",
        "participant[0].individual.display",
        "reasonCode[0].text",
    ),
    "Condition": ("code.coding[0].code", "category[0].coding[0].code"),
    "Observation": (
        "status",
        "code.coding[0].code",
        "category[0].coding[0].code",
        "effectiveDateTime",
        "valueQuantity.value",
        "valueQuantity.unit",
        "interpretation[0].coding[0].code",
        "referenceRange[0].low.value",
        "referenceRange[0].high.value",
    ),
    "DiagnosticReport": (
        "status",
        "category[0].coding[0].code",
        "code.coding[0].code",
        "effectiveDateTime",
        "issued",
        "performer[0].display",
        "conclusion",
    ),
    "MedicationRequest": (
        "intent",
        "medicationCodeableConcept.coding[0].code",
        "medicationCodeableConcept.text",
        "authoredOn",
        "requester.display",
        "dosageInstruction[0].text",
        "dispenseRequest.quantity.value",
        "dispenseRequest.quantity.unit",
        "dispenseRequest.expectedSupplyDuration.value",
    ),
    "Procedure": (
        "status",
        "code.coding[0].code",
        "code.text",
        "performedDateTime",
        "performer[0].actor.display",
        "extension[0]",
    ),
    "DocumentReference": (
        "status",
        "type.coding[0].code",
        "date",
        "author[0].display",
        "content[0].attachment.title",
    ),
    "ImagingStudy": (
        "status",
        "modality[0].code",
        "started",
        "numberOfSeries",
        "numberOfInstances",
        "description",
        "identifier[0].value",
    ),
}


def example(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}-example.json").read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def at(document: Any, path: str) -> Any:
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", path):
        document = document[int(part[1:-1])] if part.startswith("[") else document[part]
    return document


def check(sent: dict[str, Any], got: dict[str, Any]) -> None:
    name = sent["resourceType"]
    assert got["resourceType"] == name
    assert validate(got) == [], (name, validate(got))
    for path in MEANINGFUL[name]:
        expected = at(sent, path)
        if name == "ImagingStudy" and path == "identifier[0].value":
            assert expected in [i["value"] for i in got["identifier"]]
            continue
        assert at(got, path) == expected, (name, path)
    if name == "Patient":
        assert got["name"][0]["text"] == "伍国华"
        assert {"type": {"coding": [{"code": "NNCHN"}]}, "value": "440781195803070012"} in got["identifier"]
    elif name == "Condition":
        assert got["code"]["text"] == sent["code"]["text"]
        assert got["recordedDate"] == sent["recordedDate"]
    elif name == "DocumentReference":
        text = base64.b64decode(got["content"][0]["attachment"]["data"]).decode()
        assert text == base64.b64decode(sent["content"][0]["attachment"]["data"]).decode()
    if name != "Patient":
        assert got["identifier"][0]["value"] == sent["id"]  # the sender's id is kept
        assert got["subject"]["display"] == "伍国华"
    if "encounter" in sent:
        encounter = got.get("encounter") or got["context"]["encounter"][0]
        assert encounter["reference"].startswith("Encounter/")


def test_examples_are_valid_r4() -> None:
    for name in ORDER:
        assert validate(example(name)) == [], name


def test_each_example_round_trips_one_by_one(world: World, b_key: str, client: Client) -> None:
    auth = {"Authorization": f"Bearer {b_key}"}
    for name in ORDER:
        sent = example(name)
        kind, key = sent["resourceType"], sent["id"]
        response = client.put(
            f"/fhir/{kind}/{key}", data=json.dumps(sent, ensure_ascii=False), content_type="application/fhir+json", headers=auth
        )
        assert response.status_code == 201, (name, response.content.decode())
        by_location = client.get(response["Location"].removeprefix("http://testserver"), headers=auth)
        by_sender_id = client.get(f"/fhir/{kind}/{key}", headers=auth)
        assert by_location.status_code == by_sender_id.status_code == 200, name
        check(sent, by_sender_id.json())
        assert by_location.json()["id"] == by_sender_id.json()["id"] or kind == "Patient"
        if kind == "Patient":
            patient = by_location.json()
            assert patient["id"] == str(world.patients["at_a"].uuid)  # linked by the national ID
            assert patient["name"][0]["text"] == "伍国华"


@pytest.mark.parametrize("persona", ["township_clinician"])
def test_examples_in_one_transaction_read_back_by_a_clinician(
    world: World, b_key: str, client: Client, login, persona: str
) -> None:  # type: ignore[no-untyped-def]
    sent = [example(name) for name in ORDER]
    response = post_fhir(client, b_key, bundle(*sent))
    assert response.status_code == 200, response.content
    entries = response.json()["entry"]
    assert all(e["response"]["status"] == "201 Created" for e in entries)
    reader = login(persona)
    patient = world.patients["at_a"]
    for resource in sent[1:]:
        found = reader.get(f"/fhir/{resource['resourceType']}?patient={patient.uuid}").json()
        assert found["total"] == 1, resource["resourceType"]
        check(resource, found["entry"][0]["resource"])
