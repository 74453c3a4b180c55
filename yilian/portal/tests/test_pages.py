"""The resident's pages: my summary and who looked at my record; isolation from staff sessions."""

from __future__ import annotations

import datetime as dt

import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone

from yilian.access.models import AccessAction, AccessGrant, AccessLog, GrantSource
from yilian.access.services import break_glass_open, break_glass_review, grant_issue, grant_revoke
from yilian.accounts.actors import Actor
from yilian.patients.access import access_patient, patients_listed
from yilian.patients.identities import IdentityData
from yilian.patients.models import MatchReview
from yilian.patients.services import identity_ingest
from yilian.portal.models import ResidentSession
from yilian.portal.testing import actor, force_resident_login, resident_client, run_portal_matrix
from yilian.testing.matrix import Endpoint


def _rows(body: str) -> list[str]:
    """The access-log entries of the page, one text each."""
    log = body[body.index('data-testid="access-log"') :]
    return log.split('data-testid="access-row"')[1:]


@pytest.fixture
def looked_at(world):  # type: ignore[no-untyped-def]
    """黄美玲 (at B) read by her township doctor, by a cardiologist at A through a referral grant and by
    break-glass; 伍国华 (at A) read by the cardiologist (must not show up in her log)."""
    her, him = world.patients["at_b"], world.patients["at_a"]
    access_patient(actor(world, "township_clinician", world.b), her.uuid)
    grant_issue(
        patient=her,
        source=GrantSource.REFERRAL,
        grantee_institution=world.a,
        source_reference="ZZ-2026-0001",
        expires_at=timezone.now() + dt.timedelta(days=30),
    )
    access_patient(actor(world, "lead_clinician"), her.uuid, action=AccessAction.VIEW_RECORD)
    break_glass_open(actor=actor(world, "other_consortium_user"), patient=her, reason="急诊昏迷，需查过敏史", hours=2)
    access_patient(actor(world, "other_consortium_user"), her.uuid, action=AccessAction.VIEW_RECORD)
    access_patient(actor(world, "lead_clinician"), him.uuid)
    patients_listed(actor(world, "lead_clinician"), [him])
    return her


def test_access_log_shows_exactly_this_residents_rows(world, looked_at) -> None:
    client = force_resident_login(looked_at)
    before = AccessLog.objects.count()
    response = client.get("/me/access-log/")
    assert response.status_code == 200
    body = response.content.decode()
    rows = _rows(body)
    assert len(rows) == AccessLog.objects.filter(patient=looked_at).count() == 3
    # Newest first: break-glass at 台山市中医院, then the referral, then her own township centre.
    assert "甄医生" in rows[0] and "中医院" in rows[0] and "紧急授权（破窗）" in rows[0] and 'data-break-glass="1"' in rows[0]
    assert "李志强" in rows[1] and "人民医院" in rows[1] and "心血管内科" in rows[1] and "转诊" in rows[1]
    assert "查看健康档案" in rows[1] and 'data-break-glass="1"' not in rows[1]
    assert "黄晓敏" in rows[2] and "水步镇卫生院" in rows[2] and "全科医学科" in rows[2] and "档案持有机构" in rows[2]
    assert "待隐私专员审核" in rows[0] and "审核" not in rows[1] + rows[2]
    assert "伍国华" not in body
    assert AccessLog.objects.count() == before  # reading one's own log is not logged as staff access


def test_a_reviewed_break_glass_shows_the_verdict(world, looked_at) -> None:
    grant = AccessGrant.objects.get(source=GrantSource.BREAK_GLASS)
    reviewer = Actor(user=world.user("system_admin"))  # no privacy officer at B or T in the world
    break_glass_review(actor=reviewer, grant=grant, outcome="justified", note="抢救属实")
    rows = _rows(force_resident_login(looked_at).get("/me/access-log/").content.decode())
    assert "隐私专员审核：合理" in rows[0] and "抢救属实" not in rows[0]


def test_access_log_times_are_shown_in_shanghai_time(world) -> None:
    her = world.patients["at_b"]
    access_patient(actor(world, "township_clinician", world.b), her.uuid)
    AccessLog.objects.update(at=dt.datetime(2026, 3, 1, 23, 30, tzinfo=dt.UTC))
    body = force_resident_login(her).get("/me/access-log/").content.decode()
    assert "2026-03-02 07:30" in body


def test_access_log_is_paginated_with_constant_queries(world, django_assert_num_queries) -> None:
    her = world.patients["at_b"]
    township = actor(world, "township_clinician", world.b)
    for _ in range(25):
        access_patient(township, her.uuid)
    client = force_resident_login(her)
    client.get("/me/access-log/")  # the session's first touch happens here
    with django_assert_num_queries(4):  # session, count, page, departments
        first = client.get("/me/access-log/")
    assert len(_rows(first.content.decode())) == 20
    assert "共 25 条，第 1 / 2 页" in first.content.decode()
    with django_assert_num_queries(4):
        second = client.get("/me/access-log/?page=2")
    assert len(_rows(second.content.decode())) == 5
    for absurd in ("?page=99999999999999999999", "?page_size=100000", "?page=abc&page_size=-3"):
        assert client.get(f"/me/access-log/{absurd}").status_code == 200


