"""Authorisation matrix for every structure page, GET and POST, over the personas of the test world.

Denied requests must be refused (403/404, or a login redirect for anonymous users) and change
nothing (run_matrix compares the watched tables before and after).
"""

from __future__ import annotations

import pytest

from yilian.organizations.models import InstitutionKind, InstitutionLevel
from yilian.testing.matrix import Endpoint, run_matrix
from yilian.testing.world import PERSONAS

LOGGED_IN = [p for p in PERSONAS if p != "anonymous"]
K1_VIEWERS = ["lead_clinician", "township_clinician", "village_doctor", "consortium_manager", "bureau_supervisor"]
EXTRA = ("institution_admin", "hr_officer", "system_admin")


def ok(personas, status: int = 200) -> dict[str, int]:  # type: ignore[no-untyped-def]
    return dict.fromkeys(personas, status)


ANON = {"anonymous": 302}
HIDDEN_FROM_OTHER = {**ANON, "other_consortium_user": 404}
NOT_FOR_NON_MANAGERS = {**ANON, **dict.fromkeys(LOGGED_IN, 404)}
FORBIDDEN_FOR_NON_MANAGERS = {**ANON, **dict.fromkeys(LOGGED_IN, 403)}


def institution_data(world):  # type: ignore[no-untyped-def]
    return {
        "name": "水步镇卫生院",
        "kind": InstitutionKind.TOWNSHIP_CENTRE,
        "level": InstitutionLevel.PRIMARY,
        "town": "水步镇",
        "phone": "0750-5500001",
        "capabilities": ["dr"],
    }


def grid_data(world):  # type: ignore[no-untyped-def]
    return {"name": "石龙村", "kind": "village", "town": "水步镇", "population": 2600, "responsible_institution": world.v.pk}


