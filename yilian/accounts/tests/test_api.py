"""/api/v1/me, staff, memberships and API keys: behaviour, refusals, query bounds."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from yilian.accounts.middleware import ACTING_MEMBERSHIP_SESSION_KEY
from yilian.accounts.models import ApiKey, Membership, Practitioner, User
from yilian.testing.world import PASSWORD, World, add_membership, make_user

# A response that pydantic cannot serialise faithfully, or a deprecated ninja idiom, fails the test.
pytestmark = pytest.mark.filterwarnings("error:Pydantic serializer warnings", "error::DeprecationWarning:ninja.operation")


def send(client: Client, method: str, url: str, data: Any | None = None) -> Any:
    return getattr(client, method)(url, data=json.dumps(data if data is not None else {}), content_type="application/json")


def fields_of(response: Any, status: int = 422) -> set[str]:
    assert response.status_code == status, response.content
    return set(response.json()["fields"])


# --- Me -------------------------------------------------------------------------------------


def test_me_shows_the_acting_membership_and_permissions(world: World, login) -> None:  # type: ignore[no-untyped-def]
    client = login("township_clinician")
    body = client.get("/api/v1/me").json()
    assert body["user"]["username"] == "township_clinician" and body["api_key"] is None
    assert [m["institution"]["id"] for m in body["memberships"]] == [str(world.b.uuid), str(world.c.uuid)]
    assert body["acting_membership"]["institution"]["id"] == str(world.b.uuid)
    assert body["acting_membership"]["department"]["code"] == "0701"
    assert body["acting_membership"]["role_label"] == "临床医生"
    assert set(body["permissions"]) == {"structure.view", "staff.view", "patient.view", "patient.break_glass", "result.recognise"}
    assert body["is_system_admin"] is False
    # The institution switcher of the pages also switches what the API acts through.
    at_c = Membership.objects.get(user=world.user("township_clinician"), institution=world.c)
    session = client.session
    session[ACTING_MEMBERSHIP_SESSION_KEY] = str(at_c.uuid)
    session.save()
    assert client.get("/api/v1/me").json()["acting_membership"]["id"] == str(at_c.uuid)
    assert client.get("/api/v1/patients").json()["count"] == 0  # C holds nobody


def test_me_for_a_bureau_supervisor_and_a_system_admin(world: World, login) -> None:  # type: ignore[no-untyped-def]
    bureau = login("bureau_supervisor").get("/api/v1/me").json()
    assert bureau["acting_membership"]["institution"] is None
    assert bureau["acting_membership"]["authority"]["division_code"] == "440781"
    admin = login("system_admin").get("/api/v1/me").json()
    assert admin["is_system_admin"] and admin["memberships"] == [] and "patient.view" not in admin["permissions"]


# --- Staff ----------------------------------------------------------------------------------


def test_staff_list_scope_and_filters(world: World, login) -> None:  # type: ignore[no-untyped-def]
    client = login("institution_admin")
    usernames = {m["user"]["username"] for m in client.get("/api/v1/staff?page_size=100").json()["items"]}
    assert "other_consortium_user" not in usernames and "bureau_supervisor" not in usernames
    assert {"lead_clinician", "township_clinician", "village_doctor"} <= usernames
    b_staff = client.get(f"/api/v1/staff?institution={world.b.uuid}").json()["items"]
    assert {m["user"]["username"] for m in b_staff} == {"township_clinician", "institution_admin"}
    assert [m["user"]["username"] for m in client.get("/api/v1/staff?role=village_doctor").json()["items"]] == ["village_doctor"]
    assert [m["user"]["username"] for m in client.get("/api/v1/staff?q=黄晓").json()["items"]] == ["township_clinician"] * 2
    lead = client.get("/api/v1/staff?q=lead_clinician").json()["items"][0]
    assert lead["user"]["title"] == "chief_physician" and lead["user"]["specialty"] == "心血管内科" and lead["is_current"]
    Membership.objects.filter(user=world.user("village_doctor")).update(ended_on=dt.date(2024, 1, 1))
    assert [m["user"]["username"] for m in client.get("/api/v1/staff?status=ended").json()["items"]] == ["village_doctor"]
    assert "village_doctor" not in {m["user"]["username"] for m in client.get("/api/v1/staff?status=current").json()["items"]}
    assert client.get("/api/v1/staff?role=wizard").status_code == 422


def test_staff_create(world: World, login) -> None:  # type: ignore[no-untyped-def]
    client = login("institution_admin")
    data = {
        "username": "b_nurse",
        "full_name": " 林护士 ",
        "password": PASSWORD,
        "role": "nurse",
        "institution": str(world.b.uuid),
        "department": str(world.b_general.uuid),
        "title": "nurse",
        "phone": "13900000000",
        "certificate_number": "N-1",
    }
    response = send(client, "post", "/api/v1/staff", data)
    assert response.status_code == 201, response.content
    body = response.json()
    assert "password" not in json.dumps(body)
    user = User.objects.get(username="b_nurse")
    assert user.full_name == "林护士" and user.check_password(PASSWORD)
    assert Practitioner.objects.get(user=user).certificate_number == "N-1"
    assert body["user"]["id"] == str(user.uuid) and body["department"]["id"] == str(world.b_general.uuid)
    assert body["role"] == "nurse" and body["institution"]["id"] == str(world.b.uuid)
    # Refusals, each on its field.
    assert fields_of(send(client, "post", "/api/v1/staff", data)) >= {"username"}
    assert fields_of(send(client, "post", "/api/v1/staff", {**data, "username": "weak", "password": "12345678"})) == {"password"}
    assert fields_of(send(client, "post", "/api/v1/staff", {**data, "username": "boss", "role": "consortium_manager"})) == {
        "role"
    }
    assert fields_of(
        send(client, "post", "/api/v1/staff", {**data, "username": "x1", "department": str(world.cardiology.uuid)})
    ) == {"department"}
    assert fields_of(send(client, "post", "/api/v1/staff", {**data, "username": "x2", "institution": str(world.t.uuid)})) == {
        "institution"
    }
    # A visible institution the admin does not manage: forbidden.
    no_department = {**data, "username": "x3", "department": None}
    assert send(client, "post", "/api/v1/staff", {**no_department, "institution": str(world.a.uuid)}).status_code == 403
    assert not User.objects.filter(username__in=["weak", "boss", "x1", "x2", "x3"]).exists()


def test_staff_detail_and_patch(world: World, login) -> None:  # type: ignore[no-untyped-def]
    membership = Membership.objects.get(user=world.user("township_clinician"), institution=world.b)
    client = login("institution_admin")
    url = f"/api/v1/staff/{membership.uuid}"
    assert client.get(url).json()["user"]["username"] == "township_clinician"
    response = send(client, "patch", url, {"role": "nurse"})
    assert response.status_code == 200 and response.json()["role"] == "nurse"
    membership.refresh_from_db()
    assert membership.role == "nurse" and membership.department == world.b_general  # untouched when omitted
    assert send(client, "patch", url, {"department": None}).json()["department"] is None
    assert fields_of(send(client, "patch", url, {"department": str(world.cardiology.uuid)})) == {"department"}
    assert send(client, "patch", url, {"ended_on": "2019-12-31"}).status_code == 422  # before it started
    assert fields_of(send(client, "patch", url, {"role": None})) == {"role"}
    ended = send(client, "patch", url, {"ended_on": timezone.localdate().isoformat()}).json()
    assert ended["ended_on"] == timezone.localdate().isoformat() and ended["is_current"] is False
    # A's staff are visible to B's admin but not manageable.
    lead = Membership.objects.get(user=world.user("lead_clinician"))
    assert client.get(f"/api/v1/staff/{lead.uuid}").status_code == 200
    assert send(client, "patch", f"/api/v1/staff/{lead.uuid}", {"role": "nurse"}).status_code == 404


def test_membership_create(world: World, login) -> None:  # type: ignore[no-untyped-def]
    client = login("consortium_manager")
    person = world.user("township_clinician")
    url = f"/api/v1/users/{person.uuid}/memberships"
    response = send(client, "post", url, {"role": "clinician", "institution": str(world.v.uuid), "started_on": "2025-03-01"})
    assert response.status_code == 201, response.content
    assert Membership.objects.filter(user=person, institution=world.v, started_on=dt.date(2025, 3, 1)).exists()
    # One open membership per role and institution.
    assert send(client, "post", url, {"role": "clinician", "institution": str(world.v.uuid)}).status_code == 422
    assert fields_of(send(client, "post", url, {"role": "bureau_supervisor", "authority": str(world.authority.uuid)})) == {"role"}
    assert (
        send(
            client,
            "post",
            f"/api/v1/users/{world.user('other_consortium_user').uuid}/memberships",
            {"role": "nurse", "institution": str(world.b.uuid)},
        ).status_code
        == 404
    )


def test_bureau_roles_are_set_by_a_system_admin(world: World, login) -> None:  # type: ignore[no-untyped-def]
    client = login("system_admin")
    data = {
        "username": "bureau2",
        "full_name": "冯科员",
        "password": PASSWORD,
        "role": "bureau_supervisor",
        "authority": str(world.authority.uuid),
    }
    response = send(client, "post", "/api/v1/staff", data)
    assert response.status_code == 201, response.content
    assert response.json()["authority"]["id"] == str(world.authority.uuid) and response.json()["institution"] is None
    assert fields_of(send(client, "post", "/api/v1/staff", {**data, "username": "bureau3", "authority": None})) == {"role"}


def test_staff_list_queries_do_not_grow(world: World, login, django_assert_max_num_queries) -> None:  # type: ignore[no-untyped-def]
    for n in range(40):
        add_membership(make_user(f"bulk_{n}", f"批量{n}"), "nurse", institution=world.b, department=world.b_general)
    client = login("institution_admin")
    client.get("/api/v1/me")
    with django_assert_max_num_queries(7):
        response = client.get("/api/v1/staff?page_size=100")
    assert response.json()["count"] >= 45 and len(response.json()["items"]) == response.json()["count"]


# --- API keys -------------------------------------------------------------------------------


def test_api_key_lifecycle(world: World, login) -> None:  # type: ignore[no-untyped-def]
    client = login("institution_admin")
    response = send(
        client,
        "post",
        "/api/v1/api-keys",
        {"institution": str(world.b.uuid), "name": "水步HIS", "expires_at": "2099-01-01T08:00:00"},
    )
    assert response.status_code == 201, response.content
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    raw = body["key"]
    key = ApiKey.objects.get(uuid=body["id"])
    assert raw.startswith(key.prefix) and raw not in key.key_digest and body["is_usable"]
    assert timezone.localtime(key.expires_at).hour == 8  # a time without zone is Beijing time
    # The key works; the list never shows it again.
    assert Client(headers={"Authorization": f"Bearer {raw}"}).get("/api/v1/me").json()["api_key"]["id"] == str(key.uuid)
    listed = client.get("/api/v1/api-keys").json()
    assert [k["id"] for k in listed["items"]] == [str(key.uuid)] and raw not in json.dumps(listed)
    assert listed["items"][0]["created_by"] == "邝管理" and listed["items"][0]["last_used_at"] is not None
    # Revoked: refused at once, listed as revoked, and revoking again changes nothing.
    revoked = send(client, "post", f"/api/v1/api-keys/{key.uuid}/revoke").json()
    assert revoked["revoked_at"] is not None and not revoked["is_usable"]
    assert Client(headers={"X-API-Key": raw}).get("/api/v1/me").status_code == 401
    assert send(client, "post", f"/api/v1/api-keys/{key.uuid}/revoke").json()["revoked_at"] == revoked["revoked_at"]
    assert [k["id"] for k in client.get("/api/v1/api-keys?status=revoked").json()["items"]] == [str(key.uuid)]
    assert client.get("/api/v1/api-keys?status=usable").json()["items"] == []
    # Not for an institution the admin does not manage.
    assert send(client, "post", "/api/v1/api-keys", {"institution": str(world.a.uuid), "name": "x"}).status_code == 403
    assert fields_of(send(client, "post", "/api/v1/api-keys", {"institution": str(world.b.uuid), "name": "x" * 61})) == {"name"}


def test_api_key_list_queries_do_not_grow(world: World, login, django_assert_max_num_queries) -> None:  # type: ignore[no-untyped-def]
    from yilian.accounts.actors import Actor
    from yilian.accounts.services import api_key_create

    admin = Actor(user=world.user("system_admin"))
    for n in range(30):
        api_key_create(actor=admin, institution=world.b if n % 2 else world.v, name=f"系统{n}")
    client = login("institution_admin")
    client.get("/api/v1/me")
    with django_assert_max_num_queries(6):
        response = client.get("/api/v1/api-keys?page_size=100")
    assert response.json()["count"] == 30