def test_empty_access_log(world) -> None:
    body = force_resident_login(world.patients["at_t"]).get("/me/access-log/").content.decode()
    assert "还没有医务人员查看过您的档案" in body


def test_summary_shows_demographics_holder_grid_doctor_and_grants(world, django_assert_num_queries) -> None:
    resident = world.patients["at_v"]  # 陈大明, held by the village clinic, grid 石龙村
    now = timezone.now()
    grant_issue(
        patient=resident,
        source=GrantSource.CONTRACT,
        grantee_institution=world.b,
        grantee_user=world.user("township_clinician"),
        source_reference="QY-2026-0042",
        expires_at=now + dt.timedelta(days=365),
    )
    grant_issue(patient=resident, source=GrantSource.REFERRAL, grantee_institution=world.a, expires_at=now + dt.timedelta(days=7))
    break_glass_open(actor=actor(world, "lead_clinician"), patient=resident, reason="夜间急诊胸痛，需查既往史")
    old = grant_issue(
        patient=resident, source=GrantSource.CONSULTATION, grantee_institution=world.t, expires_at=now + dt.timedelta(days=1)
    )
    AccessGrant.objects.filter(pk=old.pk).update(starts_at=now - dt.timedelta(days=3), expires_at=now - dt.timedelta(days=1))
    revoked = grant_issue(
        patient=resident, source=GrantSource.REFERRAL, grantee_institution=world.c, expires_at=now + dt.timedelta(days=1)
    )
    grant_revoke(grant=revoked, revoked_by=None)
    grant_issue(
        patient=world.patients["at_b"],
        source=GrantSource.REFERRAL,
        grantee_institution=world.d,
        expires_at=now + dt.timedelta(days=1),
    )

    client = force_resident_login(resident)
    client.get("/me/")
    with django_assert_num_queries(5):  # session, patient, grants, encounter count (none, so no page), referrals
        response = client.get("/me/")
    body = response.content.decode()
    assert "陈大明" in body and "4407**********0033" in body and resident.id_number not in body
    assert "138****0000" in body and "13800000000" not in body
    assert "水步镇石龙村卫生站" in body and "石龙村" in body
    family_doctor = body[body.index('data-testid="family-doctor"') :]
    assert family_doctor.index("黄晓敏") < family_doctor.index("</dd>")
    grants = body[body.index('data-testid="grants"') :]
    assert grants.count('data-testid="grant"') == 3
    assert "台山市人民医院" in grants or "人民医院" in grants
    assert "QY-2026-0042" in grants and "家庭医生签约" in grants and "紧急授权（破窗）" in grants
    assert "夜间急诊胸痛" in grants  # the reason of a break-glass is the resident's to read
    assert "中医院" not in grants and "冲蒌镇卫生院" not in grants and "大江镇卫生院" not in grants
    assert "暂无就诊记录" in body


def test_summary_shows_recent_encounters_from_every_member(world, django_assert_num_queries) -> None:
    from yilian.records.testing import make_identity, make_visit

    resident, other = world.patients["at_b"], world.patients["at_a"]
    at_b, at_a = make_identity(resident, world.b), make_identity(resident, world.a)
    for n in range(6):
        make_visit(at_b, f"B-{n}", days_ago=10 + n)
    make_visit(at_a, "A-1", days_ago=1)
    make_visit(make_identity(other, world.a), "A-other", days_ago=2)
    client = force_resident_login(resident)
    client.get("/me/")
    with django_assert_num_queries(7):  # session, patient, grants, count, page, encounters, referrals
        body = client.get("/me/").content.decode()
    encounters = body[body.index('data-testid="encounter"') : body.index('data-testid="grants"')]
    assert encounters.count('data-testid="encounter"') == 5  # the five most recent
    assert encounters.index("台山市人民医院") < encounters.index("水步镇卫生院")  # newest first, from every member
    assert "门诊" in encounters and "王医生" in encounters
    assert AccessLog.objects.count() == 0


def test_summary_without_grants_or_doctor(world) -> None:
    body = force_resident_login(world.patients["at_t"]).get("/me/").content.decode()
    assert "尚未签约" in body and "目前没有其他机构获得授权" in body


def test_pages_in_english(world) -> None:
    client = force_resident_login(world.patients["at_b"])
    client.post("/i18n/setlang/", {"language": "en", "next": "/me/"})
    body = client.get("/me/").content.decode()
    assert 'lang="en"' in body
    assert "My record" in body and "Who looked at my record" in body and "Log out" in body
    body = client.get("/me/access-log/").content.decode()
    assert "No member of staff has looked at your record yet." in body
    sign_in = Client()
    sign_in.cookies["django_language"] = "en"
    response = sign_in.post("/me/sign-in/", {"phone": "13800000000", "id_number": "440781196205120028"})
    assert "Resident sign-in" in response.content.decode() and "check character is wrong" in response.content.decode()


# --- authorisation: staff personas and residents × portal pages -----------------------------


