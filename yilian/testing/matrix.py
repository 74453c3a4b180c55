"""The authorisation matrix: personas × endpoints, with "denied changes nothing" checked.

Usage in any app's tests:

    from yilian.testing.matrix import Endpoint, run_matrix

    def test_institution_edit_matrix(world):
        run_matrix(
            world,
            Endpoint("POST", lambda w: f"/structure/institutions/{w.b.uuid}/edit/", data=lambda w: {...}),
            allowed={"consortium_manager": 302},     # persona -> expected status
            denied_status={"anonymous": 302},         # anything else must be denied (401/403/404, or a login redirect)
        )

Each persona runs in a fresh client against the same database; before each denied request a
snapshot of the watched tables is taken and compared afterwards.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from django.apps import apps
from django.db import models
from django.test import Client

from yilian.accounts.models import User
from yilian.testing.world import PERSONAS, World

DENIED = frozenset({302, 401, 403, 404})

# Tables whose content a denied request must leave untouched (access-log rows are written only
# for granted reads, so they are watched too).
DEFAULT_WATCHED = (
    "organizations.Institution",
    "organizations.Consortium",
    "organizations.ConsortiumMembership",
    "organizations.Department",
    "organizations.ServiceGrid",
    "organizations.InstitutionCapability",
    "accounts.User",
    "accounts.Membership",
    "accounts.Practitioner",
    "accounts.ApiKey",
    "patients.Patient",
    "access.AccessGrant",
    "access.AccessLog",
    "notifications.Notification",
)


@dataclass
class Endpoint:
    method: str
    url: Callable[[World], str]
    data: Callable[[World], dict[str, Any]] | None = None
    json_body: bool = False  # send `data` as JSON (API) rather than a form
    headers: dict[str, str] = field(default_factory=dict)

    def call(self, client: Client, world: World) -> Any:
        url = self.url(world)
        payload = self.data(world) if self.data else None
        method = getattr(client, self.method.lower())
        if payload is None:
            return method(url, headers=self.headers)
        if self.json_body:
            return method(url, data=json.dumps(payload), content_type="application/json", headers=self.headers)
        return method(url, data=payload, headers=self.headers)


def snapshot(labels: Iterable[str] = DEFAULT_WATCHED) -> dict[str, list[tuple[Any, ...]]]:
    state: dict[str, list[tuple[Any, ...]]] = {}
    for label in labels:
        model: type[models.Model] = apps.get_model(label)
        fields = [f.attname for f in model._meta.concrete_fields if f.attname not in {"last_login"}]
        state[label] = list(model._default_manager.order_by("pk").values_list(*fields))
    return state


def client_for(world: World, persona: str) -> Client:
    client = Client()
    if persona != "anonymous":
        user: User = world.user(persona)
        client.force_login(user)
    return client


def run_matrix(
    world: World,
    endpoint: Endpoint,
    *,
    allowed: dict[str, int],
    denied_status: dict[str, int | set[int]] | None = None,
    personas: Iterable[str] = PERSONAS,
    watched: Iterable[str] = DEFAULT_WATCHED,
) -> dict[str, int]:
    """Call `endpoint` as every persona; assert allowed ones get their status and denied ones
    get a denial and change nothing. Returns persona -> status for further assertions."""
    results: dict[str, int] = {}
    denied_status = denied_status or {}
    failures: list[str] = []
    for persona in personas:
        client = client_for(world, persona)
        before = snapshot(watched) if persona not in allowed else None
        response = endpoint.call(client, world)
        results[persona] = response.status_code
        if persona in allowed:
            if response.status_code != allowed[persona]:
                failures.append(f"{persona}: expected {allowed[persona]}, got {response.status_code}")
            continue
        expected = denied_status.get(persona, DENIED)
        expected_set = {expected} if isinstance(expected, int) else set(expected)
        if response.status_code not in expected_set:
            failures.append(f"{persona}: expected denial {sorted(expected_set)}, got {response.status_code}")
        if response.status_code == 302 and "/accounts/login/" not in response.get("Location", ""):
            failures.append(f"{persona}: redirected to {response.get('Location')} instead of the login page")
        if before is not None and snapshot(watched) != before:
            failures.append(f"{persona}: a denied request changed the database")
    assert not failures, f"{endpoint.method} {endpoint.url(world)}:\n  " + "\n  ".join(failures)
    return results
