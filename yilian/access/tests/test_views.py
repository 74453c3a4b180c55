"""Privacy pages through HTTP: break-glass review and the access log."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from yilian.access.models import AccessGrant, AccessLog, ReviewOutcome
from yilian.access.services import break_glass_open
from yilian.accounts.actors import Actor
from yilian.accounts.roles import Role
from yilian.accounts.selectors import current_memberships
from yilian.patients.access import access_patient
from yilian.testing.matrix import Endpoint, run_matrix
from yilian.testing.world import PERSONAS, add_membership, make_user

WITH_OFFICER = (*PERSONAS, "privacy_officer")


def acting(world, persona: str) -> Actor:
    user = world.user(persona)
    return Actor(user=user, membership=current_memberships(user)[0], ip_address="10.1.2.3")


@pytest.fixture
def glass(world) -> AccessGrant:
    """The lead clinician broke the glass for the township's patient 黄美玲."""
    return break_glass_open(
        actor=acting(world, "lead_clinician"), patient=world.patients["at_b"], reason="急诊昏迷，需查既往病史", hours=2
    )


def test_review_lists_pending_first(login, world, glass) -> None:
    reviewed = break_glass_open(
        actor=acting(world, "lead_clinician"), patient=world.patients["at_v"], reason="胸痛急诊，查用药史", hours=1
    )
    AccessGrant.objects.filter(pk=reviewed.pk).update(reviewed_at=timezone.now(), review_outcome=ReviewOutcome.JUSTIFIED)
    client = login("privacy_officer")
    pending = client.get("/access/review/")
    assert pending.status_code == 200
    assert [g.pk for g in pending.context["page_obj"]] == [glass.pk]
    assert pending.context["pending_count"] == 1
    body = pending.content.decode()
    assert "急诊昏迷，需查既往病史" in body and "李志强" in body and "4407**********0029" in body
    assert "440781196205120029" not in body
    everything = client.get("/access/review/?show=all")
    assert [g.pk for g in everything.context["page_obj"]] == [glass.pk, reviewed.pk]


def test_review_page_matrix(world, glass) -> None:
    run_matrix(
        world,
        Endpoint("GET", lambda w: "/access/review/"),
        allowed={"privacy_officer": 200},
        denied_status={"anonymous": 302, **{p: 403 for p in PERSONAS if p != "anonymous"}},
        personas=WITH_OFFICER,
    )


def test_justified_verdict_with_htmx_returns_the_row(login, world, glass) -> None:
    response = login("privacy_officer").post(
        f"/access/review/{glass.uuid}/", {"outcome": "justified", "note": "确为急诊"}, headers={"HX-Request": "true"}
    )
    assert response.status_code == 200
    body = response.content.decode()
    assert "<html" not in body and f'id="grant-{glass.uuid}"' in body and "合理" in body and "确为急诊" in body
    glass.refresh_from_db()
    assert (glass.review_outcome, glass.reviewed_by, glass.revoked_at) == ("justified", world.user("privacy_officer"), None)


def test_unjustified_verdict_needs_a_note_and_revokes(login, world, glass) -> None:
    client = login("privacy_officer")
    missing_note = client.post(f"/access/review/{glass.uuid}/", {"outcome": "unjustified"}, headers={"HX-Request": "true"})
    assert "认定不合理时请填写审核意见。" in missing_note.content.decode()
    glass.refresh_from_db()
    assert glass.reviewed_at is None
    response = client.post(f"/access/review/{glass.uuid}/", {"outcome": "unjustified", "note": "非本人接诊患者"})
    assert response.status_code == 302 and response["Location"] == "/access/review/"
    glass.refresh_from_db()
    assert glass.review_outcome == "unjustified" and glass.revoked_at is not None
    # The revoked grant no longer opens the record.
    with pytest.raises(Exception, match="未找到"):
        access_patient(acting(world, "lead_clinician"), world.patients["at_b"].uuid)


def test_a_verdict_is_given_once(login, world, glass) -> None:
    client = login("privacy_officer")
    client.post(f"/access/review/{glass.uuid}/", {"outcome": "justified"})
    again = client.post(f"/access/review/{glass.uuid}/", {"outcome": "unjustified", "note": "改判"}, follow=True)
    assert "该紧急授权已审核。" in again.content.decode()
    glass.refresh_from_db()
    assert glass.review_outcome == "justified"


