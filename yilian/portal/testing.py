# ruff: noqa: S101  (test support: assertions are its job)
"""Test support for the resident portal: sign a resident in through the real pages, read the
code from the console SMS gateway, and the portal's authorisation matrix (staff personas and
residents × portal endpoints, denied changes nothing)."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import secrets
from collections.abc import Iterable

from django.conf import settings
from django.test import Client, TestCase
from django.utils import timezone

from yilian.accounts.actors import Actor
from yilian.accounts.selectors import current_memberships
from yilian.notifications.sms import ConsoleSmsGateway
from yilian.organizations.models import Institution
from yilian.patients.models import Patient
from yilian.portal.access import SESSION_COOKIE
from yilian.portal.models import ResidentSession
from yilian.testing.matrix import DEFAULT_WATCHED, Endpoint, client_for, snapshot
from yilian.testing.world import PERSONAS, World

PORTAL_WATCHED = (*DEFAULT_WATCHED, "portal.SignInChallenge", "portal.ResidentSession")
CODE = re.compile(r"(?<!\d)(\d{6})(?!\d)")


def actor(world: World, persona: str, institution: Institution | None = None) -> Actor:
    """A persona acting through their membership (at `institution` when they have several)."""
    memberships = current_memberships(world.user(persona))
    membership = next(m for m in memberships if institution is None or m.institution == institution)
    return Actor(user=world.user(persona), membership=membership, ip_address="10.0.0.8")


def last_code_sent_to(phone: str) -> str:
    """The code in the last text the console gateway sent to `phone`."""
    messages = ConsoleSmsGateway.messages(phone=phone)
    assert messages, f"no SMS was sent to {phone}"
    found = CODE.search(messages[-1].text)
    assert found, messages[-1].text
    return found.group(1)


def request_code(client: Client, patient: Patient) -> None:
    """Step 1 through the page, running the on-commit SMS as a real request would."""
    with TestCase.captureOnCommitCallbacks(execute=True):
        response = client.post("/me/sign-in/", {"phone": patient.phone, "id_number": patient.id_number})
    assert response.status_code == 302, response.content.decode()[:500]


def resident_client(patient: Patient, client: Client | None = None) -> Client:
    """A client signed in as `patient` through the real sign-in pages."""
    client = client or Client()
    request_code(client, patient)
    response = client.post("/me/sign-in/code/", {"code": last_code_sent_to(patient.phone)})
    assert response.status_code == 302 and response["Location"] == "/me/", response.status_code
    return client


def force_resident_login(patient: Patient, client: Client | None = None) -> Client:
    """Like `Client.force_login` for staff: a resident session without the SMS round trip."""
    client = client or Client()
    token = secrets.token_urlsafe(32)
    now = timezone.now()
    ResidentSession.objects.create(
        patient=patient,
        token_digest=hashlib.sha256(token.encode()).hexdigest(),
        last_seen_at=now,
        expires_at=now + dt.timedelta(hours=settings.PORTAL_SESSION_MAX_HOURS),
    )
    client.cookies[SESSION_COOKIE] = token
    return client


def portal_client_for(world: World, persona: str, residents: dict[str, Patient]) -> Client:
    if persona in residents:
        return force_resident_login(residents[persona])
    return client_for(world, persona)


def run_portal_matrix(
    world: World,
    endpoint: Endpoint,
    *,
    allowed: dict[str, int],
    residents: dict[str, Patient],
    personas: Iterable[str] = PERSONAS,
    sign_in_page: str = "/me/sign-in/",
) -> dict[str, int]:
    """Like `yilian.testing.matrix.run_matrix`, over staff personas and signed-in residents.

    Portal pages send whoever has no resident session to the portal's sign-in page (never the
    staff login), so a denial here is that redirect, or 401/403/404; and it changes nothing.
    """
    results: dict[str, int] = {}
    failures: list[str] = []
    for persona in (*personas, *residents):
        client = portal_client_for(world, persona, residents)
        before = snapshot(PORTAL_WATCHED) if persona not in allowed else None
        response = endpoint.call(client, world)
        results[persona] = response.status_code
        if persona in allowed:
            if response.status_code != allowed[persona]:
                failures.append(f"{persona}: expected {allowed[persona]}, got {response.status_code}")
            continue
        if response.status_code not in {302, 401, 403, 404}:
            failures.append(f"{persona}: expected a denial, got {response.status_code}")
        if response.status_code == 302 and response.get("Location") != sign_in_page:
            failures.append(f"{persona}: redirected to {response.get('Location')} instead of {sign_in_page}")
        if before is not None and snapshot(PORTAL_WATCHED) != before:
            failures.append(f"{persona}: a denied request changed the database")
    assert not failures, f"{endpoint.method} {endpoint.url(world)}:\n  " + "\n  ".join(failures)
    return results