CASES = [
    # Lists: every signed-in persona, each sees their own scope.
    ("consortium_list", Endpoint("GET", lambda w: "/structure/consortia/"), ok(LOGGED_IN), ANON),
    ("institution_list", Endpoint("GET", lambda w: "/structure/institutions/"), ok(LOGGED_IN), ANON),
    (
        "institution_list_htmx",
        Endpoint("GET", lambda w: "/structure/institutions/?q=镇", headers={"HX-Request": "true"}),
        ok(LOGGED_IN),
        ANON,
    ),
    ("department_list", Endpoint("GET", lambda w: "/structure/departments/"), ok(LOGGED_IN), ANON),
    ("grid_list", Endpoint("GET", lambda w: "/structure/grids/"), ok(LOGGED_IN), ANON),
    # Consortia
    ("consortium_detail_k1", Endpoint("GET", lambda w: f"/structure/consortia/{w.k1.uuid}/"), ok(K1_VIEWERS), HIDDEN_FROM_OTHER),
    (
        "consortium_detail_k2",
        Endpoint("GET", lambda w: f"/structure/consortia/{w.k2.uuid}/"),
        ok(["other_consortium_user", "bureau_supervisor"]),
        {**ANON, **dict.fromkeys(K1_VIEWERS[:4], 404)},
    ),
    (
        "consortium_member_add",
        Endpoint(
            "POST",
            lambda w: f"/structure/consortia/{w.k1.uuid}/members/add/",
            data=lambda w: {"institution": w.d.pk, "role": "member"},
        ),
        ok(["consortium_manager"], 302),
        NOT_FOR_NON_MANAGERS,
    ),
    (
        "consortium_member_end",
        Endpoint("POST", lambda w: f"/structure/consortia/{w.k1.uuid}/members/{w.c.uuid}/end/"),
        ok(["consortium_manager"], 302),
        NOT_FOR_NON_MANAGERS,
    ),
    # Institutions
    ("institution_detail", Endpoint("GET", lambda w: f"/structure/institutions/{w.b.uuid}/"), ok(K1_VIEWERS), HIDDEN_FROM_OTHER),
    (
        "institution_create_form",
        Endpoint("GET", lambda w: "/structure/institutions/new/"),
        ok(["consortium_manager"]),
        FORBIDDEN_FOR_NON_MANAGERS,
    ),
    (
        "institution_create",
        Endpoint(
            "POST",
            lambda w: "/structure/institutions/new/",
            data=lambda w: {**institution_data(w), "name": "台山市白沙镇卫生院", "consortium": w.k1.pk, "member_role": "member"},
        ),
        ok(["consortium_manager"], 302),
        FORBIDDEN_FOR_NON_MANAGERS,
    ),
    (
        "institution_edit_form",
        Endpoint("GET", lambda w: f"/structure/institutions/{w.b.uuid}/edit/"),
        ok(["consortium_manager"]),
        NOT_FOR_NON_MANAGERS,
    ),
    (
        "institution_edit",
        Endpoint("POST", lambda w: f"/structure/institutions/{w.b.uuid}/edit/", data=institution_data),
        ok(["consortium_manager"], 302),
        NOT_FOR_NON_MANAGERS,
    ),
    (
        "institution_deactivate",
        Endpoint("POST", lambda w: f"/structure/institutions/{w.b.uuid}/deactivate/"),
        ok(["consortium_manager"], 302),
        NOT_FOR_NON_MANAGERS,
    ),
    (
        "institution_reactivate",
        Endpoint("POST", lambda w: f"/structure/institutions/{w.b.uuid}/reactivate/"),
        ok(["consortium_manager"], 302),
        NOT_FOR_NON_MANAGERS,
    ),
    # Departments
    (
        "department_detail",
        Endpoint("GET", lambda w: f"/structure/departments/{w.cardiology.uuid}/"),
        ok(K1_VIEWERS),
        HIDDEN_FROM_OTHER,
    ),
    (
        "department_create_form",
        Endpoint("GET", lambda w: "/structure/departments/new/"),
        ok(["consortium_manager"]),
        FORBIDDEN_FOR_NON_MANAGERS,
    ),
    (
        "department_create",
        Endpoint(
            "POST",
            lambda w: "/structure/departments/new/",
            data=lambda w: {"institution": w.a.pk, "name": "肾内科", "code": "0305", "beds": 20},
        ),
        ok(["consortium_manager"], 302),
        FORBIDDEN_FOR_NON_MANAGERS,
    ),
    (
        "department_edit_form",
        Endpoint("GET", lambda w: f"/structure/departments/{w.cardiology.uuid}/edit/"),
        ok(["consortium_manager"]),
        NOT_FOR_NON_MANAGERS,
    ),
    (
        "department_edit",
        Endpoint(
            "POST",
            lambda w: f"/structure/departments/{w.cardiology.uuid}/edit/",
            data=lambda w: {"name": "心内科", "code": "0301", "beds": 80, "is_clinical": "on"},
        ),
        ok(["consortium_manager"], 302),
        NOT_FOR_NON_MANAGERS,
    ),
    (
        "department_deactivate",
        Endpoint("POST", lambda w: f"/structure/departments/{w.cardiology.uuid}/deactivate/"),
        ok(["consortium_manager"], 302),
        NOT_FOR_NON_MANAGERS,
    ),
    (
        "department_reactivate",
        Endpoint("POST", lambda w: f"/structure/departments/{w.cardiology.uuid}/reactivate/"),
        ok(["consortium_manager"], 302),
        NOT_FOR_NON_MANAGERS,
    ),
    # Grids
    ("grid_detail", Endpoint("GET", lambda w: f"/structure/grids/{w.grid_b.uuid}/"), ok(K1_VIEWERS), HIDDEN_FROM_OTHER),
    (
        "grid_create_form",
        Endpoint("GET", lambda w: "/structure/grids/new/"),
        ok(["consortium_manager"]),
        FORBIDDEN_FOR_NON_MANAGERS,
    ),
    (
        "grid_create",
        Endpoint(
            "POST", lambda w: "/structure/grids/new/", data=lambda w: {**grid_data(w), "name": "北坑村", "consortium": w.k1.pk}
        ),
        ok(["consortium_manager"], 302),
        FORBIDDEN_FOR_NON_MANAGERS,
    ),
    (
        "grid_edit_form",
        Endpoint("GET", lambda w: f"/structure/grids/{w.grid_b.uuid}/edit/"),
        ok(["consortium_manager"]),
        NOT_FOR_NON_MANAGERS,
    ),
    (
        "grid_edit",
        Endpoint("POST", lambda w: f"/structure/grids/{w.grid_b.uuid}/edit/", data=grid_data),
        ok(["consortium_manager"], 302),
        NOT_FOR_NON_MANAGERS,
    ),
    (
        "grid_deactivate",
        Endpoint("POST", lambda w: f"/structure/grids/{w.grid_b.uuid}/deactivate/"),
        ok(["consortium_manager"], 302),
        NOT_FOR_NON_MANAGERS,
    ),
    (
        "grid_reactivate",
        Endpoint("POST", lambda w: f"/structure/grids/{w.grid_b.uuid}/reactivate/"),
        ok(["consortium_manager"], 302),
        NOT_FOR_NON_MANAGERS,
    ),
]


