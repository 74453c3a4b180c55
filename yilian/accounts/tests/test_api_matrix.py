"""Authorisation matrix for /api/v1/me, staff, memberships and API keys over the personas of the test world."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from yilian.accounts.actors import Actor
from yilian.accounts.models import ApiKey, Membership
from yilian.accounts.services import api_key_create
from yilian.testing.matrix import Endpoint, run_matrix
from yilian.testing.world import PASSWORD, PERSONAS, World

# A response that pydantic cannot serialise faithfully, or a deprecated ninja idiom, fails the test.
pytestmark = pytest.mark.filterwarnings("error:Pydantic serializer warnings", "error::DeprecationWarning:ninja.operation")


ALL = (*PERSONAS, "institution_admin", "hr_officer", "privacy_officer", "system_admin")
LOGGED_IN = tuple(p for p in ALL if p != "anonymous")
STAFF_VIEWERS = tuple(p for p in LOGGED_IN if p != "bureau_supervisor")
K1_STAFF_VIEWERS = tuple(p for p in STAFF_VIEWERS if p != "other_consortium_user")
STAFF_MANAGERS_OF_B = ("consortium_manager", "institution_admin", "hr_officer", "system_admin")
KEY_MANAGERS_OF_B = ("consortium_manager", "institution_admin", "system_admin")
_serial = itertools.count()


def ok(personas: tuple[str, ...] | list[str], status: int = 200) -> dict[str, int]:
    return dict.fromkeys(personas, status)


def denied(allowed: dict[str, int], default: int, **special: int) -> dict[str, int | set[int]]:
    result: dict[str, int | set[int]] = {p: default for p in ALL if p not in allowed}
    result.update(special)
    result["anonymous"] = 401
    return result


def township_at_b(w: World) -> Membership:
    return Membership.objects.get(user=w.user("township_clinician"), institution=w.b)


def staff_data(w: World) -> dict[str, Any]:
    return {
        "username": f"matrix_{next(_serial)}",
        "full_name": "矩阵护士",
        "password": PASSWORD,
        "role": "nurse",
        "institution": str(w.b.uuid),
        "department": str(w.b_general.uuid),
        "title": "nurse",
    }


def b_key(w: World) -> ApiKey:
    key = ApiKey.objects.filter(institution=w.b, name="矩阵").first()
    if key is None:
        key, _raw = api_key_create(actor=Actor(user=w.user("system_admin")), institution=w.b, name="矩阵")
    return key


GET, POST, PATCH = "GET", "POST", "PATCH"

CASES: list[tuple[str, Endpoint, dict[str, int], dict[str, int | set[int]]]] = [
    ("me", Endpoint(GET, lambda w: "/api/v1/me"), ok(LOGGED_IN), denied({}, 0)),
    ("staff_list", Endpoint(GET, lambda w: "/api/v1/staff"), ok(STAFF_VIEWERS), denied(ok(STAFF_VIEWERS), 403)),
    (
        "staff_detail",
        Endpoint(GET, lambda w: f"/api/v1/staff/{township_at_b(w).uuid}"),
        ok(K1_STAFF_VIEWERS),
        denied(ok(K1_STAFF_VIEWERS), 404),
    ),
    (
        "staff_create",
        Endpoint(POST, lambda w: "/api/v1/staff", data=staff_data, json_body=True),
        ok(STAFF_MANAGERS_OF_B, 201),
        denied(ok(STAFF_MANAGERS_OF_B), 403),
    ),
    (
        "staff_patch",
        Endpoint(
            PATCH,
            lambda w: f"/api/v1/staff/{township_at_b(w).uuid}",
            data=lambda w: {"department": str(w.b_general.uuid)},
            json_body=True,
        ),
        ok(STAFF_MANAGERS_OF_B),
        denied(ok(STAFF_MANAGERS_OF_B), 404),
    ),
    # Ended memberships are not bound by "one open membership per role", so every manager can add one.
    (
        "membership_create",
        Endpoint(
            POST,
            lambda w: f"/api/v1/users/{w.user('village_doctor').uuid}/memberships",
            data=lambda w: {"role": "nurse", "institution": str(w.v.uuid), "started_on": "2021-01-01", "ended_on": "2021-12-31"},
            json_body=True,
        ),
        ok(STAFF_MANAGERS_OF_B, 201),
        denied(ok(STAFF_MANAGERS_OF_B), 403, bureau_supervisor=404, other_consortium_user=404),
    ),
    ("api_key_list", Endpoint(GET, lambda w: "/api/v1/api-keys"), ok(KEY_MANAGERS_OF_B), denied(ok(KEY_MANAGERS_OF_B), 403)),
    (
        "api_key_create",
        Endpoint(
            POST, lambda w: "/api/v1/api-keys", data=lambda w: {"institution": str(w.b.uuid), "name": "HIS"}, json_body=True
        ),
        ok(KEY_MANAGERS_OF_B, 201),
        denied(ok(KEY_MANAGERS_OF_B), 403),
    ),
    (
        "api_key_revoke",
        Endpoint(POST, lambda w: f"/api/v1/api-keys/{b_key(w).uuid}/revoke"),
        ok(KEY_MANAGERS_OF_B),
        denied(ok(KEY_MANAGERS_OF_B), 404),
    ),
]


@pytest.mark.parametrize(("name", "endpoint", "allowed", "denied_status"), CASES, ids=[c[0] for c in CASES])
def test_people_api_matrix(
    world: World, name: str, endpoint: Endpoint, allowed: dict[str, int], denied_status: dict[str, int | set[int]]
) -> None:
    if name == "api_key_revoke":
        b_key(world)  # exists before the first snapshot
    run_matrix(world, endpoint, allowed=allowed, denied_status=denied_status, personas=ALL)


def test_matrix_covers_every_people_operation() -> None:
    from yilian.accounts.api import router

    operations = {op.view_func.__name__ for view in router.path_operations.values() for op in view.operations}
    assert operations == {name for name, *_ in CASES}
