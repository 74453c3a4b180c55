"""The home page: a to-do inbox and a panel per persona, in a bounded number of queries."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.test import Client

from yilian.access.services import break_glass_open
from yilian.accounts.actors import Actor
from yilian.accounts.roles import Role
from yilian.accounts.selectors import current_memberships
from yilian.notifications.models import Notification, NotificationKind
from yilian.organizations.models import (
    Consortium,
    ConsortiumMembership,
    Institution,
    InstitutionKind,
    ServiceGrid,
)
from yilian.testing.matrix import Endpoint, run_matrix
from yilian.testing.world import PERSONAS, START, add_membership

PATIENT_NAMES = ("伍国华", "黄美玲", "陈大明", "甄伟")
# Session, user, memberships, unread counter, inbox, and the panel's own aggregate queries.
MAX_HOME_QUERIES = 12

LOGGED_IN = tuple(p for p in PERSONAS if p != "anonymous")
NOT_TOWNSHIP = tuple(p for p in LOGGED_IN if p != "township_clinician")


def home(client: Client) -> tuple[str, Any]:
    response = client.get("/")
    assert response.status_code == 200
    return response.content.decode(), response.context


def acting(world, persona: str) -> Actor:
    user = world.user(persona)
    return Actor(user=user, membership=current_memberships(user)[0])


def test_home_matrix(world) -> None:
    run_matrix(
        world,
        Endpoint("GET", lambda w: "/"),
        allowed=dict.fromkeys(
            (
                "lead_clinician",
                "township_clinician",
                "village_doctor",
                "consortium_manager",
                "bureau_supervisor",
                "other_consortium_user",
            ),
            200,
        ),
        denied_status={"anonymous": 302},
    )


def test_inbox_shows_my_unread_notifications_newest_first(login, world) -> None:
    me, other = world.user("township_clinician"), world.user("lead_clinician")
    older = Notification.objects.create(recipient=me, kind=NotificationKind.SYSTEM, title="较早的通知")
    newer = Notification.objects.create(recipient=me, kind=NotificationKind.SYSTEM, title="较新的通知")
    Notification.objects.filter(pk=older.pk).update(created_at=newer.created_at - dt.timedelta(hours=1))
    Notification.objects.create(recipient=me, kind=NotificationKind.SYSTEM, title="已读的通知", read_at=newer.created_at)
    Notification.objects.create(recipient=other, kind=NotificationKind.SYSTEM, title="别人的通知")
    body, context = home(login("township_clinician"))
    assert [n.title for n in context["inbox"]] == ["较新的通知", "较早的通知"]
    assert "已读的通知" not in body and "别人的通知" not in body
    assert f'hx-post="/inbox/{newer.pk}/read/"' in body


def test_clinician_panel_counts_residents_held_and_offers_search(login, world, django_assert_max_num_queries) -> None:
    client = login("township_clinician")
    with django_assert_max_num_queries(MAX_HOME_QUERIES):
        body, context = home(client)
    assert context["panel"] == "clinical"
    assert context["residents_held"] == 2  # 黄美玲 at B and 陈大明 at its village clinic V
    assert 'action="/patients/"' in body and 'name="q"' in body
    _lead_body, lead_context = home(login("lead_clinician"))
    assert lead_context["residents_held"] == 1


def test_referral_coordinator_sees_institution_and_departments(client: Client, world, django_assert_max_num_queries) -> None:
    coordinator = world.user("hr_officer")  # any user; give them a coordinator membership at A
    coordinator.memberships.all().delete()
    add_membership(coordinator, Role.REFERRAL_COORDINATOR, institution=world.a)
    client.force_login(coordinator)
    with django_assert_max_num_queries(MAX_HOME_QUERIES):
        body, context = home(client)
    assert context["panel"] == "coordinator"
    summary = context["summary"]
    assert summary.institution == world.a
    assert [(d.name, d.beds, d.staff_count) for d in summary.departments] == [("心血管内科", 60, 1)]
    assert summary.residents_held == 1
    assert "心血管内科" in body and "台山市人民医院" in body


def test_consortium_manager_sees_consortium_summary(login, world, django_assert_max_num_queries) -> None:
    client = login("consortium_manager")
    with django_assert_max_num_queries(MAX_HOME_QUERIES):
        body, context = home(client)
    assert context["panel"] == "consortium"
    [k1] = context["consortia"]
    assert k1.consortium == world.k1
    assert k1.member_count == 4 and k1.primary_member_count == 3
    assert dict(k1.members_by_kind) == {"综合医院": 1, "乡镇卫生院": 2, "村卫生室": 1}
    # Staff of A, B, C, V in force today: lead, township (B and C, counted once), village doctor,
    # manager, institution admin, privacy officer, HR officer.
    assert k1.staff_count == 7
    assert (k1.grid_count, k1.population) == (1, 2380)
    assert [c.get_kind_display() for c in k1.centres] == [
        "行政管理中心",
        "人力资源中心",
        "财务管理中心",
        "质量管理中心",
        "药械管理中心",
        "信息管理中心",
    ]
    assert {c.host_institution.name for c in k1.centres} == {"台山市人民医院"}
    assert len(k1.centres) == 6
    assert "六统一管理中心" in body and "2,380" in body
    assert not any(name in body for name in PATIENT_NAMES)


def test_hr_officer_gets_the_consortium_panel(login, world) -> None:
    _body, context = home(login("hr_officer"))
    assert context["panel"] == "consortium" and [s.consortium for s in context["consortia"]] == [world.k1]


def test_bureau_supervisor_sees_every_consortium_without_identities(login, world, django_assert_max_num_queries) -> None:
    client = login("bureau_supervisor")
    with django_assert_max_num_queries(MAX_HOME_QUERIES):
        body, context = home(client)
    assert context["panel"] == "bureau"
    rows = {s.consortium.name: (s.member_count, s.grid_count, s.population) for s in context["consortia"]}
    assert rows == {"台山市人民医院医疗卫生共同体": (4, 1, 2380), "台山市中医院医疗卫生共同体": (2, 0, 0)}
    assert context["totals"]["member_count"] == 6
    assert not any(name in body for name in PATIENT_NAMES)
    assert "440781" not in body.replace('440781"', "")  # no ID numbers (the bureau's own division code aside)


def test_bureau_query_count_does_not_grow_with_consortia(login, world, django_assert_max_num_queries) -> None:
    client = login("bureau_supervisor")
    with django_assert_max_num_queries(MAX_HOME_QUERIES) as before:
        home(client)
    for n in range(5):
        lead = Institution.objects.create(authority=world.authority, name=f"测试医院{n}", kind=InstitutionKind.GENERAL_HOSPITAL)
        k = Consortium.objects.create(
            authority=world.authority, name=f"测试医共体{n}", lead_institution=lead, established_on=START
        )
        ConsortiumMembership.objects.create(consortium=k, institution=lead, role="lead", joined_on=START)
        ServiceGrid.objects.create(consortium=k, responsible_institution=lead, name=f"村{n}", town="某镇", population=100)
    with django_assert_max_num_queries(len(before.captured_queries)):
        _body, context = home(client)
    assert len(context["consortia"]) == 7


def test_privacy_officer_sees_pending_break_glass(login, world, django_capture_on_commit_callbacks) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        break_glass_open(
            actor=acting(world, "lead_clinician"), patient=world.patients["at_b"], reason="急诊昏迷，需查既往病史", hours=2
        )
    body, context = home(login("privacy_officer"))
    assert context["panel"] == "privacy"
    assert context["queue"].pending_count == 1
    assert "急诊昏迷，需查既往病史" in body and "李志强" in body
    assert 'data-testid="pending-reviews">1<' in body


def test_institution_admin_sees_own_institution(login, world, django_assert_max_num_queries) -> None:
    client = login("institution_admin")
    with django_assert_max_num_queries(MAX_HOME_QUERIES):
        body, context = home(client)
    assert context["panel"] == "institution"
    summary = context["summary"]
    assert summary.institution == world.b
    assert [c.name for c in summary.village_clinics] == ["水步镇石龙村卫生站"]
    assert (summary.grid_count, summary.population, summary.residents_held) == (1, 2380, 2)
    assert summary.staff_count == 2  # the township clinician and the institution admin
    assert "全科医学科" in body


def test_system_admin_gets_the_admin_link(login, world) -> None:
    body, context = home(login("system_admin"))
    assert context["panel"] == "system"
    assert 'href="/admin/"' in body
    assert context["counts"].institutions == 6


@pytest.mark.parametrize("persona", ["consortium_manager", "bureau_supervisor", "privacy_officer", "system_admin"])
def test_management_home_pages_do_not_offer_patient_search(login, world, persona: str) -> None:
    body, _context = home(login(persona))
    assert 'data-testid="quick-search"' not in body
