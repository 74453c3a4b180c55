"""The authorisation matrix of /fhir and the HL7 endpoint: staff sessions never write (writes take
an institution key), reads go through the patient gatekeeper, a denial changes nothing (no
message kept, no record, no access-log row)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from yilian.interop.tests.conftest import PID, PV1, hl7
from yilian.interop.tests.test_records import CONDITION, ENCOUNTER, OBSERVATION, PATIENT, bundle, post_fhir
from yilian.records.models import Condition, Observation
from yilian.testing.matrix import DEFAULT_WATCHED, Endpoint, client_for, run_matrix
from yilian.testing.world import PERSONAS, World

WATCHED = (
    *DEFAULT_WATCHED,
    "interop.InboundMessage",
    "patients.SourceIdentity",
    "records.Encounter",
    "records.Condition",
    "records.Observation",
)
NO_KEY: dict[str, int | set[int]] = dict.fromkeys(PERSONAS, 401)
READERS = {"lead_clinician": 200, "township_clinician": 200}  # A registered 伍国华, B sent the visit


@pytest.fixture
def sent(world: World, b_key: str, client: Client) -> World:
    assert post_fhir(client, b_key, bundle(PATIENT, ENCOUNTER, CONDITION, OBSERVATION)).status_code == 200
    return world


def _fhir(method: str, url: str, body: Any) -> Endpoint:
    raw = json.dumps(body, ensure_ascii=False)
    endpoint = Endpoint(method, lambda w: url)
    endpoint.call = lambda client, world: getattr(client, method.lower())(  # type: ignore[method-assign]
        url, data=raw, content_type="application/fhir+json"
    )
    return endpoint


WRITES = [
    _fhir("POST", "/fhir/", bundle({**PATIENT, "id": "P0100"})),
    _fhir("POST", "/fhir/Patient", {**PATIENT, "id": "P0101"}),
    _fhir("PUT", "/fhir/Patient/P0102", {**PATIENT, "id": "P0102"}),
    _fhir("POST", "/fhir/Observation", {**OBSERVATION, "id": "R0100"}),
]


@pytest.mark.parametrize("endpoint", WRITES, ids=["bundle", "create", "update", "observation"])
def test_sessions_cannot_write_fhir(sent: World, endpoint: Endpoint) -> None:
    run_matrix(sent, endpoint, allowed={}, denied_status=NO_KEY, watched=WATCHED)


def test_sessions_cannot_send_hl7(sent: World) -> None:
    text = hl7("ADT^A04", PID.replace("P0001", "P0200") + PV1, control_id="MX1")
    endpoint = Endpoint("POST", lambda w: "/api/v1/interop/hl7")
    endpoint.call = lambda client, world: client.post(  # type: ignore[method-assign]
        "/api/v1/interop/hl7", data=text.encode(), content_type="x-application/hl7-v2+er7"
    )
    run_matrix(sent, endpoint, allowed={}, denied_status=NO_KEY, watched=WATCHED)


def test_fhir_reads_matrix(sent: World) -> None:
    observation, condition = Observation.objects.get(), Condition.objects.get()
    for url in (f"/fhir/Observation/{observation.uuid}", f"/fhir/Condition/{condition.uuid}"):
        run_matrix(sent, Endpoint("GET", lambda w, u=url: u), allowed=READERS, denied_status={"anonymous": 401}, watched=WATCHED)  # type: ignore[misc]
    patient = sent.patients["at_a"]
    run_matrix(
        sent,
        Endpoint("GET", lambda w: f"/fhir/Patient/{patient.uuid}"),
        allowed=READERS,
        denied_status={"anonymous": 401},
        watched=WATCHED,
    )


def test_fhir_search_matrix_finds_only_for_readers(sent: World) -> None:
    """A search is answered for everyone signed in (200), with nothing in it for those the
    gatekeeper keeps out, and no log row for them."""
    url = f"/fhir/Condition?patient={sent.patients['at_a'].uuid}"
    statuses = run_matrix(
        sent,
        Endpoint("GET", lambda w: url),
        allowed={p: 200 for p in PERSONAS if p != "anonymous"},
        denied_status={"anonymous": 401},
        watched=WATCHED,
    )
    assert statuses["anonymous"] == 401
    for persona in PERSONAS[:-1]:
        total = client_for(sent, persona).get(url).json()["total"]
        assert total == (1 if persona in READERS else 0), persona


def test_metadata_is_public_and_writes_nothing(sent: World) -> None:
    run_matrix(
        sent,
        Endpoint("GET", lambda w: "/fhir/metadata"),
        allowed=dict.fromkeys(PERSONAS, 200),
        watched=WATCHED,
    )
