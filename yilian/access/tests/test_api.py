"""POST /api/v1/access/break-glass: a reasoned, expiring personal grant, reviewed afterwards."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.conf import settings
from django.test import Client

from yilian.access.models import AccessGrant, GrantSource
from yilian.notifications.models import Notification
from yilian.testing.matrix import Endpoint, run_matrix
from yilian.testing.world import PERSONAS, World

# A response that pydantic cannot serialise faithfully, or a deprecated ninja idiom, fails the test.
pytestmark = pytest.mark.filterwarnings("error:Pydantic serializer warnings", "error::DeprecationWarning:ninja.operation")


ALL = (*PERSONAS, "institution_admin", "hr_officer", "privacy_officer", "system_admin")
URL = "/api/v1/access/break-glass"
REASON = "急诊昏迷患者，需查阅既往病史与过敏史"


def post(client: Client, data: dict[str, Any]) -> Any:
    return client.post(URL, data=json.dumps(data), content_type="application/json")


def test_break_glass_opens_a_personal_grant_and_tells_the_privacy_officers(
    world: World,
    login,
    django_capture_on_commit_callbacks,  # type: ignore[no-untyped-def]
) -> None:
    patient = world.patients["at_b"]
    client = login("lead_clinician")
    assert client.get(f"/api/v1/patients/{patient.uuid}").status_code == 404
    with django_capture_on_commit_callbacks(execute=True):
        # Spaces are ignored, as on the page: the clinician types the number as printed on the card.
        response = post(client, {"id_number": " 4407 8119 6205 120029 ", "reason": REASON, "hours": 2})
    assert response.status_code == 201, response.content
    body = response.json()
    grant = AccessGrant.objects.get(uuid=body["grant"]["id"])
    assert body["patient"] == {"id": str(patient.uuid), "name": patient.name}
    assert grant.source == GrantSource.BREAK_GLASS and grant.grantee_user == world.user("lead_clinician")
    assert grant.reason == REASON and grant.acting_institution == world.a
    assert 7000 < (grant.expires_at - grant.starts_at).total_seconds() <= 7200
    assert Notification.objects.filter(recipient=world.user("privacy_officer")).exists()
    detail = client.get(f"/api/v1/patients/{patient.uuid}").json()
    assert detail["grant"]["id"] == str(grant.uuid)


def test_break_glass_is_not_opened_when_the_patient_is_already_visible(world: World, login) -> None:  # type: ignore[no-untyped-def]
    response = post(login("township_clinician"), {"id_number": world.patients["at_b"].id_number, "reason": REASON})
    assert response.status_code == 200
    assert response.json()["grant"] is None
    assert not AccessGrant.objects.exists()


def test_break_glass_refusals(world: World, login) -> None:  # type: ignore[no-untyped-def]
    client = login("lead_clinician")
    number = world.patients["at_b"].id_number
    cases: list[tuple[dict[str, Any], int, str | None]] = [
        ({"id_number": "440781000000000000", "reason": REASON}, 404, None),  # nobody
        ({"id_number": world.patients["at_t"].id_number, "reason": REASON}, 404, None),  # outside the consortium
        ({"id_number": number, "reason": "急"}, 422, "reason"),
        ({"id_number": number, "reason": REASON, "hours": settings.BREAK_GLASS_MAX_HOURS + 1}, 422, "hours"),
        ({"id_number": number, "reason": REASON, "hours": 0}, 422, "hours"),
        ({"id_number": number}, 422, "reason"),
    ]
    for data, status, field in cases:
        response = post(client, data)
        assert response.status_code == status, (data, response.content)
        if field:
            assert field in response.json()["fields"]
    assert not AccessGrant.objects.exists()
    assert not Notification.objects.exists()


def test_break_glass_matrix(world: World) -> None:
    allowed = {"lead_clinician": 201, "village_doctor": 201, "township_clinician": 200}
    no_permission = {p: 403 for p in ALL if p not in allowed}
    run_matrix(
        world,
        Endpoint(
            "POST", lambda w: URL, data=lambda w: {"id_number": w.patients["at_b"].id_number, "reason": REASON}, json_body=True
        ),
        allowed=allowed,
        denied_status={**no_permission, "other_consortium_user": 404, "anonymous": 401},
        personas=ALL,
    )
    assert AccessGrant.objects.count() == 2
