"""The channels end to end over HTTP (and MLLP), into the real MPI: ACK/NAK, OperationOutcome,
idempotency, dead letters, fix and replay."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from django.test import Client

from yilian.interop import hl7v2
from yilian.interop.management.commands.mllp_listen import serve_connection
from yilian.interop.models import InboundMessage, MessageStatus
from yilian.interop.tests.conftest import PID, PID_2, SAMPLES, hl7
from yilian.patients.models import SourceIdentity
from yilian.testing.world import World

HL7_URL = "/api/v1/interop/hl7"


def post_hl7(client: Client, key: str, text: str, codec: str = "utf-8") -> bytes:
    response = client.post(
        HL7_URL, data=text.encode(codec), content_type="x-application/hl7-v2+er7", headers={"Authorization": f"Bearer {key}"}
    )
    assert response.status_code == 200
    return response.content


@pytest.mark.parametrize("codec, field", [("utf-8", "UNICODE UTF-8"), ("gb18030", "GB 18030-2000")])
def test_a28_creates_identity_once(world: World, b_key: str, client: Client, codec: str, field: str) -> None:
    text = hl7("ADT^A28", PID, charset_field=field)
    before = SourceIdentity.objects.count()
    ack = post_hl7(client, b_key, text, codec)
    assert hl7v2.ack_code(ack) == "AA"
    identity = SourceIdentity.objects.get(institution=world.b, local_id="P0001")
    assert identity.name == "伍国华"
    # the same message again: the same ACK, nothing new
    again = post_hl7(client, b_key, text, codec)
    assert hl7v2.ack_code(again) == "AA"
    assert SourceIdentity.objects.count() == before + 1
    assert InboundMessage.objects.filter(institution=world.b).count() == 1


def test_bad_date_is_nak_with_reason_and_a_dead_letter(world: World, b_key: str, client: Client) -> None:
    ack = post_hl7(client, b_key, hl7("ADT^A28", PID.replace("19580307", "19580231")))
    assert hl7v2.ack_code(ack) == "AE"
    assert "PID-7" in ack.decode()
    message = InboundMessage.objects.get()
    assert message.status == MessageStatus.REJECTED
    assert "日期不存在" in message.reason
    assert not SourceIdentity.objects.filter(institution=world.b, local_id__in=["P0001", "P0002"]).exists()


def test_unauthenticated_hl7_is_refused_and_not_kept(world: World, client: Client) -> None:
    response = client.post(HL7_URL, data=hl7("ADT^A28", PID).encode(), content_type="x-application/hl7-v2+er7")
    assert response.status_code == 401
    assert not InboundMessage.objects.exists()


def test_a40_merges_two_identities(world: World, b_key: str, client: Client) -> None:
    post_hl7(
        client,
        b_key,
        hl7(
            "ADT^A28",
            PID_2.replace("P0002", "P0009").replace("黄^美玲", "伍^国华").replace("19620512|F", "19580307|M"),
            control_id="M1",
        ),
    )
    post_hl7(client, b_key, hl7("ADT^A28", PID, control_id="M2"))
    survivor = SourceIdentity.objects.get(institution=world.b, local_id="P0001")
    merged = SourceIdentity.objects.get(institution=world.b, local_id="P0009")
    ack = post_hl7(client, b_key, hl7("ADT^A40", SAMPLES["ADT^A40"], control_id="M3"))
    assert hl7v2.ack_code(ack) == "AA", ack
    merged.refresh_from_db()
    survivor.refresh_from_db()
    assert merged.patient_id == survivor.patient_id


def test_dead_letter_fixed_and_replayed_from_the_page(world: World, b_key: str, client: Client, login) -> None:  # type: ignore[no-untyped-def]
    post_hl7(client, b_key, hl7("ADT^A28", PID.replace("19580307", "19580231")))
    message = InboundMessage.objects.get()
    admin = login("institution_admin")
    page = admin.get(f"/interop/messages/{message.uuid}/")
    assert page.status_code == 200
    assert "日期不存在" in page.content.decode()
    fixed = message.text().replace("19580231", "19580307")
    response = admin.post(f"/interop/messages/{message.uuid}/", {"text": fixed})
    assert response.status_code == 302
    message.refresh_from_db()
    assert message.status == MessageStatus.ACCEPTED
    assert message.attempts == 2
    assert str(SourceIdentity.objects.get(institution=world.b, local_id="P0001").birth_date) == "1958-03-07"


def test_replay_after_what_was_missing_arrives(world: World, b_key: str, client: Client, login) -> None:  # type: ignore[no-untyped-def]
    # a merge naming a patient we do not know yet is refused, then replayed once it is known
    post_hl7(client, b_key, hl7("ADT^A40", SAMPLES["ADT^A40"], control_id="X1"))
    dead = InboundMessage.objects.get(status=MessageStatus.REJECTED)
    assert "P0009" in dead.reason
    post_hl7(client, b_key, hl7("ADT^A28", PID_2.replace("P0002", "P0009"), control_id="X2"))
    response = login("consortium_manager").post(f"/interop/messages/{dead.uuid}/replay/")
    assert response.status_code == 302
    dead.refresh_from_db()
    assert dead.status == MessageStatus.ACCEPTED


def test_mllp_acks_and_naks(world: World, b_key: str, transactional_db: None) -> None:
    good = hl7("ADT^A28", PID, control_id="L1", security=b_key).encode("gb18030").replace(b"UNICODE UTF-8", b"GB 18030-2000")
    bad = hl7("ADT^A28", PID.replace("19580307", "19581399"), control_id="L2", security=b_key).encode()
    anonymous = hl7("ADT^A28", PID, control_id="L3").encode()

    async def exchange() -> list[bytes]:
        server = await asyncio.start_server(serve_connection, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        answers = []
        for raw in (good, bad, anonymous):
            writer.write(hl7v2.frame(raw))
            await writer.drain()
            await reader.readuntil(hl7v2.START_BLOCK)
            answers.append(await reader.readuntil(hl7v2.END_BLOCK + hl7v2.CARRIAGE_RETURN))
        writer.close()
        server.close()
        await server.wait_closed()
        return answers

    answers = asyncio.run(exchange())
    assert [hl7v2.ack_code(b"\r" + a.split(b"\r", 1)[1]) for a in answers] == ["AA", "AE", "AR"]
    assert SourceIdentity.objects.get(institution=world.b, local_id="P0001").name == "伍国华"
    stored = InboundMessage.objects.get(control_id="L1")
    assert b_key.encode() not in bytes(stored.raw)


# --- FHIR -----------------------------------------------------------------------------------

PATIENT = {
    "resourceType": "Patient",
    "id": "P0001",
    "identifier": [{"type": {"coding": [{"code": "NNCHN"}]}, "value": "440781195803070012"}],
    "name": [{"family": "伍", "given": ["国华"]}],
    "gender": "male",
    "birthDate": "1958-03-07",
}


def post_fhir(client: Client, key: str, body: object, url: str = "/fhir/Patient") -> Any:
    raw = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
    return client.post(url, data=raw, content_type="application/fhir+json", headers={"Authorization": f"Bearer {key}"})


def test_fhir_patient_create_is_idempotent_and_readable(world: World, b_key: str, client: Client) -> None:
    before = SourceIdentity.objects.count()
    first = post_fhir(client, b_key, PATIENT)
    assert first.status_code == 201, first.content
    assert first["Location"].startswith("http://testserver/fhir/Patient/")
    second = post_fhir(client, b_key, PATIENT)
    assert second.status_code == 200
    assert SourceIdentity.objects.count() == before + 1
    read = client.get("/fhir/Patient/P0001", headers={"Authorization": f"Bearer {b_key}"})
    assert read.status_code == 200
    assert read.json()["name"][0]["text"] == "伍国华"
    search = client.get("/fhir/Patient?identifier=440781195803070012", headers={"Authorization": f"Bearer {b_key}"})
    assert search.json()["total"] == 1


def test_fhir_transaction_is_all_or_nothing(world: World, b_key: str, client: Client) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": "urn:uuid:1", "resource": PATIENT, "request": {"method": "PUT", "url": "Patient/P0001"}},
            {
                "fullUrl": "urn:uuid:2",
                "resource": {**PATIENT, "id": "P0002", "identifier": [], "birthDate": "1962-02-30"},
                "request": {"method": "PUT", "url": "Patient/P0002"},
            },
        ],
    }
    response = post_fhir(client, b_key, bundle, "/fhir/")
    assert response.status_code == 422
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    assert "日期不存在" in body["issue"][0]["diagnostics"]
    assert not SourceIdentity.objects.filter(institution=world.b, local_id__in=["P0001", "P0002"]).exists()
    assert InboundMessage.objects.get().status == MessageStatus.REJECTED


@pytest.mark.parametrize(
    "body, status",
    [(b'{"resourceType": "Patient",', 400), ({"resourceType": "Patient", "gender": 1}, 400), ({"resourceType": "Basic"}, 400)],
)
def test_fhir_bad_input_is_an_operation_outcome_and_kept(
    world: World, b_key: str, client: Client, body: object, status: int
) -> None:
    response = post_fhir(
        client, b_key, body, "/fhir/Patient" if not isinstance(body, dict) or body["resourceType"] == "Patient" else "/fhir/"
    )
    assert response.status_code == status
    assert response.json()["resourceType"] == "OperationOutcome"


def test_fhir_write_needs_a_key(world: World, client: Client, login) -> None:  # type: ignore[no-untyped-def]
    assert post_fhir(client, "wrong", PATIENT).status_code == 401
    assert (
        login("lead_clinician").post("/fhir/Patient", data=json.dumps(PATIENT), content_type="application/fhir+json").status_code
        == 401
    )
    assert not InboundMessage.objects.exists()


def test_metadata_is_an_r4_capability_statement(client: Client, db: None) -> None:
    body = client.get("/fhir/metadata").json()
    assert body["resourceType"] == "CapabilityStatement"
    assert body["fhirVersion"] == "4.0.1"
    assert {r["type"] for r in body["rest"][0]["resource"]} >= {"Patient", "Encounter", "Observation", "ImagingStudy"}
