"""Login with lockout, logout, and the institution switcher, through HTTP."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone

from yilian.accounts.middleware import ACTING_MEMBERSHIP_SESSION_KEY
from yilian.accounts.models import Membership, User
from yilian.testing.matrix import Endpoint, run_matrix
from yilian.testing.world import PASSWORD

LOGIN = "/accounts/login/"


def post_login(client: Client, username: str, password: str, **extra: str):  # type: ignore[no-untyped-def]
    return client.post(LOGIN, {"username": username, "password": password, **extra})


def test_login_page_is_chinese(client: Client, world) -> None:
    response = client.get(LOGIN)
    assert response.status_code == 200
    body = response.content.decode()
    assert "医联体协同平台" in body and "账号登录" in body


def test_pages_send_anonymous_visitors_to_login(client: Client, world) -> None:
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=/"


def test_right_password_logs_in_and_goes_home(client: Client, world) -> None:
    response = post_login(client, "township_clinician", PASSWORD)
    assert response.status_code == 302 and response["Location"] == "/"
    assert client.get("/").context["user"] == world.user("township_clinician")


def test_next_is_followed_only_within_the_site(client: Client, world) -> None:
    assert post_login(client, "township_clinician", PASSWORD, next="/patients/")["Location"] == "/patients/"
    other = Client()
    assert post_login(other, "township_clinician", PASSWORD, next="https://evil.example/")["Location"] == "/"


def test_wrong_password_and_unknown_user_get_the_same_answer(client: Client, world) -> None:
    wrong = post_login(client, "township_clinician", "nope-nope-nope")
    unknown = post_login(client, "nobody_here", "nope-nope-nope")
    for response in (wrong, unknown):
        assert response.status_code == 200
        assert "用户名或密码错误。" in response.content.decode()
    assert User.objects.get(username="township_clinician").failed_login_count == 1
    assert "_auth_user_id" not in client.session


def test_lockout_after_repeated_failures_then_unlock(client: Client, world) -> None:
    assert settings.LOGIN_FAILURE_LIMIT == 5
    for _attempt in range(settings.LOGIN_FAILURE_LIMIT - 1):
        assert "用户名或密码错误。" in post_login(client, "township_clinician", "wrong-password-1").content.decode()
    fifth = post_login(client, "township_clinician", "wrong-password-1").content.decode()
    user = User.objects.get(username="township_clinician")
    assert user.locked_until is not None and user.locked_until > timezone.now()
    shown = timezone.localtime(user.locked_until, ZoneInfo("Asia/Shanghai")).strftime("%H:%M")
    assert f"账户已锁定，请于 {shown} 后重试" in fifth

    # Locked: even the right password is refused, and nobody is logged in.
    refused = post_login(client, "township_clinician", PASSWORD)
    assert refused.status_code == 200
    assert f"账户已锁定，请于 {shown} 后重试" in refused.content.decode()
    assert "_auth_user_id" not in client.session

    # The lock lapses: the right password works again and the counters are cleared.
    User.objects.filter(pk=user.pk).update(locked_until=timezone.now() - dt.timedelta(seconds=1))
    assert post_login(client, "township_clinician", PASSWORD).status_code == 302
    user.refresh_from_db()
    assert (user.failed_login_count, user.locked_until) == (0, None)


def test_logout_is_post_only(login) -> None:
    client = login("township_clinician")
    assert client.get("/accounts/logout/").status_code == 405
    assert client.get("/").status_code == 200
    response = client.post("/accounts/logout/")
    assert response.status_code == 302 and response["Location"] == "/accounts/login/"
    assert client.get("/").status_code == 302


def memberships_of(world, persona: str) -> dict[str, Membership]:
    memberships = Membership.objects.filter(user=world.user(persona), institution__isnull=False).select_related("institution")
    return {str(m.institution): m for m in memberships}


def test_switching_institution_changes_the_acting_membership(login, world) -> None:
    client = login("township_clinician")
    assert client.get("/").context["actor"].institution == world.b
    c = memberships_of(world, "township_clinician")["冲蒌镇卫生院"]
    response = client.post("/accounts/act-as/", {"membership": str(c.uuid), "next": "/patients/"})
    assert response.status_code == 302 and response["Location"] == "/patients/"
    assert client.session[ACTING_MEMBERSHIP_SESSION_KEY] == str(c.uuid)
    home = client.get("/")
    assert home.context["actor"].institution == world.c
    assert 'data-testid="acting-place">冲蒌镇卫生院<' in home.content.decode()


@pytest.mark.parametrize("which", ["someone_else", "ended", "garbage"])
def test_switching_to_a_membership_you_do_not_hold_is_not_found(login, world, which: str) -> None:
    client = login("township_clinician")
    client.get("/")
    if which == "someone_else":
        value = str(Membership.objects.get(user=world.user("lead_clinician")).uuid)
    elif which == "ended":
        ended = memberships_of(world, "township_clinician")["冲蒌镇卫生院"]
        Membership.objects.filter(pk=ended.pk).update(ended_on=timezone.localdate())
        value = str(ended.uuid)
    else:
        value = "not-a-uuid"
    assert client.post("/accounts/act-as/", {"membership": value}).status_code == 404
    assert ACTING_MEMBERSHIP_SESSION_KEY not in client.session
    assert client.get("/").context["actor"].institution == world.b


def test_act_as_matrix(world) -> None:
    c = memberships_of(world, "township_clinician")["冲蒌镇卫生院"]
    run_matrix(
        world,
        Endpoint("POST", lambda w: "/accounts/act-as/", data=lambda w: {"membership": str(c.uuid)}),
        allowed={"township_clinician": 302},
        denied_status={"anonymous": 302},
    )
