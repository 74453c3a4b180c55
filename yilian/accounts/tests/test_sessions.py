"""The plain-SQL session store and user backend keep Django's rules: an expired or deleted session
and an inactive user are signed out."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib.sessions.models import Session
from django.utils import timezone

from yilian.accounts.models import User
from yilian.accounts.sessions import AuthBackend, SessionStore
from yilian.testing.world import World

pytestmark = pytest.mark.django_db


def _signed_in(client) -> bool:  # type: ignore[no-untyped-def]
    return client.get("/api/v1/me").status_code == 200


def test_a_session_reads_back_and_an_unknown_key_is_empty() -> None:
    store = SessionStore()
    store["note"] = "县医院"
    store.save()
    assert SessionStore(session_key=store.session_key).load() == {"note": "县医院"}
    missing = SessionStore(session_key="x" * 32)
    assert missing.load() == {} and missing.session_key is None


def test_expired_and_deleted_sessions_sign_out(world: World, login) -> None:  # type: ignore[no-untyped-def]
    client = login("township_clinician")
    assert _signed_in(client)
    key = client.cookies["sessionid"].value
    Session.objects.filter(session_key=key).update(expire_date=timezone.now() - dt.timedelta(seconds=1))
    assert not _signed_in(client)
    client = login("township_clinician")
    assert _signed_in(client)
    Session.objects.filter(session_key=client.cookies["sessionid"].value).delete()
    assert not _signed_in(client)


def test_an_inactive_user_is_signed_out(world: World, login) -> None:  # type: ignore[no-untyped-def]
    client = login("township_clinician")
    assert _signed_in(client)
    User.objects.filter(pk=world.user("township_clinician").pk).update(is_active=False)
    assert not _signed_in(client)
    assert AuthBackend().get_user(world.user("township_clinician").pk) is None
    assert AuthBackend().get_user("not a number") is None
    assert AuthBackend().get_user(10**9) is None