def test_privacy_officer_of_another_institution_cannot_review(client, world, glass) -> None:
    officer = make_user("privacy_t", "中医院隐私专员")
    add_membership(officer, Role.PRIVACY_OFFICER, institution=world.t)
    client.force_login(officer)
    assert client.get("/access/review/").context["page_obj"].paginator.count == 0
    assert client.post(f"/access/review/{glass.uuid}/", {"outcome": "justified"}).status_code == 404
    glass.refresh_from_db()
    assert glass.reviewed_at is None


def test_review_decide_matrix(world, glass) -> None:
    run_matrix(
        world,
        Endpoint("POST", lambda w: f"/access/review/{glass.uuid}/", data=lambda w: {"outcome": "justified"}),
        allowed={"privacy_officer": 302},
        denied_status={"anonymous": 302, **{p: 403 for p in PERSONAS if p != "anonymous"}},
        personas=WITH_OFFICER,
    )
    glass.refresh_from_db()
    assert glass.reviewed_by == world.user("privacy_officer")


# --- access log -----------------------------------------------------------------------------


@pytest.fixture
def reads(world, glass) -> None:
    """The township clinician and (through break-glass) the lead clinician read 黄美玲's record."""
    access_patient(acting(world, "township_clinician"), world.patients["at_b"].uuid)
    access_patient(acting(world, "lead_clinician"), world.patients["at_b"].uuid)
    access_patient(acting(world, "lead_clinician"), world.patients["at_a"].uuid)
    access_patient(acting(world, "other_consortium_user"), world.patients["at_t"].uuid)


def test_access_log_shows_my_institutions_rows(login, world, reads) -> None:
    response = login("privacy_officer").get("/access/log/")
    assert response.status_code == 200
    rows = list(response.context["page_obj"])
    # The officer is at A: reads by A's staff, and reads of A's patients; not T's business.
    assert {(r.actor_name, r.patient.name) for r in rows} == {("李志强", "黄美玲"), ("李志强", "伍国华")}
    body = response.content.decode()
    assert "紧急授权（破窗）" in body and "10.1.2.3" in body and "临床医生" in body


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"id_number": "440781 195803070012"}, {"伍国华"}),
        ({"user": "李志"}, {"伍国华", "黄美玲"}),
        ({"user": "lead_clinician"}, {"伍国华", "黄美玲"}),
        ({"user": "黄晓敏"}, set()),
    ],
)
def test_access_log_filters(login, world, reads, params, expected) -> None:
    response = login("privacy_officer").get("/access/log/", params)
    assert {r.patient.name for r in response.context["page_obj"]} == expected


def test_access_log_date_filter_uses_local_days(login, world, reads) -> None:
    today = timezone.localdate()
    AccessLog.objects.filter(patient=world.patients["at_a"]).update(
        at=timezone.make_aware(dt.datetime.combine(today - dt.timedelta(days=3), dt.time(0, 30)))
    )
    client = login("privacy_officer")
    only_today = client.get("/access/log/", {"date_from": today.isoformat(), "date_to": today.isoformat()})
    assert {r.patient.name for r in only_today.context["page_obj"]} == {"黄美玲"}
    that_day = (today - dt.timedelta(days=3)).isoformat()
    back_then = client.get("/access/log/", {"date_from": that_day, "date_to": that_day})
    assert {r.patient.name for r in back_then.context["page_obj"]} == {"伍国华"}
    backwards = client.get("/access/log/", {"date_from": today.isoformat(), "date_to": that_day})
    assert "结束日期不能早于开始日期。" in backwards.content.decode()
    assert list(backwards.context["page_obj"]) == []


def test_access_log_matrix(world, reads) -> None:
    run_matrix(
        world,
        Endpoint("GET", lambda w: "/access/log/"),
        allowed={"privacy_officer": 200},
        denied_status={"anonymous": 302, **{p: 403 for p in PERSONAS if p != "anonymous"}},
        personas=WITH_OFFICER,
    )
