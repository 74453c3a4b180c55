"""Authorisation matrix for every staff, membership and API-key page, GET and POST.

Denied requests are refused (403 when the role lacks the permission, 404 when the object is out
of scope, a login redirect for anonymous users) and change nothing.
"""

from __future__ import annotations

import pytest

from yilian.accounts.actors import Actor
from yilian.accounts.models import ApiKey
from yilian.accounts.roles import Role
from yilian.accounts.services import api_key_create
from yilian.testing.matrix import Endpoint, run_matrix
from yilian.testing.world import PERSONAS

LOGGED_IN = [p for p in PERSONAS if p != "anonymous"]
STAFF_VIEWERS = [p for p in LOGGED_IN if p != "bureau_supervisor"]  # the bureau sees aggregates, not staff
K1_STAFF_VIEWERS = ["lead_clinician", "township_clinician", "village_doctor", "consortium_manager"]
EXTRA = ("institution_admin", "hr_officer", "privacy_officer", "system_admin")
ANON = {"anonymous": 302}
FORBIDDEN = {**ANON, **dict.fromkeys(LOGGED_IN, 403)}
HIDDEN = {**ANON, **dict.fromkeys(LOGGED_IN, 404)}
STRONG = "Shuibu-Clinic-2026!"


def ok(personas, status: int = 200) -> dict[str, int]:  # type: ignore[no-untyped-def]
    return dict.fromkeys(personas, status)


def township_at_c(world):  # type: ignore[no-untyped-def]
    return world.user("township_clinician").memberships.get(institution=world.c)


def person_url(world, persona: str, suffix: str = "") -> str:  # type: ignore[no-untyped-def]
    return f"/accounts/staff/people/{world.user(persona).uuid}/{suffix}"


def membership_url(world, persona: str, suffix: str) -> str:  # type: ignore[no-untyped-def]
    return f"/accounts/staff/memberships/{world.user(persona).memberships.get().uuid}/{suffix}"


def new_staff(world):  # type: ignore[no-untyped-def]
    return {
        "full_name": "赵医生",
        "username": "zhao_c",
        "password": STRONG,
        "password_confirm": STRONG,
        "institution": world.c.pk,
        "role": Role.NURSE,
        "title": "nurse",
    }


CASES = [
    ("staff_list", Endpoint("GET", lambda w: "/accounts/staff/"), ok(STAFF_VIEWERS), {**ANON, "bureau_supervisor": 403}),
    (
        "staff_list_htmx",
        Endpoint("GET", lambda w: "/accounts/staff/?q=黄", headers={"HX-Request": "true"}),
        ok(STAFF_VIEWERS),
        {**ANON, "bureau_supervisor": 403},
    ),
    (
        "staff_detail",
        Endpoint("GET", lambda w: person_url(w, "township_clinician")),
        ok(K1_STAFF_VIEWERS),
        {**ANON, "other_consortium_user": 404, "bureau_supervisor": 404},
    ),
    ("staff_create_form", Endpoint("GET", lambda w: "/accounts/staff/new/"), ok(["consortium_manager"]), FORBIDDEN),
    (
        "staff_create",
        Endpoint("POST", lambda w: "/accounts/staff/new/", data=new_staff),
        ok(["consortium_manager"], 302),
        FORBIDDEN,
    ),
    (
        "membership_create_form",
        Endpoint("GET", lambda w: person_url(w, "lead_clinician", "memberships/new/")),
        ok(["consortium_manager"]),
        {**ANON, **dict.fromkeys(K1_STAFF_VIEWERS[:3], 403), "other_consortium_user": 404, "bureau_supervisor": 404},
    ),
    (
        "membership_create",
        Endpoint(
            "POST",
            lambda w: person_url(w, "lead_clinician", "memberships/new/"),
            data=lambda w: {"institution": w.b.pk, "role": Role.CLINICIAN},
        ),
        ok(["consortium_manager"], 302),
        {**ANON, **dict.fromkeys(K1_STAFF_VIEWERS[:3], 403), "other_consortium_user": 404, "bureau_supervisor": 404},
    ),
    (
        "membership_edit_form",
        Endpoint("GET", lambda w: f"/accounts/staff/memberships/{township_at_c(w).uuid}/edit/"),
        ok(["consortium_manager"]),
        HIDDEN,
    ),
    (
        "membership_edit",
        Endpoint(
            "POST", lambda w: f"/accounts/staff/memberships/{township_at_c(w).uuid}/edit/", data=lambda w: {"role": Role.NURSE}
        ),
        ok(["consortium_manager"], 302),
        HIDDEN,
    ),
    (
        "membership_end",
        Endpoint("POST", lambda w: f"/accounts/staff/memberships/{township_at_c(w).uuid}/end/"),
        ok(["consortium_manager"], 302),
        HIDDEN,
    ),
    ("api_key_list", Endpoint("GET", lambda w: "/accounts/api-keys/"), ok(["consortium_manager"]), FORBIDDEN),
    ("api_key_create_form", Endpoint("GET", lambda w: "/accounts/api-keys/new/"), ok(["consortium_manager"]), FORBIDDEN),
    # Creating shows the key on the response itself (200), never by redirect.
    (
        "api_key_create",
        Endpoint("POST", lambda w: "/accounts/api-keys/new/", data=lambda w: {"institution": w.b.pk, "name": "HIS"}),
        ok(["consortium_manager"]),
        FORBIDDEN,
    ),
    (
        "api_key_revoke",
        Endpoint("POST", lambda w: f"/accounts/api-keys/{ApiKey.objects.get(name='LIS').uuid}/revoke/"),
        ok(["consortium_manager"], 302),
        HIDDEN,
    ),
]


