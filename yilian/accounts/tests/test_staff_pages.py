"""Staff, membership and API-key pages through HTTP: scoped lists with search and filters,
creating staff with Chinese password errors, deployments, editing and ending memberships, and
API keys whose raw value is shown once."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.utils import timezone

from yilian.accounts.models import ApiKey, Membership, Practitioner, User, hash_api_key
from yilian.accounts.roles import Role
from yilian.accounts.services import api_key_authenticate
from yilian.testing.world import START, make_user

HTMX = {"HX-Request": "true", "HX-Target": "results"}
STRONG = "Shuibu-Clinic-2026!"


def text(response) -> str:  # type: ignore[no-untyped-def]
    return response.content.decode()


def names_in(page: str) -> set[str]:
    return {u.full_name for u in User.objects.exclude(full_name="") if f">{u.full_name}</a>" in page}


def staff_data(world, **overrides: object) -> dict[str, object]:  # type: ignore[no-untyped-def]
    data: dict[str, object] = {
        "full_name": "赵医生",
        "username": "zhao_b",
        "phone": "13800001111",
        "password": STRONG,
        "password_confirm": STRONG,
        "title": "attending_physician",
        "specialty": "全科医学",
        "certificate_number": "110440781000777",
        "institution": world.b.pk,
        "department": world.b_general.pk,
        "role": Role.CLINICIAN,
    }
    data.update(overrides)
    return data


# --- Staff list -----------------------------------------------------------------------------


def test_staff_list_is_scoped_to_the_consortium(world, login):
    page = text(login("township_clinician").get("/accounts/staff/"))
    assert {"李志强", "黄晓敏", "陈伯", "梁主任", "邝管理"} <= names_in(page)
    assert "甄医生" not in names_in(page)  # works at T, in K2
    other = text(login("other_consortium_user").get("/accounts/staff/"))
    assert names_in(other) == {"甄医生"}


def test_bureau_supervisor_has_no_staff_pages(world, login):
    assert login("bureau_supervisor").get("/accounts/staff/").status_code == 403


def test_staff_search_by_name_username_and_phone(world, login):
    user = world.user("village_doctor")
    user.phone = "13912345678"
    user.save()
    client = login("consortium_manager")
    assert names_in(text(client.get("/accounts/staff/", {"q": "李志"}, headers=HTMX))) == {"李志强"}
    assert names_in(text(client.get("/accounts/staff/", {"q": "hr_off"}, headers=HTMX))) == {"谭人事"}
    by_phone = client.get("/accounts/staff/", {"q": "2345678"}, headers=HTMX)
    assert names_in(text(by_phone)) == {"陈伯"}
    assert "<html" not in text(by_phone)


def test_staff_filters_by_institution_role_and_status(world, login):
    client = login("consortium_manager")
    at_b = text(client.get("/accounts/staff/", {"institution": str(world.b.uuid)}, headers=HTMX))
    assert names_in(at_b) == {"黄晓敏", "邝管理"}
    clinicians = text(client.get("/accounts/staff/", {"role": Role.CLINICIAN}, headers=HTMX))
    assert names_in(clinicians) == {"李志强", "黄晓敏"}
    Membership.objects.filter(user=world.user("privacy_officer")).update(ended_on=timezone.localdate())
    assert names_in(text(client.get("/accounts/staff/", {"status": "ended"}, headers=HTMX))) == {"雷专员"}
    assert "雷专员" not in names_in(text(client.get("/accounts/staff/", {"status": "current"}, headers=HTMX)))


def test_staff_list_paginates(world, login):
    for i in range(25):
        user = make_user(f"nurse{i:02d}", f"护士{i:02d}")
        Membership.objects.create(user=user, institution=world.c, role=Role.NURSE, started_on=START)
    client = login("consortium_manager")
    first = text(client.get("/accounts/staff/", {"q": "护士"}))
    second = text(client.get("/accounts/staff/", {"q": "护士", "page": "2"}))
    assert "共 25 条，第 1 / 2 页" in first
    assert len(names_in(first)) == 20 and len(names_in(second)) == 5
    assert not names_in(first) & names_in(second)


def test_staff_list_has_bounded_queries(world, login, django_assert_max_num_queries):
    client = login("consortium_manager")
    client.get("/accounts/staff/")
    with django_assert_max_num_queries(14) as small:
        client.get("/accounts/staff/")
    few = len(small.captured_queries)  # read now: each request resets the connection's query log
    for i in range(20):
        user = make_user(f"doc{i:02d}", f"医生{i:02d}")
        Practitioner.objects.create(user=user, title="physician")
        Membership.objects.create(user=user, institution=world.c, role=Role.CLINICIAN, started_on=START)
    client.get("/accounts/staff/")  # saving memberships emptied the acting user's membership cache
    with django_assert_max_num_queries(few):
        assert client.get("/accounts/staff/").status_code == 200


# --- Person detail --------------------------------------------------------------------------


def test_person_detail_shows_visible_memberships(world, login):
    township = world.user("township_clinician")
    page = text(login("lead_clinician").get(f"/accounts/staff/people/{township.uuid}/"))
    assert "水步镇卫生院" in page and "冲蒌镇卫生院" in page and "全科医学科" in page
    assert "结束任职" not in page  # a clinician manages no one
    assert login("other_consortium_user").get(f"/accounts/staff/people/{township.uuid}/").status_code == 404


def test_person_detail_has_bounded_queries(world, login, django_assert_max_num_queries):
    client = login("consortium_manager")
    lead = world.user("lead_clinician")
    for institution in (world.b, world.c, world.v):
        Membership.objects.create(user=lead, institution=institution, role=Role.CLINICIAN, started_on=START)
    with django_assert_max_num_queries(14):
        assert client.get(f"/accounts/staff/people/{lead.uuid}/").status_code == 200


# --- Creating staff -------------------------------------------------------------------------


def test_manager_creates_a_staff_member(world, login):
    client = login("consortium_manager")
    page = text(client.get("/accounts/staff/new/"))
    assert "医联体管理员" in page and "卫健局监管员" not in page and "系统管理员" not in page
    response = client.post("/accounts/staff/new/", staff_data(world))
    user = User.objects.get(username="zhao_b")
    assert response.status_code == 302 and response["Location"] == f"/accounts/staff/people/{user.uuid}/"
    assert user.full_name == "赵医生" and user.check_password(STRONG)
    assert user.practitioner.title == "attending_physician"
    membership = user.memberships.get()
    assert (membership.institution, membership.department, membership.role) == (world.b, world.b_general, Role.CLINICIAN)
    assert membership.started_on == timezone.localdate()


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"password": "Ab1-short", "password_confirm": "Ab1-short"}, "password", "密码太短，至少需要 10 个字符。"),
        ({"password": "1234567890123", "password_confirm": "1234567890123"}, "password", "密码不能全为数字。"),
        ({"password": "password123", "password_confirm": "password123"}, "password", "该密码过于常见，请换一个。"),
        ({"password": "zhao_b_2026", "password_confirm": "zhao_b_2026"}, "password", "密码与用户名过于相似。"),
        ({"password_confirm": STRONG + "x"}, "password_confirm", "两次输入的密码不一致。"),
        ({"username": "lead_clinician"}, "username", "该用户名已被使用。"),
        ({"username": "李 医生"}, "username", "请输入合法的用户名"),
        ({"certificate_number": "110440781000001"}, "certificate_number", "该执业证书编码已登记在其他人员名下。"),
        ({"role": Role.BUREAU_SUPERVISOR}, "role", "您不能授予该角色。"),
        ({"institution": "999999"}, "institution", "请选择您有权管理的机构。"),
        ({"institution": ""}, "institution", "请选择任职机构。"),
        ({"department": "999999"}, "department", "请选择所选机构的科室。"),
        ({"full_name": ""}, "full_name", "这个字段是必填项。"),
    ],
)
def test_staff_create_errors_are_chinese(world, login, overrides, field, message):
    before = (User.objects.count(), Membership.objects.count(), Practitioner.objects.count())
    response = login("consortium_manager").post("/accounts/staff/new/", staff_data(world, **overrides))
    assert response.status_code == 200
    page = text(response)
    assert f'data-testid="error-{field}">' in page, page
    errors = re.findall(rf'data-testid="error-{field}">(.*?)</div>', page)
    assert any(message in error for error in errors), errors
    assert (User.objects.count(), Membership.objects.count(), Practitioner.objects.count()) == before


def test_department_must_belong_to_the_chosen_institution(world, login):
    response = login("consortium_manager").post(
        "/accounts/staff/new/", staff_data(world, institution=world.c.pk, department=world.b_general.pk)
    )
    assert "科室须属于所选机构" in text(response)
    assert not User.objects.filter(username="zhao_b").exists()


def test_institution_admin_appoints_only_at_home(world, login):
    client = login("institution_admin")  # admin of B (and its village clinic V)
    page = text(client.get("/accounts/staff/new/"))
    assert "水步镇卫生院" in page and "水步镇石龙村卫生站" in page and "冲蒌镇卫生院" not in page
    assert "医联体管理员" not in page
    response = client.post("/accounts/staff/new/", staff_data(world, institution=world.c.pk, department=""))
    assert "请选择您有权管理的机构" in text(response)
    assert (
        client.post(
            "/accounts/staff/new/", staff_data(world, institution=world.v.pk, department="", role=Role.VILLAGE_DOCTOR)
        ).status_code
        == 302
    )


def test_system_admin_appoints_a_bureau_supervisor(world, login):
    client = login("system_admin")
    data = staff_data(
        world,
        institution="",
        department="",
        authority=world.authority.pk,
        role=Role.BUREAU_SUPERVISOR,
        title="",
        specialty="",
        certificate_number="",
    )
    assert client.post("/accounts/staff/new/", data).status_code == 302
    membership = User.objects.get(username="zhao_b").memberships.get()
    assert (membership.authority, membership.institution, membership.role) == (world.authority, None, Role.BUREAU_SUPERVISOR)
    response = client.post("/accounts/staff/new/", {**data, "username": "qian", "institution": world.b.pk})
    assert "任职机构和卫健部门只能选择其一" in text(response)


# --- Memberships ----------------------------------------------------------------------------


def test_manager_deploys_a_specialist_to_a_township(world, login):
    lead = world.user("lead_clinician")
    client = login("consortium_manager")
    ends = timezone.localdate() + dt.timedelta(days=90)
    response = client.post(
        f"/accounts/staff/people/{lead.uuid}/memberships/new/",
        {
            "institution": world.b.pk,
            "department": world.b_general.pk,
            "role": Role.CLINICIAN,
            "ended_on": ends.isoformat(),
        },
    )
    assert response.status_code == 302
    deployment = lead.memberships.get(institution=world.b)
    assert (deployment.department, deployment.ended_on, deployment.started_on) == (world.b_general, ends, timezone.localdate())
    assert lead.memberships.filter(institution=world.a).exists()  # the home membership stays


def test_membership_create_checks_dates_and_duplicates(world, login):
    lead = world.user("lead_clinician")
    client = login("consortium_manager")
    url = f"/accounts/staff/people/{lead.uuid}/memberships/new/"
    response = client.post(
        url, {"institution": world.b.pk, "role": Role.CLINICIAN, "started_on": "2026-03-01", "ended_on": "2026-02-01"}
    )
    assert "结束日期不能早于开始日期" in text(response)
    response = client.post(url, {"institution": world.a.pk, "role": Role.CLINICIAN})  # already a clinician at A
    assert response.status_code == 200 and "此人在该机构已有相同角色的任职" in text(response)
    assert lead.memberships.count() == 1


def test_edit_and_end_a_membership(world, login):
    township = world.user("township_clinician")
    membership = township.memberships.get(institution=world.c)
    client = login("consortium_manager")
    page = text(client.get(f"/accounts/staff/memberships/{membership.uuid}/edit/"))
    assert "医联体管理员" in page and "卫健局监管员" not in page
    response = client.post(f"/accounts/staff/memberships/{membership.uuid}/edit/", {"role": Role.REFERRAL_COORDINATOR})
    assert response.status_code == 302
    membership.refresh_from_db()
    assert membership.role == Role.REFERRAL_COORDINATOR

    response = client.post(
        f"/accounts/staff/memberships/{membership.uuid}/edit/", {"role": Role.CLINICIAN, "ended_on": "2019-01-01"}
    )
    assert "结束日期不能早于开始日期（2020-01-01）" in text(response)
    response = client.post(
        f"/accounts/staff/memberships/{membership.uuid}/edit/", {"role": Role.CLINICIAN, "department": world.cardiology.pk}
    )
    assert "请选择本机构的科室" in text(response)

    response = client.post(f"/accounts/staff/memberships/{membership.uuid}/end/", follow=True)
    assert "已结束" in text(response)
    membership.refresh_from_db()
    assert membership.ended_on == timezone.localdate()
    assert Membership.objects.filter(pk=membership.pk).exists()  # ended, not deleted


def test_institution_admin_cannot_promote_to_consortium_manager(world, login):
    membership = world.user("village_doctor").memberships.get()
    client = login("institution_admin")
    response = client.post(f"/accounts/staff/memberships/{membership.uuid}/edit/", {"role": Role.CONSORTIUM_MANAGER})
    assert "您不能授予该角色" in text(response)
    membership.refresh_from_db()
    assert membership.role == Role.VILLAGE_DOCTOR


# --- API keys -------------------------------------------------------------------------------


def test_api_key_is_shown_once_and_works(world, login):
    client = login("institution_admin")
    page = text(client.get("/accounts/api-keys/new/"))
    assert "水步镇卫生院" in page and "台山市人民医院" not in page
    response = client.post("/accounts/api-keys/new/", {"institution": world.b.pk, "name": "HIS 门诊系统"})
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"] or "max-age=0" in response["Cache-Control"]
    raw = text(response).split('data-testid="raw-key" aria-label=')[0].rsplit('value="', 1)[1].split('"')[0]
    key = ApiKey.objects.get()
    assert key.key_digest == hash_api_key(raw) and key.institution == world.b
    assert key.created_by == world.user("institution_admin")
    assert api_key_authenticate(raw) == key
    listing = text(client.get("/accounts/api-keys/"))
    assert key.prefix in listing and raw not in listing


def test_api_key_expiry_must_be_in_the_future(world, login):
    client = login("institution_admin")
    response = client.post("/accounts/api-keys/new/", {"institution": world.b.pk, "name": "LIS", "expires_on": "2020-01-01"})
    assert "有效期须晚于今天" in text(response)
    assert not ApiKey.objects.exists()
    tomorrow = timezone.localdate() + dt.timedelta(days=1)
    client.post("/accounts/api-keys/new/", {"institution": world.b.pk, "name": "LIS", "expires_on": tomorrow.isoformat()})
    assert timezone.localtime(ApiKey.objects.get().expires_at).date() == tomorrow


def test_api_key_revoke_and_filters(world, login):
    client = login("consortium_manager")
    client.post("/accounts/api-keys/new/", {"institution": world.b.pk, "name": "HIS"})
    client.post("/accounts/api-keys/new/", {"institution": world.a.pk, "name": "PACS"})
    his = ApiKey.objects.get(name="HIS")
    response = client.post(f"/accounts/api-keys/{his.uuid}/revoke/", follow=True)
    assert "已吊销" in text(response)
    his.refresh_from_db()
    assert his.revoked_at is not None
    assert ApiKey.objects.count() == 2  # revoked, not deleted
    usable = text(client.get("/accounts/api-keys/", {"status": "usable"}, headers=HTMX))
    assert ">PACS<" in usable and ">HIS<" not in usable
    revoked = text(client.get("/accounts/api-keys/", {"status": "revoked"}, headers=HTMX))
    assert ">HIS<" in revoked and ">PACS<" not in revoked
    by_institution = text(client.get("/accounts/api-keys/", {"institution": str(world.a.uuid)}, headers=HTMX))
    assert ">PACS<" in by_institution and ">HIS<" not in by_institution
    # The institution admin of B sees B's key only.
    own = text(login("institution_admin").get("/accounts/api-keys/"))
    assert ">HIS<" in own and ">PACS<" not in own


def test_api_key_list_has_bounded_queries(world, login, django_assert_max_num_queries):
    from yilian.accounts.actors import Actor
    from yilian.accounts.services import api_key_create
    from yilian.testing.matrix import client_for

    manager = world.user("consortium_manager")
    actor = Actor(user=manager, membership=manager.memberships.get())
    api_key_create(actor=actor, institution=world.a, name="首个系统")
    client = client_for(world, "consortium_manager")
    client.get("/accounts/api-keys/")
    with django_assert_max_num_queries(12) as small:
        client.get("/accounts/api-keys/")
    for i, institution in enumerate([world.a, world.b, world.c, world.v] * 4):
        api_key_create(actor=actor, institution=institution, name=f"系统{i}")
    with django_assert_max_num_queries(len(small.captured_queries)):
        assert client.get("/accounts/api-keys/").status_code == 200
