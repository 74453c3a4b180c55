"""The inbox pages: only my notifications, paginated; mark read (htmx or plain) and mark all read."""

from __future__ import annotations

from yilian.notifications.models import Notification, NotificationKind
from yilian.testing.matrix import Endpoint, run_matrix
from yilian.testing.world import PERSONAS

LOGGED_IN = tuple(p for p in PERSONAS if p != "anonymous")
NOT_TOWNSHIP = tuple(p for p in LOGGED_IN if p != "township_clinician")


def notify(user, title: str, **extra) -> Notification:  # type: ignore[no-untyped-def]
    return Notification.objects.create(recipient=user, kind=NotificationKind.SYSTEM, title=title, **extra)


def test_list_shows_only_my_notifications_paginated(login, world) -> None:
    me = world.user("township_clinician")
    for n in range(25):
        notify(me, f"通知{n:02d}")
    notify(world.user("lead_clinician"), "别人的通知")
    client = login("township_clinician")
    first = client.get("/inbox/")
    assert first.status_code == 200
    titles = [n.title for n in first.context["page_obj"]]
    assert len(titles) == 20 and titles[0] == "通知24"
    second = client.get("/inbox/?page=2")
    assert [n.title for n in second.context["page_obj"]][-1] == "通知00"
    assert "别人的通知" not in first.content.decode() + second.content.decode()
    assert "共 25 条，第 1 / 2 页" in first.content.decode()


def test_unread_filter(login, world) -> None:
    me = world.user("township_clinician")
    notify(me, "未读的")
    notify(me, "读过的", read_at="2026-01-01T00:00:00+08:00")
    body = login("township_clinician").get("/inbox/?show=unread").content.decode()
    assert "未读的" in body and "读过的" not in body


def test_mark_read_with_htmx_returns_the_row_and_the_bell(login, world) -> None:
    me = world.user("township_clinician")
    first, second = notify(me, "第一条"), notify(me, "第二条")
    response = login("township_clinician").post(f"/inbox/{first.pk}/read/", headers={"HX-Request": "true"})
    assert response.status_code == 200
    body = response.content.decode()
    assert "<html" not in body
    assert f'id="notification-{first.pk}"' in body and "inbox-item read" in body
    assert 'id="notification-bell" hx-swap-oob="true"' in body and 'data-testid="unread-count">1<' in body
    first.refresh_from_db()
    second.refresh_from_db()
    assert first.read_at is not None and second.read_at is None


def test_mark_read_without_htmx_redirects_back(login, world) -> None:
    item = notify(world.user("township_clinician"), "一条")
    response = login("township_clinician").post(f"/inbox/{item.pk}/read/", {"next": "/"})
    assert response.status_code == 302 and response["Location"] == "/"
    item.refresh_from_db()
    assert item.read_at is not None


def test_mark_read_is_post_only(login, world) -> None:
    item = notify(world.user("township_clinician"), "一条")
    assert login("township_clinician").get(f"/inbox/{item.pk}/read/").status_code == 405


def test_mark_read_matrix_only_the_recipient(world) -> None:
    item = notify(world.user("township_clinician"), "只给黄晓敏")
    run_matrix(
        world,
        Endpoint("POST", lambda w: f"/inbox/{item.pk}/read/"),
        allowed={"township_clinician": 302},
        denied_status={
            "anonymous": 302,
            **dict.fromkeys(NOT_TOWNSHIP, 404),
        },
    )


def test_mark_all_read_touches_only_mine(login, world) -> None:
    me, other = world.user("township_clinician"), world.user("lead_clinician")
    for n in range(3):
        notify(me, f"我的{n}")
    theirs = notify(other, "别人的")
    response = login("township_clinician").post("/inbox/read-all/")
    assert response.status_code == 302
    assert not Notification.objects.filter(recipient=me, read_at__isnull=True).exists()
    theirs.refresh_from_db()
    assert theirs.read_at is None


def test_inbox_matrix(world) -> None:
    run_matrix(
        world,
        Endpoint("GET", lambda w: "/inbox/"),
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