@pytest.mark.parametrize(("endpoint", "allowed", "denied"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_structure_page_matrix(world, endpoint, allowed, denied):
    run_matrix(world, endpoint, allowed=allowed, denied_status=denied)


# The managing roles beyond the seven personas: an institution admin manages only their own
# institution (and its village clinics); a system admin manages everything; an HR officer
# manages staff, not structure.
EXTRA_CASES = [
    (
        "institution_edit_own",
        Endpoint("GET", lambda w: f"/structure/institutions/{w.b.uuid}/edit/"),
        {"institution_admin": 200, "system_admin": 200},
        {"hr_officer": 404},
    ),
    (
        "institution_edit_village",
        Endpoint("GET", lambda w: f"/structure/institutions/{w.v.uuid}/edit/"),
        {"institution_admin": 200, "system_admin": 200},
        {"hr_officer": 404},
    ),
    (
        "institution_edit_lead",
        Endpoint("GET", lambda w: f"/structure/institutions/{w.a.uuid}/edit/"),
        {"system_admin": 200},
        {"institution_admin": 404, "hr_officer": 404},
    ),
    (
        "institution_create_form",
        Endpoint("GET", lambda w: "/structure/institutions/new/"),
        {"system_admin": 200},
        {"institution_admin": 403, "hr_officer": 403},
    ),
    (
        "department_create_form",
        Endpoint("GET", lambda w: "/structure/departments/new/"),
        {"institution_admin": 200, "system_admin": 200},
        {"hr_officer": 403},
    ),
    (
        "department_edit_other",
        Endpoint(
            "POST",
            lambda w: f"/structure/departments/{w.cardiology.uuid}/edit/",
            data=lambda w: {"name": "心内科", "code": "0301", "beds": 1},
        ),
        {"system_admin": 302},
        {"institution_admin": 404, "hr_officer": 404},
    ),
    (
        "grid_create_form",
        Endpoint("GET", lambda w: "/structure/grids/new/"),
        {"system_admin": 200},
        {"institution_admin": 403, "hr_officer": 403},
    ),
    (
        "consortium_member_end",
        Endpoint("POST", lambda w: f"/structure/consortia/{w.k1.uuid}/members/{w.c.uuid}/end/"),
        {"system_admin": 302},
        {"institution_admin": 404, "hr_officer": 404},
    ),
]


@pytest.mark.parametrize(("endpoint", "allowed", "denied"), [c[1:] for c in EXTRA_CASES], ids=[c[0] for c in EXTRA_CASES])
def test_structure_page_matrix_for_managing_roles(world, endpoint, allowed, denied):
    run_matrix(world, endpoint, allowed=allowed, denied_status=denied, personas=EXTRA)


def test_denied_edit_really_changed_nothing(world, login):
    """The matrix's "changed nothing" check can fail: an allowed edit does change the row."""
    from yilian.testing.matrix import snapshot

    before = snapshot()
    login("township_clinician").post(f"/structure/institutions/{world.b.uuid}/edit/", institution_data(world))
    assert snapshot() == before
    login("consortium_manager").post(f"/structure/institutions/{world.b.uuid}/edit/", institution_data(world))
    assert snapshot() != before
