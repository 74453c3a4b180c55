"""What one ingested message costs in statements, pinned so that it cannot grow unnoticed (the
ingest benchmark's shapes: a 10-resource transaction Bundle, an ORU^R01)."""

from __future__ import annotations

import json
from typing import Any

from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from yilian.interop.models import InboundMessage, MessageStatus
from yilian.interop.tests.conftest import SAMPLES, hl7
from yilian.patients.models import SourceIdentity
from yilian.records.models import Condition, Encounter, Observation
from yilian.testing.world import World


# Statements of one new 10-resource Bundle of a new person with a national ID no one holds yet,
# every one counted (savepoints too; the test's transaction stands for BEGIN and COMMIT): the key,
# the raw message, the identity with its linkage (national ID, model, blocks, new golden patient),
# one INSERT per kind of row, the referral check, the outcome. PostgreSQL asks the linkage blocks in
# one query, SQLite in one per block.
def bundle_statements() -> int:
    return 20 if connection.vendor == "postgresql" else 23


def national_id(serial: int) -> str:
    """A valid GB 11643 number no one in the test world holds."""
    body = f"44078119700101{serial:03d}"
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    return body + "10X98765432"[sum(int(d) * w for d, w in zip(body, weights, strict=True)) % 11]


def bundle(serial: int) -> dict[str, Any]:
    pid, visit = f"P{serial:04d}", f"V{serial:04d}"
    subject = {"reference": f"Patient/{pid}"}
    when = "2026-01-05T09:30:00+08:00"
    resources: list[dict[str, Any]] = [
        {
            "resourceType": "Patient",
            "id": pid,
            "identifier": [{"type": {"coding": [{"code": "NNCHN"}]}, "value": national_id(serial)}],
            "name": [{"text": f"新患者{serial}"}],
            "gender": "male",
            "birthDate": "1970-01-01",
            "address": [{"text": "广东省台山市水步镇石龙村", "district": "水步镇"}],
        },
        {
            "resourceType": "Encounter",
            "id": visit,
            "status": "finished",
            "class": {"code": "AMB"},
            "subject": subject,
            "period": {"start": when},
        },
    ]
    for index, code in enumerate(("I10", "E11.9")):
        resources.append(
            {
                "resourceType": "Condition",
                "id": f"{visit}-D{index}",
                "subject": subject,
                "encounter": {"reference": f"Encounter/{visit}"},
                "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": code}]},
                "recordedDate": when,
            }
        )
    for index in range(6):
        resources.append(
            {
                "resourceType": "Observation",
                "id": f"{visit}-O{index}",
                "status": "final",
                "subject": subject,
                "encounter": {"reference": f"Encounter/{visit}"},
                "code": {"coding": [{"system": "http://loinc.org", "code": f"1558-{index}"}], "text": "空腹血糖"},
                "effectiveDateTime": when,
                "valueQuantity": {"value": 5.5 + index, "unit": "mmol/L"},
            }
        )
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": f"urn:uuid:{r['resourceType']}-{r['id']}",
                "resource": r,
                "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"},
            }
            for r in resources
        ],
    }


def post(client: Client, key: str, url: str, body: bytes, content_type: str) -> Any:
    return client.post(url, data=body, content_type=content_type, headers={"Authorization": f"Bearer {key}"})


def test_a_ten_resource_bundle_is_a_fixed_number_of_statements(world: World, b_key: str, client: Client) -> None:
    # The first request marks the key used (one UPDATE a minute); the one measured does not.
    assert post(client, b_key, "/fhir/", json.dumps(bundle(1)).encode(), "application/fhir+json").status_code == 200
    body = json.dumps(bundle(2), ensure_ascii=False).encode()
    with CaptureQueriesContext(connection) as queries:
        response = post(client, b_key, "/fhir/", body, "application/fhir+json")
    assert response.status_code == 200 and response.json()["type"] == "transaction-response", response.content
    assert len(queries.captured_queries) == bundle_statements(), "\n".join(q["sql"][:120] for q in queries.captured_queries)
    identity = SourceIdentity.objects.get(institution=world.b, local_id="P0002")
    assert identity.link_method == "new" and identity.patient.id_number == national_id(2)
    assert (Encounter.objects.filter(identity=identity).count(), Condition.objects.filter(identity=identity).count()) == (1, 2)
    assert Observation.objects.filter(identity=identity).count() == 6

    # The same body again: answered from the stored reply, nothing written.
    rows = (Encounter.objects.count(), Condition.objects.count(), Observation.objects.count(), InboundMessage.objects.count())
    with CaptureQueriesContext(connection) as again:
        resent = post(client, b_key, "/fhir/", body, "application/fhir+json")
    assert resent.json() == response.json()
    assert len(again.captured_queries) == 3  # the key, the insert that finds the content kept, the stored row
    assert (
        Encounter.objects.count(),
        Condition.objects.count(),
        Observation.objects.count(),
        InboundMessage.objects.count(),
    ) == rows


def test_an_oru_message_is_a_fixed_number_of_statements(world: World, b_key: str, client: Client) -> None:
    url, content_type = "/api/v1/interop/hl7", "x-application/hl7-v2+er7"
    assert b"MSA|AA|" in post(client, b_key, url, hl7("ORU^R01", SAMPLES["ORU^R01"]).encode(), content_type).content
    second = SAMPLES["ORU^R01"].replace("P0001", "P0002").replace("V0001", "V0002").replace("LAB0001", "LAB0002")
    with CaptureQueriesContext(connection) as queries:
        answer = post(client, b_key, url, hl7("ORU^R01", second, control_id="MSG0002").encode(), content_type).content
    assert b"MSA|AA|" in answer
    # The bench's ORU^R01 without its new person: PID P0002 holds the national ID of the world's 伍国华.
    assert len(queries.captured_queries) == 17, "\n".join(q["sql"][:120] for q in queries.captured_queries)
    assert InboundMessage.objects.filter(status=MessageStatus.ACCEPTED).count() == 2
