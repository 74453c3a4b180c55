"""Structure endpoints of /api/v1: what each persona sees, what writes do, refusals, query bounds."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from yilian.organizations.models import (
    CentreKind,
    ConsortiumMembership,
    Department,
    HealthAuthority,
    Institution,
    InstitutionCapability,
    InstitutionKind,
    MemberRole,
    ServiceGrid,
)
from yilian.testing.world import World

# A response that pydantic cannot serialise faithfully, or a deprecated ninja idiom, fails the test.
pytestmark = pytest.mark.filterwarnings("error:Pydantic serializer warnings", "error::DeprecationWarning:ninja.operation")


def send(client: Client, method: str, url: str, data: Any | None = None) -> Any:
    return getattr(client, method)(url, data=json.dumps(data if data is not None else {}), content_type="application/json")


def ids(response: Any) -> set[str]:
    assert response.status_code == 200, response.content
    return {item["id"] for item in response.json()["items"]}


def fields_of(response: Any, status: int = 422) -> set[str]:
    assert response.status_code == status, response.content
    return set(response.json()["fields"])


# --- Consortia ------------------------------------------------------------------------------


def test_consortium_lists_follow_the_persona(world: World, login) -> None:  # type: ignore[no-untyped-def]
    k1, k2 = str(world.k1.uuid), str(world.k2.uuid)
    assert ids(login("township_clinician").get("/api/v1/consortia")) == {k1}
    assert ids(login("other_consortium_user").get("/api/v1/consortia")) == {k2}
    assert ids(login("bureau_supervisor").get("/api/v1/consortia")) == {k1, k2}
    bureau = login("bureau_supervisor")
    assert ids(bureau.get("/api/v1/consortia?q=中医院")) == {k2}
    assert ids(bureau.get("/api/v1/consortia?kind=city_group")) == set()
    item = login("township_clinician").get("/api/v1/consortia").json()["items"][0]
    assert item["member_count"] == 4 and item["lead_institution"]["id"] == str(world.a.uuid) and item["is_active"]


def test_consortium_detail_lists_members_and_the_six_centres(world: World, login) -> None:  # type: ignore[no-untyped-def]
    body = login("village_doctor").get(f"/api/v1/consortia/{world.k1.uuid}").json()
    members = body["members"]
    assert members[0]["institution"]["id"] == str(world.a.uuid) and members[0]["role"] == "lead"
    assert {m["institution"]["id"] for m in members} == {str(i.uuid) for i in (world.a, world.b, world.c, world.v)}
    assert all(m["joined_on"] == "2020-01-01" and m["left_on"] is None and m["is_current"] for m in members)
    assert [c["kind"] for c in body["centres"]] == list(CentreKind.values)
    assert body["centres"][3]["name"] == "质量管理中心"
    assert body["grid_count"] == 1


def test_consortium_patch(world: World, login) -> None:  # type: ignore[no-untyped-def]
    client = login("consortium_manager")
    url = f"/api/v1/consortia/{world.k1.uuid}"
    response = send(client, "patch", url, {"short_name": "台山人医医共体"})
    assert response.status_code == 200 and response.json()["short_name"] == "台山人医医共体"
    world.k1.refresh_from_db()
    assert world.k1.short_name == "台山人医医共体" and world.k1.name == "台山市人民医院医疗卫生共同体"
    assert send(client, "patch", url, {"dissolved_on": "2019-01-01"}).status_code == 422
    assert fields_of(send(client, "patch", url, {"name": world.k2.name})) == {"name"}
    world.k1.refresh_from_db()
    assert world.k1.dissolved_on is None


def test_member_add_and_end(world: World, login) -> None:  # type: ignore[no-untyped-def]
    client = login("consortium_manager")
    base = f"/api/v1/consortia/{world.k1.uuid}/members"
    response = send(client, "post", base, {"institution": str(world.d.uuid), "role": "backbone"})
    assert response.status_code == 201
    assert response.json()["role"] == "backbone" and response.json()["institution"]["id"] == str(world.d.uuid)
    assert fields_of(send(client, "post", base, {"institution": str(world.d.uuid)})) == {"institution"}
    assert fields_of(send(client, "post", base, {"institution": str(world.t.uuid), "role": "lead"})) == {"role"}
    elsewhere = HealthAuthority.objects.create(name="开平市卫生健康局", division_code="440783")
    foreign = Institution.objects.create(authority=elsewhere, name="开平市中心医院", kind=InstitutionKind.GENERAL_HOSPITAL)
    assert fields_of(send(client, "post", base, {"institution": str(foreign.uuid)})) == {"institution"}

    response = send(client, "post", f"{base}/{world.c.uuid}/end", {"left_on": timezone.localdate().isoformat()})
    assert response.status_code == 200 and response.json()["is_current"] is False
    assert not ConsortiumMembership.objects.current().filter(consortium=world.k1, institution=world.c).exists()
    assert send(client, "post", f"{base}/{world.c.uuid}/end").status_code == 404  # already ended
    assert send(client, "post", f"{base}/{world.a.uuid}/end").status_code == 422  # the lead stays
    assert send(client, "post", f"{base}/{world.t.uuid}/end").status_code == 404  # never a member


# --- Institutions ---------------------------------------------------------------------------


def test_institution_list_scope_and_filters(world: World, login) -> None:  # type: ignore[no-untyped-def]
    k1_members = {str(i.uuid) for i in (world.a, world.b, world.c, world.v)}
    client = login("township_clinician")
    assert ids(client.get("/api/v1/institutions")) == k1_members
    assert ids(login("bureau_supervisor").get("/api/v1/institutions")) == k1_members | {str(world.t.uuid), str(world.d.uuid)}
    assert ids(client.get("/api/v1/institutions?q=水步")) == {str(world.b.uuid), str(world.v.uuid)}
    assert ids(client.get("/api/v1/institutions?kind=village_clinic")) == {str(world.v.uuid)}
    assert ids(client.get("/api/v1/institutions?level=tertiary")) == {str(world.a.uuid)}
    assert ids(client.get("/api/v1/institutions?town=冲蒌镇")) == {str(world.c.uuid)}
    assert ids(client.get(f"/api/v1/institutions?consortium={world.k2.uuid}")) == set()  # never widens the scope
    Institution.objects.filter(pk=world.c.pk).update(is_active=False, credit_code="12440781MB0000002X")
    assert ids(client.get("/api/v1/institutions?is_active=false")) == {str(world.c.uuid)}
    assert ids(client.get("/api/v1/institutions?q=12440781mb0000002x")) == {str(world.c.uuid)}
    assert client.get("/api/v1/institutions?kind=castle").status_code == 422
    item = next(i for i in client.get("/api/v1/institutions?q=石龙").json()["items"])
    assert item["parent"]["id"] == str(world.b.uuid) and [c["id"] for c in item["consortia"]] == [str(world.k1.uuid)]


def test_institution_detail(world: World, login) -> None:  # type: ignore[no-untyped-def]
    InstitutionCapability.objects.bulk_create([InstitutionCapability(institution=world.b, capability=c) for c in ("dr", "ecg")])
    body = login("lead_clinician").get(f"/api/v1/institutions/{world.b.uuid}").json()
    assert body["capabilities"] == ["dr", "ecg"]
    assert [c["id"] for c in body["children"]] == [str(world.v.uuid)]
    assert body["authority"]["division_code"] == "440781"
    assert [m["consortium"]["id"] for m in body["consortium_memberships"]] == [str(world.k1.uuid)]
    assert body["parent"] is None


def test_institution_create_by_a_consortium_manager(world: World, login) -> None:  # type: ignore[no-untyped-def]
    client = login("consortium_manager")
    data = {
        "name": "水步镇新村卫生站",
        "kind": "village_clinic",
        "consortium": str(world.k1.uuid),
        "parent": str(world.b.uuid),
        "town": "水步镇",
        "capabilities": ["ecg"],
        "credit_code": "",
    }
    response = send(client, "post", "/api/v1/institutions", data)
    assert response.status_code == 201, response.content
    body = response.json()
    created = Institution.objects.get(uuid=body["id"])
    assert created.parent == world.b and created.authority == world.authority and created.credit_code is None
    assert body["capabilities"] == ["ecg"] and [c["id"] for c in body["consortia"]] == [str(world.k1.uuid)]
    assert (
        ConsortiumMembership.objects.current().filter(consortium=world.k1, institution=created, role=MemberRole.MEMBER).exists()
    )
    # A village clinic needs its township centre; a consortium the manager does not lead is refused.
    assert fields_of(send(client, "post", "/api/v1/institutions", {**data, "name": "另一卫生站", "parent": None})) == {"parent"}
    assert send(client, "post", "/api/v1/institutions", {**data, "name": "另一卫生站", "consortium": None}).status_code == 403
    assert fields_of(
        send(client, "post", "/api/v1/institutions", {**data, "name": "另一卫生站", "consortium": str(world.k2.uuid)})
    ) == {"consortium"}
    assert fields_of(send(client, "post", "/api/v1/institutions", {**data, "name": "  "})) == {"name"}
    assert Institution.objects.filter(name="另一卫生站").count() == 0


def test_institution_create_by_a_system_admin(world: World, login) -> None:  # type: ignore[no-untyped-def]
    client = login("system_admin")
    data = {"name": "台山市妇幼保健院", "kind": "maternal_child", "level": "secondary"}
    assert fields_of(send(client, "post", "/api/v1/institutions", data)) == {"authority"}
    response = send(client, "post", "/api/v1/institutions", {**data, "authority": str(world.authority.uuid)})
    assert response.status_code == 201
    assert response.json()["consortia"] == [] and response.json()["level"] == "secondary"


def test_institution_patch_deactivate_activate(world: World, login) -> None:  # type: ignore[no-untyped-def]
    InstitutionCapability.objects.create(institution=world.b, capability="dr")
    client = login("institution_admin")
    url = f"/api/v1/institutions/{world.b.uuid}"
    response = send(client, "patch", url, {"phone": "0750-5500001", "capabilities": ["ct", "lab"]})
    assert response.status_code == 200 and response.json()["capabilities"] == ["ct", "lab"]
    world.b.refresh_from_db()
    assert world.b.phone == "0750-5500001" and world.b.name == "水步镇卫生院"
    assert send(client, "patch", url, {"town": "冲蒌镇"}).json()["capabilities"] == ["ct", "lab"]  # untouched when omitted
    assert fields_of(send(client, "patch", f"/api/v1/institutions/{world.v.uuid}", {"parent": None})) == {"parent"}
    assert send(client, "patch", f"/api/v1/institutions/{world.a.uuid}", {"phone": "1"}).status_code == 404
    refused = send(client, "post", f"{url}/deactivate")  # not the institution one acts for
    assert refused.status_code == 422 and "不能停用" in refused.json()["message"]
    assert Institution.objects.get(pk=world.b.pk).is_active
    manager = login("consortium_manager")
    assert send(manager, "post", f"{url}/deactivate").json()["is_active"] is False
    assert not Institution.objects.get(pk=world.b.pk).is_active
    assert send(client, "post", f"{url}/activate").json()["is_active"] is True
    assert Institution.objects.get(pk=world.b.pk).is_active


# --- Departments and grids ------------------------------------------------------------------


def test_departments(world: World, login) -> None:  # type: ignore[no-untyped-def]
    client = login("institution_admin")
    base = f"/api/v1/institutions/{world.b.uuid}/departments"
    response = send(client, "post", base, {"name": "中医科", "code": "5000", "beds": 4})
    assert response.status_code == 201 and response.json()["staff_count"] == 0
    department = Department.objects.get(uuid=response.json()["id"])
    assert ids(client.get(base)) == {str(department.uuid), str(world.b_general.uuid)}
    assert ids(client.get(f"{base}?q=中医")) == {str(department.uuid)}
    assert send(client, "post", base, {"name": "另一个", "code": "5000"}).status_code == 422
    assert fields_of(send(client, "post", base, {"name": "床位太多", "code": "5001", "beds": 10_001})) == {"beds"}
    general = client.get(f"/api/v1/departments/{world.b_general.uuid}").json()
    assert general["staff_count"] == 1 and general["institution"]["id"] == str(world.b.uuid)
    response = send(client, "patch", f"/api/v1/departments/{department.uuid}", {"is_active": False, "beds": 6})
    assert response.status_code == 200 and response.json()["is_active"] is False and response.json()["beds"] == 6
    assert ids(client.get(f"{base}?is_active=false")) == {str(department.uuid)}
    # Creating a department at an institution the admin only sees is refused.
    assert send(client, "post", f"/api/v1/institutions/{world.a.uuid}/departments", {"name": "x", "code": "x"}).status_code == 403


def test_grids(world: World, login) -> None:  # type: ignore[no-untyped-def]
    client = login("consortium_manager")
    data = {
        "consortium": str(world.k1.uuid),
        "responsible_institution": str(world.c.uuid),
        "name": "新塘村",
        "kind": "village",
        "town": "冲蒌镇",
        "population": 1800,
    }
    response = send(client, "post", "/api/v1/grids", data)
    assert response.status_code == 201, response.content
    grid = ServiceGrid.objects.get(uuid=response.json()["id"])
    assert grid.responsible_institution == world.c and grid.population == 1800
    assert ids(client.get("/api/v1/grids?town=冲蒌镇")) == {str(grid.uuid)}
    assert ids(client.get(f"/api/v1/grids?institution={world.v.uuid}")) == {str(world.grid_b.uuid)}
    assert ids(client.get(f"/api/v1/grids?consortium={world.k1.uuid}&q=石龙")) == {str(world.grid_b.uuid)}
    assert ids(login("other_consortium_user").get("/api/v1/grids")) == set()
    # The responsible institution must be a current member of the consortium.
    assert fields_of(
        send(client, "post", "/api/v1/grids", {**data, "name": "大江村", "responsible_institution": str(world.d.uuid)})
    ) == {"responsible_institution"}
    assert send(client, "post", "/api/v1/grids", data).status_code == 422  # same name in the same town
    response = send(client, "patch", f"/api/v1/grids/{grid.uuid}", {"population": 1900, "is_active": False})
    assert response.status_code == 200 and response.json()["population"] == 1900 and not response.json()["is_active"]
    assert ids(client.get("/api/v1/grids?is_active=false")) == {str(grid.uuid)}


# --- Query bounds ---------------------------------------------------------------------------


def test_list_queries_do_not_grow_with_the_page(world: World, login, django_assert_max_num_queries) -> None:  # type: ignore[no-untyped-def]
    extra = Institution.objects.bulk_create(
        Institution(
            authority=world.authority,
            name=f"台山市第{i}卫生站",
            kind=InstitutionKind.VILLAGE_CLINIC,
            parent=world.b,
            town="水步镇",
        )
        for i in range(40)
    )
    ConsortiumMembership.objects.bulk_create(
        ConsortiumMembership(consortium=world.k1, institution=i, joined_on=world.k1.established_on) for i in extra
    )
    ServiceGrid.objects.bulk_create(
        ServiceGrid(consortium=world.k1, responsible_institution=i, name=f"村{n}", town="水步镇") for n, i in enumerate(extra)
    )
    Department.objects.bulk_create(Department(institution=world.b, name=f"科室{n}", code=f"D{n}") for n in range(40))
    client = login("consortium_manager")
    client.get("/api/v1/me")
    for url, expected in (
        ("/api/v1/institutions?page_size=100", 44),
        ("/api/v1/grids?page_size=100", 41),
        (f"/api/v1/institutions/{world.b.uuid}/departments?page_size=100", 41),
        ("/api/v1/consortia", 1),
    ):
        with django_assert_max_num_queries(8):
            response = client.get(url)
        assert len(response.json()["items"]) == expected, url
    for url in (f"/api/v1/consortia/{world.k1.uuid}", f"/api/v1/institutions/{world.b.uuid}"):
        with django_assert_max_num_queries(12):
            assert client.get(url).status_code == 200