@pytest.fixture
def b_key(world):  # type: ignore[no-untyped-def]
    admin = world.user("system_admin")
    key, _raw = api_key_create(actor=Actor(user=admin), institution=world.b, name="LIS")
    return key


@pytest.mark.parametrize(("endpoint", "allowed", "denied"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_staff_page_matrix(world, b_key, endpoint, allowed, denied):
    run_matrix(world, endpoint, allowed=allowed, denied_status=denied)


# Managing roles beyond the seven personas. The institution admin of B manages B and its village
# clinic; the HR officer of the lead hospital manages staff across the consortium but no API keys;
# the privacy officer only views.
EXTRA_CASES = [
    (
        "membership_edit_at_v",
        Endpoint("GET", lambda w: membership_url(w, "village_doctor", "edit/")),
        {"institution_admin": 200, "hr_officer": 200, "system_admin": 200},
        {"privacy_officer": 404},
    ),
    (
        "membership_edit_at_a",
        Endpoint("GET", lambda w: membership_url(w, "lead_clinician", "edit/")),
        {"hr_officer": 200, "system_admin": 200},
        {"institution_admin": 404, "privacy_officer": 404},
    ),
    (
        "staff_create_form",
        Endpoint("GET", lambda w: "/accounts/staff/new/"),
        {"institution_admin": 200, "hr_officer": 200, "system_admin": 200},
        {"privacy_officer": 403},
    ),
    (
        "api_key_list",
        Endpoint("GET", lambda w: "/accounts/api-keys/"),
        {"institution_admin": 200, "system_admin": 200},
        {"hr_officer": 403, "privacy_officer": 403},
    ),
    (
        "api_key_revoke_b",
        Endpoint("POST", lambda w: f"/accounts/api-keys/{ApiKey.objects.get(name='LIS').uuid}/revoke/"),
        {"institution_admin": 302, "system_admin": 302},
        {"hr_officer": 404, "privacy_officer": 404},
    ),
]


@pytest.mark.parametrize(("endpoint", "allowed", "denied"), [c[1:] for c in EXTRA_CASES], ids=[c[0] for c in EXTRA_CASES])
def test_staff_page_matrix_for_managing_roles(world, b_key, endpoint, allowed, denied):
    run_matrix(world, endpoint, allowed=allowed, denied_status=denied, personas=EXTRA)


def test_a_key_of_another_consortium_cannot_be_revoked(world, login):
    key, _raw = api_key_create(actor=Actor(user=world.user("system_admin")), institution=world.t, name="PACS")
    assert login("consortium_manager").post(f"/accounts/api-keys/{key.uuid}/revoke/").status_code == 404
    key.refresh_from_db()
    assert key.revoked_at is None
