"""Structure pages through HTTP: lists (search, filters, pagination, htmx partials), details,
create and edit with Chinese errors, deactivation that never deletes, and query bounds."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from yilian.core.validators import credit_code_check_character
from yilian.organizations.models import (
    MAX_POPULATION,
    ConsortiumMembership,
    Department,
    Institution,
    InstitutionCapability,
    InstitutionKind,
    InstitutionLevel,
    MemberRole,
    ServiceGrid,
)

HTMX = {"HX-Request": "true", "HX-Target": "results"}


def valid_credit_code(body: str = "12440781MB2C12345") -> str:
    return body + credit_code_check_character(body)


def text(response) -> str:  # type: ignore[no-untyped-def]
    return response.content.decode()


def add_township_centres(world, count: int) -> list[Institution]:  # type: ignore[no-untyped-def]
    """`count` more K1 member institutions, each with a department, a grid and a staff member."""
    from yilian.accounts.models import Membership
    from yilian.accounts.roles import Role
    from yilian.testing.world import START, make_user

    created = []
    for i in range(count):
        institution = Institution.objects.create(
            authority=world.authority,
            name=f"测试镇{i:02d}卫生院",
            kind=InstitutionKind.TOWNSHIP_CENTRE,
            level=InstitutionLevel.PRIMARY,
            town=f"测试镇{i:02d}",
        )
        ConsortiumMembership.objects.create(consortium=world.k1, institution=institution, joined_on=START)
        department = Department.objects.create(institution=institution, name="全科医学科", code="0701")
        ServiceGrid.objects.create(
            consortium=world.k1, responsible_institution=institution, name=f"村{i:02d}", town=f"测试镇{i:02d}", population=100 + i
        )
        user = make_user(f"doctor{i:02d}", f"测试医生{i:02d}")
        Membership.objects.create(
            user=user, institution=institution, department=department, role=Role.CLINICIAN, started_on=START
        )
        created.append(institution)
    return created


# --- Consortia ------------------------------------------------------------------------------


def test_consortium_list_shows_only_own_consortia(world, login):
    township = text(login("township_clinician").get("/structure/consortia/"))
    assert world.k1.name in township and world.k2.name not in township
    bureau = text(login("bureau_supervisor").get("/structure/consortia/"))
    assert world.k1.name in bureau and world.k2.name in bureau


def test_consortium_list_search_and_kind_filter(world, login):
    client = login("bureau_supervisor")
    found = text(client.get("/structure/consortia/", {"q": "中医院"}, headers=HTMX))
    assert world.k2.name in found and world.k1.name not in found
    assert "<html" not in found  # the htmx partial only
    assert world.k1.name not in text(client.get("/structure/consortia/", {"kind": "city_group"}))


def test_consortium_detail_shows_members_centres_and_grids(world, login):
    response = login("township_clinician").get(f"/structure/consortia/{world.k1.uuid}/")
    page = text(response)
    for name in ("台山市人民医院", "水步镇卫生院", "冲蒌镇卫生院", "水步镇石龙村卫生站"):
        assert name in page
    for centre in ("行政管理中心", "人力资源中心", "财务管理中心", "质量管理中心", "药械管理中心", "信息管理中心"):
        assert centre in page
    summary = page[page.index('data-testid="grid-summary"') :]
    assert "水步镇" in summary and "2380" in summary
    assert "添加成员单位" not in page  # not a manager


def test_manager_adds_and_ends_a_member(world, login):
    client = login("consortium_manager")
    page = text(client.get(f"/structure/consortia/{world.k1.uuid}/"))
    assert "添加成员单位" in page and world.d.name in page  # D is a candidate
    response = client.post(
        f"/structure/consortia/{world.k1.uuid}/members/add/", {"institution": world.d.pk, "role": MemberRole.BACKBONE}
    )
    assert response.status_code == 302
    membership = ConsortiumMembership.objects.get(consortium=world.k1, institution=world.d)
    assert membership.role == MemberRole.BACKBONE and membership.left_on is None
    assert ConsortiumMembership.objects.filter(consortium=world.k2, institution=world.d, left_on__isnull=True).exists()

    response = client.post(f"/structure/consortia/{world.k1.uuid}/members/{world.c.uuid}/end/")
    assert response.status_code == 302
    assert ConsortiumMembership.objects.get(consortium=world.k1, institution=world.c).left_on == timezone.localdate()


def test_adding_a_current_member_again_is_refused_in_chinese(world, login):
    client = login("consortium_manager")
    response = client.post(f"/structure/consortia/{world.k1.uuid}/members/add/", {"institution": world.b.pk, "role": "member"})
    assert response.status_code == 400
    assert "请选择有效的机构" in text(response)
    assert ConsortiumMembership.objects.filter(consortium=world.k1, institution=world.b).count() == 1


def test_the_lead_cannot_leave_its_own_consortium(world, login):
    client = login("consortium_manager")
    response = client.post(f"/structure/consortia/{world.k1.uuid}/members/{world.a.uuid}/end/", follow=True)
    assert "牵头单位不能退出自己牵头的医联体" in text(response)
    assert ConsortiumMembership.objects.get(consortium=world.k1, institution=world.a).left_on is None


# --- Institutions ---------------------------------------------------------------------------


def test_institution_list_is_scoped(world, login):
    page = text(login("township_clinician").get("/structure/institutions/"))
    assert "水步镇卫生院" in page and "台山市人民医院" in page
    assert "台山市中医院" not in page and "大江镇卫生院" not in page


def test_institution_search_returns_a_partial_for_htmx(world, login):
    client = login("bureau_supervisor")
    response = client.get("/structure/institutions/", {"q": "水步"}, headers=HTMX)
    page = text(response)
    assert "水步镇卫生院" in page and "水步镇石龙村卫生站" in page and "冲蒌镇卫生院" not in page
    assert "<html" not in page and 'id="results"' in page
    assert "HX-Request" in response["Vary"]
    full = text(client.get("/structure/institutions/", {"q": "水步"}))
    assert "<html" in full and 'hx-get="/structure/institutions/"' in full


def test_institution_filters(world, login):
    client = login("bureau_supervisor")

    def names(**params: str) -> set[str]:
        page = text(client.get("/structure/institutions/", params, headers=HTMX))
        return {i.name for i in Institution.objects.all() if f">{i.name}</a>" in page}

    assert names(kind=InstitutionKind.VILLAGE_CLINIC) == {"水步镇石龙村卫生站"}
    assert names(level=InstitutionLevel.TERTIARY) == {"台山市人民医院"}
    assert names(town="台城街道") == {"台山市人民医院", "台山市中医院"}
    assert names(consortium=str(world.k2.uuid)) == {"台山市中医院", "大江镇卫生院"}
    world.c.is_active = False
    world.c.save()
    assert names(active="0") == {"冲蒌镇卫生院"}
    assert "冲蒌镇卫生院" not in names(active="1")
    assert len(names(kind="no-such-kind")) == 6  # a nonsense filter is ignored, not an error


def test_institution_list_paginates(world, login):
    add_township_centres(world, 25)
    client = login("bureau_supervisor")
    first = text(client.get("/structure/institutions/", {"q": "测试镇"}))
    second = text(client.get("/structure/institutions/", {"q": "测试镇", "page": 2}))
    assert "共 25 条，第 1 / 2 页" in first and "测试镇00卫生院" in first and "测试镇24卫生院" not in first
    assert "测试镇24卫生院" in second and "测试镇00卫生院" not in second
    assert "q=%E6%B5%8B%E8%AF%95%E9%95%87" in first  # the next-page link keeps the search


def test_institution_detail(world, login):
    InstitutionCapability.objects.create(institution=world.a, capability="pci")
    page = text(login("township_clinician").get(f"/structure/institutions/{world.b.uuid}/"))
    assert "水步镇石龙村卫生站" in page  # village clinic under B
    assert "全科医学科" in page
    assert "人民医院医共体" in page
    assert "编辑" not in page  # a clinician cannot edit
    lead = text(login("township_clinician").get(f"/structure/institutions/{world.a.uuid}/"))
    assert "PCI介入" in lead and "心血管内科" in lead


def test_manager_creates_an_institution_into_the_consortium(world, login):
    client = login("consortium_manager")
    assert client.get("/structure/institutions/new/").status_code == 200
    response = client.post(
        "/structure/institutions/new/",
        {
            "consortium": world.k1.pk,
            "member_role": "member",
            "name": "台山市白沙镇卫生院",
            "kind": InstitutionKind.TOWNSHIP_CENTRE,
            "level": InstitutionLevel.PRIMARY,
            "credit_code": valid_credit_code().lower(),
            "town": "白沙镇",
            "capabilities": ["dr", "ecg"],
        },
    )
    assert response.status_code == 302
    created = Institution.objects.get(name="台山市白沙镇卫生院")
    assert response["Location"] == f"/structure/institutions/{created.uuid}/"
    assert created.authority == world.authority and created.credit_code == valid_credit_code()
    assert set(created.capabilities.values_list("capability", flat=True)) == {"dr", "ecg"}
    assert ConsortiumMembership.objects.current().filter(consortium=world.k1, institution=created).exists()


def test_manager_cannot_register_into_a_consortium_they_do_not_lead(world, login):
    response = login("consortium_manager").post(
        "/structure/institutions/new/",
        {
            "consortium": world.k2.pk,
            "member_role": "member",
            "name": "外医共体卫生院",
            "kind": InstitutionKind.TOWNSHIP_CENTRE,
            "level": InstitutionLevel.PRIMARY,
        },
    )
    assert response.status_code == 200
    assert "选择一个有效的选项" in text(response)
    assert not Institution.objects.filter(name="外医共体卫生院").exists()


def test_system_admin_creates_a_standalone_institution_but_needs_a_bureau(world, login):
    client = login("system_admin")
    data = {
        "name": "台山市第三人民医院",
        "kind": InstitutionKind.GENERAL_HOSPITAL,
        "level": InstitutionLevel.SECONDARY,
        "member_role": "member",
    }
    response = client.post("/structure/institutions/new/", data)
    assert "请选择主管卫健部门" in text(response)
    assert client.post("/structure/institutions/new/", {**data, "authority": world.authority.pk}).status_code == 302
    created = Institution.objects.get(name="台山市第三人民医院")
    assert not created.consortium_memberships.exists()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("credit_code", "12440781MB2C123450", "统一社会信用代码校验码错误"),
        ("credit_code", "1244078", "统一社会信用代码应为18位"),
        ("credit_code", "DUPLICATE", "该统一社会信用代码已被其他机构使用"),
        ("license_number", "PDY12345644078112A1001", "该执业许可证登记号已被其他机构使用"),
        ("name", "水步镇卫生院", "已有同名机构"),
    ],
)
def test_institution_form_errors_are_chinese_field_errors(world, login, field, value, message):
    world.b.credit_code = valid_credit_code()
    world.b.license_number = "PDY12345644078112A1001"
    world.b.save()
    if value == "DUPLICATE":
        value = valid_credit_code()
    before = Institution.objects.count()
    data = {
        "consortium": world.k1.pk,
        "member_role": "member",
        "name": "台山市新卫生院",
        "kind": InstitutionKind.TOWNSHIP_CENTRE,
        "level": InstitutionLevel.PRIMARY,
        field: value,
    }
    response = login("consortium_manager").post("/structure/institutions/new/", data)
    assert response.status_code == 200
    assert f'data-testid="error-{field}">{message}' in text(response)
    assert Institution.objects.count() == before


def test_village_clinic_needs_a_parent(world, login):
    client = login("consortium_manager")
    data = {
        "consortium": world.k1.pk,
        "member_role": "member",
        "name": "水步镇新村卫生站",
        "kind": InstitutionKind.VILLAGE_CLINIC,
        "level": InstitutionLevel.UNGRADED,
    }
    response = client.post("/structure/institutions/new/", data)
    assert "村卫生室须指定所属的乡镇卫生院或社区卫生服务中心" in text(response)
    assert client.post("/structure/institutions/new/", {**data, "parent": world.b.pk}).status_code == 302
    assert Institution.objects.get(name="水步镇新村卫生站").parent == world.b


def test_edit_institution_and_capabilities(world, login):
    InstitutionCapability.objects.create(institution=world.b, capability="ct")
    client = login("institution_admin")  # admin of B
    page = text(client.get(f"/structure/institutions/{world.b.uuid}/edit/"))
    assert 'value="ct" id="id_capabilities_0" checked' in page
    response = client.post(
        f"/structure/institutions/{world.b.uuid}/edit/",
        {
            "name": "台山市水步镇卫生院",
            "short_name": "水步卫生院",
            "kind": InstitutionKind.TOWNSHIP_CENTRE,
            "level": InstitutionLevel.PRIMARY,
            "town": "水步镇",
            "phone": "0750-5500000",
            "capabilities": ["dr", "lab"],
        },
    )
    assert response.status_code == 302
    world.b.refresh_from_db()
    assert (world.b.name, world.b.phone) == ("台山市水步镇卫生院", "0750-5500000")
    assert set(world.b.capabilities.values_list("capability", flat=True)) == {"dr", "lab"}


def test_edit_keeps_own_codes_but_refuses_anothers(world, login):
    world.a.credit_code = valid_credit_code()
    world.a.save()
    world.b.credit_code = valid_credit_code("12440781MB2C54321")
    world.b.save()
    client = login("consortium_manager")
    base = {"name": world.b.name, "kind": world.b.kind, "level": world.b.level}
    own = client.post(f"/structure/institutions/{world.b.uuid}/edit/", {**base, "credit_code": world.b.credit_code})
    assert own.status_code == 302
    response = client.post(f"/structure/institutions/{world.b.uuid}/edit/", {**base, "credit_code": world.a.credit_code})
    assert "该统一社会信用代码已被其他机构使用" in text(response)
    world.b.refresh_from_db()
    assert world.b.credit_code == valid_credit_code("12440781MB2C54321")


def test_deactivate_keeps_the_institution(world, login):
    client = login("consortium_manager")
    response = client.post(f"/structure/institutions/{world.c.uuid}/deactivate/", follow=True)
    assert "已停用" in text(response)
    assert Institution.objects.filter(pk=world.c.pk, is_active=False).exists()
    client.post(f"/structure/institutions/{world.c.uuid}/reactivate/")
    assert Institution.objects.get(pk=world.c.pk).is_active
    assert client.get(f"/structure/institutions/{world.c.uuid}/deactivate/").status_code == 405


def test_clinician_sees_no_edit_and_gets_404_on_edit(world, login):
    client = login("township_clinician")
    assert client.get(f"/structure/institutions/{world.b.uuid}/edit/").status_code == 404
    assert client.get("/structure/institutions/new/").status_code == 403


# --- Departments ----------------------------------------------------------------------------


def test_department_list_filters_and_scope(world, login):
    client = login("township_clinician")
    page = text(client.get("/structure/departments/"))
    assert "心血管内科" in page and "全科医学科" in page
    only_b = text(client.get("/structure/departments/", {"institution": str(world.b.uuid)}, headers=HTMX))
    assert "全科医学科" in only_b and "心血管内科" not in only_b
    assert "心血管内科" in text(client.get("/structure/departments/", {"q": "0301"}, headers=HTMX))
    Department.objects.create(institution=world.t, name="针灸科", code="5001")
    assert "针灸科" not in text(client.get("/structure/departments/"))
    assert "针灸科" in text(login("other_consortium_user").get("/structure/departments/"))


def test_department_create_edit_deactivate(world, login):
    client = login("institution_admin")
    page = text(client.get("/structure/departments/new/"))
    assert world.b.name in page and world.v.name in page and world.a.name not in page  # only institutions B manages
    response = client.post(
        "/structure/departments/new/", {"institution": world.b.pk, "name": "中医科", "code": "5001", "beds": 6}
    )
    assert response.status_code == 302
    department = Department.objects.get(institution=world.b, code="5001")
    assert department.is_clinical is False  # unchecked box

    response = client.post(f"/structure/departments/{department.uuid}/edit/", {"name": "中医科", "code": "5001", "beds": -1})
    assert "床位数不能为负数" in text(response)
    response = client.post(
        f"/structure/departments/{department.uuid}/edit/", {"name": "中医康复科", "code": "5001", "beds": 8, "is_clinical": "on"}
    )
    assert response.status_code == 302
    department.refresh_from_db()
    assert (department.name, department.beds, department.is_clinical) == ("中医康复科", 8, True)

    client.post(f"/structure/departments/{department.uuid}/deactivate/")
    assert Department.objects.get(pk=department.pk).is_active is False
    client.post(f"/structure/departments/{department.uuid}/reactivate/")
    assert Department.objects.get(pk=department.pk).is_active is True


def test_department_duplicate_code_is_a_chinese_error(world, login):
    response = login("institution_admin").post(
        "/structure/departments/new/", {"institution": world.b.pk, "name": "全科二科", "code": "0701", "beds": 0}
    )
    assert response.status_code == 200
    assert 'data-testid="error-code">本机构已有该科室代码。' in text(response)
    assert Department.objects.filter(institution=world.b).count() == 1
    department = Department.objects.create(institution=world.b, name="中医科", code="5001")
    response = login("institution_admin").post(
        f"/structure/departments/{department.uuid}/edit/", {"name": "全科医学科", "code": "5001", "beds": 0}
    )
    assert 'data-testid="error-name">本机构已有同名科室。' in text(response)
    assert Department.objects.get(pk=department.pk).name == "中医科"


def test_department_of_another_institution_is_not_offered(world, login):
    response = login("institution_admin").post(
        "/structure/departments/new/", {"institution": world.a.pk, "name": "新科室", "code": "9999", "beds": 0}
    )
    assert "请选择有效的机构" in text(response)
    assert not Department.objects.filter(code="9999").exists()


# --- Grids ----------------------------------------------------------------------------------


def test_grid_list_filters(world, login):
    ServiceGrid.objects.create(
        consortium=world.k1, responsible_institution=world.c, name="冲蒌村", town="冲蒌镇", population=1000
    )
    ServiceGrid.objects.create(consortium=world.k2, responsible_institution=world.d, name="大江村", town="大江镇", population=900)
    client = login("bureau_supervisor")
    page = text(client.get("/structure/grids/", headers=HTMX))
    assert all(name in page for name in ("石龙村", "冲蒌村", "大江村"))
    assert "4,280" in page or "4280" in page  # total population of the filtered grids
    by_town = text(client.get("/structure/grids/", {"town": "冲蒌镇"}, headers=HTMX))
    assert "冲蒌村" in by_town and "石龙村" not in by_town
    by_consortium = text(client.get("/structure/grids/", {"consortium": str(world.k2.uuid)}, headers=HTMX))
    assert "大江村" in by_consortium and "冲蒌村" not in by_consortium
    assert "大江村" not in text(login("township_clinician").get("/structure/grids/"))


def test_grid_create_bounds_population_and_members(world, login):
    client = login("consortium_manager")
    data = {"consortium": world.k1.pk, "name": "新村", "kind": "village", "town": "冲蒌镇", "responsible_institution": world.c.pk}
    response = client.post("/structure/grids/new/", {**data, "population": MAX_POPULATION + 1})
    assert "常住人口不能超过" in text(response)
    response = client.post("/structure/grids/new/", {**data, "population": -5})
    assert "常住人口不能为负数" in text(response)
    response = client.post("/structure/grids/new/", {**data, "population": 800, "responsible_institution": world.d.pk})
    assert "请选择有效的责任机构" in text(response)
    assert not ServiceGrid.objects.filter(name="新村").exists()
    assert client.post("/structure/grids/new/", {**data, "population": 800}).status_code == 302
    assert ServiceGrid.objects.get(name="新村").responsible_institution == world.c


def test_grid_edit_and_deactivate(world, login):
    client = login("consortium_manager")
    grid = world.grid_b
    response = client.post(
        f"/structure/grids/{grid.uuid}/edit/",
        {
            "name": "石龙村",
            "kind": "village",
            "town": "水步镇",
            "population": 2500,
            "responsible_institution": world.b.pk,
        },
    )
    assert response.status_code == 302
    grid.refresh_from_db()
    assert (grid.population, grid.responsible_institution) == (2500, world.b)
    client.post(f"/structure/grids/{grid.uuid}/deactivate/")
    assert ServiceGrid.objects.get(pk=grid.pk).is_active is False
    assert login("township_clinician").get(f"/structure/grids/{grid.uuid}/edit/").status_code == 404


def test_grid_detail_counts_residents(world, login):
    page = text(login("bureau_supervisor").get(f"/structure/grids/{world.grid_b.uuid}/"))
    assert "已建档居民" in page and "水步镇石龙村卫生站" in page


# --- Query bounds (no N+1) ------------------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["/structure/consortia/", "/structure/institutions/", "/structure/departments/", "/structure/grids/"]
)
def test_list_pages_have_bounded_queries(world, login, django_assert_max_num_queries, url):
    client = login("consortium_manager")
    client.get(url)  # warm the session
    with django_assert_max_num_queries(14) as small:
        client.get(url)
    few = len(small.captured_queries)
    add_township_centres(world, 20)
    client.get(url)  # saving institutions emptied the membership cache (one more query, once)
    with django_assert_max_num_queries(few):
        response = client.get(url)
    assert response.status_code == 200


def test_consortium_detail_has_bounded_queries(world, login, django_assert_max_num_queries):
    client = login("consortium_manager")
    url = f"/structure/consortia/{world.k1.uuid}/"
    client.get(url)
    with django_assert_max_num_queries(20) as small:
        client.get(url)
    few = len(small.captured_queries)
    add_township_centres(world, 15)
    client.get(url)  # saving institutions emptied the membership cache (one more query, once)
    with django_assert_max_num_queries(few):
        assert client.get(url).status_code == 200


def test_institution_detail_has_bounded_queries(world, login, django_assert_max_num_queries):
    for code in range(10):
        Department.objects.create(institution=world.a, name=f"科室{code}", code=f"90{code:02d}")
    client = login("consortium_manager")
    with django_assert_max_num_queries(14):
        assert client.get(f"/structure/institutions/{world.a.uuid}/").status_code == 200


def test_future_membership_dates_display(world, login):
    ConsortiumMembership.objects.filter(consortium=world.k1, institution=world.c).update(
        left_on=timezone.localdate() - dt.timedelta(days=1)
    )
    page = text(login("consortium_manager").get(f"/structure/consortia/{world.k1.uuid}/"))
    assert (timezone.localdate() - dt.timedelta(days=1)).isoformat() in page
    assert 'data-testid="member-count">3<' in page


def test_an_institution_admin_cannot_switch_off_their_own_institution(world, login):
    client = login("institution_admin")  # acts for B
    response = client.post(f"/structure/institutions/{world.b.uuid}/deactivate/", follow=True)
    assert response.status_code == 200 and "不能停用您当前所代表的机构" in text(response)
    assert Institution.objects.get(pk=world.b.pk).is_active