@pytest.mark.parametrize("path", ["/me/", "/me/access-log/"])
def test_resident_pages_matrix(world, path) -> None:
    results = run_portal_matrix(
        world,
        Endpoint("GET", lambda w: path),
        allowed={"resident": 200, "other_resident": 200},
        residents={"resident": world.patients["at_b"], "other_resident": world.patients["at_t"]},
    )
    assert results["lead_clinician"] == results["anonymous"] == 302


def test_sign_out_matrix(world) -> None:
    """Signing out ends only the caller's own resident session; staff sessions are untouched."""
    run_portal_matrix(
        world,
        Endpoint("POST", lambda w: "/me/sign-out/"),
        allowed=dict.fromkeys(("resident", "other_resident"), 302),
        residents={"resident": world.patients["at_b"], "other_resident": world.patients["at_t"]},
    )
    assert ResidentSession.objects.filter(ended_at__isnull=True).count() == 0
    staff = Client()
    staff.force_login(world.user("township_clinician"))
    resident = force_resident_login(world.patients["at_b"])
    staff.post("/me/sign-out/")
    assert staff.get("/patients/").status_code == 200  # a staff session is not a resident session to end
    assert resident.get("/me/").status_code == 200


@pytest.mark.parametrize("path", ["/", "/patients/", "/structure/institutions/", "/access/log/", "/inbox/", "/admin/"])
def test_a_resident_session_opens_no_staff_page(world, path) -> None:
    client = resident_client(world.patients["at_b"])
    response = client.get(path)
    assert response.status_code == 302 and ("/accounts/login/" in response["Location"] or "/admin/login/" in response["Location"])


def test_a_resident_session_opens_no_api(world) -> None:
    client = resident_client(world.patients["at_b"])
    for path in ("/api/v1/patients", "/api/v1/institutions"):
        assert client.get(path).status_code == 401


def test_a_staff_session_opens_no_resident_page(world) -> None:
    """Even a clinician who holds the resident's record, and a system administrator, get the portal's sign-in page."""
    for persona in ("township_clinician", "system_admin", "privacy_officer"):
        client = Client()
        client.force_login(world.user(persona))
        for path in ("/me/", "/me/access-log/"):
            assert client.get(path)["Location"] == "/me/sign-in/"


def test_one_browser_with_both_sessions_keeps_them_apart(world) -> None:
    """A shared computer: a clinician is logged in and a resident signs in beside them. Each page
    sees only its own kind of session, and signing out of one leaves the other."""
    client = Client()
    client.force_login(world.user("township_clinician"))
    resident_client(world.patients["at_t"], client)
    body = client.get("/me/").content.decode()
    assert "甄伟" in body and "黄晓敏" not in body and "main-nav" not in body
    assert "甄伟" not in client.get("/").content.decode()
    client.post("/me/sign-out/")
    assert client.get("/me/")["Location"] == "/me/sign-in/"
    assert client.get("/").status_code == 200
    client.post("/accounts/logout/")
    resident_client(world.patients["at_a"], client)
    assert client.get("/")["Location"].startswith("/accounts/login/")
    assert client.get("/me/").status_code == 200


@pytest.mark.parametrize("path", ["/me/sign-in/", "/me/sign-in/code/"])
def test_sign_in_pages_are_public_and_write_nothing(world, path) -> None:
    """Anyone may open the sign-in page (a resident already signed in goes to their summary); the
    code page without a pending code sends everyone back to it."""
    expected = 200 if path == "/me/sign-in/" else 302
    results = run_portal_matrix(
        world,
        Endpoint("GET", lambda w: path),
        allowed={"anonymous": expected, "lead_clinician": expected, "resident": 302},
        residents={"resident": world.patients["at_b"]},
        personas=("anonymous", "lead_clinician"),
    )
    assert results == {"anonymous": expected, "lead_clinician": expected, "resident": 302}


def test_demo_prints_a_resident_who_can_sign_in(world) -> None:
    from io import StringIO

    from django.core.management import call_command

    access_patient(actor(world, "other_consortium_user"), world.patients["at_t"].uuid)
    out = StringIO()
    call_command("portal_try", "--url", "http://127.0.0.1:8123/me/", stdout=out)
    text = out.getvalue()
    assert "http://127.0.0.1:8123/me/" in text
    assert "甄伟" in text and "13800000000" in text and "440781198811110014" in text  # the one staff have read


def test_a_review_queue_read_is_labelled_as_such(world, login) -> None:  # type: ignore[no-untyped-def]
    her = world.patients["at_b"]
    outcome = identity_ingest(
        institution=world.c, data=IdentityData(local_id="C-1", name="黄美玲", birth_date=dt.date(1958, 3, 7))
    )
    review = MatchReview.objects.get(identity=outcome.identity, candidate=her)
    assert login("consortium_manager").get(f"/patients/review/{review.uuid}/").status_code == 200
    client = force_resident_login(her)
    (row,) = _rows(client.get("/me/access-log/").content.decode())
    assert "梁主任" in row and "人民医院" in row and "主索引审核：核对重复档案" in row and "档案持有机构" not in row
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "en"
    (row,) = _rows(client.get("/me/access-log/").content.decode())
    assert "Patient index review: checking for duplicate records" in row
