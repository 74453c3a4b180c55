"""Authorisation matrix for every structure endpoint of /api/v1 over the personas of the test world.

Each denied persona must get exactly the expected refusal (401 anonymous, 403 a role without the
permission, 404 an object outside the persona's scope) and change nothing.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from yilian.testing.matrix import Endpoint, run_matrix
from yilian.testing.world import PERSONAS, World

# A response that pydantic cannot serialise faithfully, or a deprecated ninja idiom, fails the test.
pytestmark = pytest.mark.filterwarnings("error:Pydantic serializer warnings", "error::DeprecationWarning:ninja.operation")


ALL = (*PERSONAS, "institution_admin", "hr_officer", "privacy_officer", "system_admin")
LOGGED_IN = tuple(p for p in ALL if p != "anonymous")
K1_VIEWERS = tuple(p for p in LOGGED_IN if p != "other_consortium_user")
MANAGERS = ("consortium_manager", "system_admin")  # manage consortium K1
B_MANAGERS = ("consortium_manager", "institution_admin", "system_admin")  # manage institution B
_serial = itertools.count()


def unique(prefix: str) -> str:
    return f"{prefix}{next(_serial)}"


def ok(personas: tuple[str, ...] | list[str], status: int = 200) -> dict[str, int]:
    return dict.fromkeys(personas, status)


def denied(allowed: dict[str, int], default: int, **special: int) -> dict[str, int | set[int]]:
    result: dict[str, int | set[int]] = {p: default for p in ALL if p not in allowed}
    result.update(special)
    result["anonymous"] = 401
    return result


def k1(w: World) -> str:
    return f"/api/v1/consortia/{w.k1.uuid}"


def institution_data(w: World) -> dict[str, Any]:
    return {
        "name": unique("矩阵测试卫生院"),
        "kind": "township_centre",
        "level": "primary",
        "town": "水步镇",
        "consortium": str(w.k1.uuid),
        "capabilities": ["dr"],
    }


def grid_data(w: World) -> dict[str, Any]:
    return {
        "consortium": str(w.k1.uuid),
        "responsible_institution": str(w.v.uuid),
        "name": unique("矩阵村"),
        "town": "水步镇",
        "population": 1200,
    }


def department_data(w: World) -> dict[str, Any]:
    serial = next(_serial)
    return {"name": f"矩阵科室{serial}", "code": f"M{serial}", "beds": 5}


GET, POST, PATCH = "GET", "POST", "PATCH"

CASES: list[tuple[str, Endpoint, dict[str, int], dict[str, int | set[int]], tuple[str, ...]]] = [
    # Consortia
    ("consortium_list", Endpoint(GET, lambda w: "/api/v1/consortia"), ok(LOGGED_IN), denied({}, 0), ALL),
    ("consortium_detail", Endpoint(GET, k1), ok(K1_VIEWERS), denied(ok(K1_VIEWERS), 404), ALL),
    (
        "consortium_patch",
        Endpoint(PATCH, k1, data=lambda w: {"short_name": "人民医院医共体"}, json_body=True),
        ok(MANAGERS),
        denied(ok(MANAGERS), 404),
        ALL,
    ),
    # Adding the same member twice is a conflict, so one manager runs the add and the end.
    (
        "consortium_member_add",
        Endpoint(POST, lambda w: f"{k1(w)}/members", data=lambda w: {"institution": str(w.d.uuid)}, json_body=True),
        ok(["consortium_manager"], 201),
        denied(ok(["consortium_manager"]), 404),
        ALL[:-1],
    ),
    (
        "consortium_member_end",
        Endpoint(POST, lambda w: f"{k1(w)}/members/{w.c.uuid}/end", data=lambda w: {}, json_body=True),
        ok(["consortium_manager"]),
        denied(ok(["consortium_manager"]), 404),
        ALL[:-1],
    ),
    # Institutions
    ("institution_list", Endpoint(GET, lambda w: "/api/v1/institutions?q=镇"), ok(LOGGED_IN), denied({}, 0), ALL),
    (
        "institution_detail",
        Endpoint(GET, lambda w: f"/api/v1/institutions/{w.b.uuid}"),
        ok(K1_VIEWERS),
        denied(ok(K1_VIEWERS), 404),
        ALL,
    ),
    (
        "institution_create",
        Endpoint(POST, lambda w: "/api/v1/institutions", data=institution_data, json_body=True),
        ok(MANAGERS, 201),
        denied(ok(MANAGERS), 403),
        ALL,
    ),
    (
        "institution_patch",
        Endpoint(PATCH, lambda w: f"/api/v1/institutions/{w.b.uuid}", data=lambda w: {"phone": "0750-5500001"}, json_body=True),
        ok(B_MANAGERS),
        denied(ok(B_MANAGERS), 404),
        ALL,
    ),
    (
        "institution_deactivate",
        Endpoint(POST, lambda w: f"/api/v1/institutions/{w.b.uuid}/deactivate"),
        ok(MANAGERS),
        # B's own admin may not switch B off (their staff would be locked out): 422, nothing changes.
        denied(ok(B_MANAGERS), 404, institution_admin=422),
        ALL,
    ),
    (
        "institution_activate",
        Endpoint(POST, lambda w: f"/api/v1/institutions/{w.b.uuid}/activate"),
        ok(B_MANAGERS),
        denied(ok(B_MANAGERS), 404),
        ALL,
    ),
    # Departments
    (
        "department_list",
        Endpoint(GET, lambda w: f"/api/v1/institutions/{w.a.uuid}/departments"),
        ok(K1_VIEWERS),
        denied(ok(K1_VIEWERS), 404),
        ALL,
    ),
    (
        "department_create",
        Endpoint(POST, lambda w: f"/api/v1/institutions/{w.b.uuid}/departments", data=department_data, json_body=True),
        ok(B_MANAGERS, 201),
        denied(ok(B_MANAGERS), 403, other_consortium_user=404),
        ALL,
    ),
    (
        "department_detail",
        Endpoint(GET, lambda w: f"/api/v1/departments/{w.b_general.uuid}"),
        ok(K1_VIEWERS),
        denied(ok(K1_VIEWERS), 404),
        ALL,
    ),
    (
        "department_patch",
        Endpoint(PATCH, lambda w: f"/api/v1/departments/{w.b_general.uuid}", data=lambda w: {"beds": 22}, json_body=True),
        ok(B_MANAGERS),
        denied(ok(B_MANAGERS), 404),
        ALL,
    ),
    # Grids
    ("grid_list", Endpoint(GET, lambda w: "/api/v1/grids"), ok(LOGGED_IN), denied({}, 0), ALL),
    (
        "grid_create",
        Endpoint(POST, lambda w: "/api/v1/grids", data=grid_data, json_body=True),
        ok(MANAGERS, 201),
        denied(ok(MANAGERS), 403),
        ALL,
    ),
    ("grid_detail", Endpoint(GET, lambda w: f"/api/v1/grids/{w.grid_b.uuid}"), ok(K1_VIEWERS), denied(ok(K1_VIEWERS), 404), ALL),
    (
        "grid_patch",
        Endpoint(PATCH, lambda w: f"/api/v1/grids/{w.grid_b.uuid}", data=lambda w: {"population": 2400}, json_body=True),
        ok(MANAGERS),
        denied(ok(MANAGERS), 404),
        ALL,
    ),
]


@pytest.mark.parametrize(("name", "endpoint", "allowed", "denied_status", "personas"), CASES, ids=[c[0] for c in CASES])
def test_structure_api_matrix(
    world: World,
    name: str,
    endpoint: Endpoint,
    allowed: dict[str, int],
    denied_status: dict[str, int | set[int]],
    personas: tuple[str, ...],
) -> None:
    results = run_matrix(world, endpoint, allowed=allowed, denied_status=denied_status, personas=personas)
    assert set(results) == set(personas)


def test_matrix_covers_every_structure_operation(client) -> None:  # type: ignore[no-untyped-def]
    from yilian.organizations.api import router

    operations = {op.view_func.__name__ for view in router.path_operations.values() for op in view.operations}
    covered = {name for name, *_ in CASES}
    assert operations == covered
