"""The per-process membership cache (accounts.selectors.current_memberships) never lets a change to
a membership wait: each request re-reads the deciding columns, even after an UPDATE that sends no
signal and from another process."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from yilian.accounts.models import Membership
from yilian.accounts.roles import Role
from yilian.organizations.models import Institution
from yilian.testing.world import World

pytestmark = pytest.mark.django_db


def _me(client) -> dict:  # type: ignore[no-untyped-def]
    response = client.get("/api/v1/me")
    assert response.status_code == 200
    return response.json()  # type: ignore[no-any-return]


def test_an_ended_membership_stops_at_once(world: World, login) -> None:  # type: ignore[no-untyped-def]
    client = login("township_clinician")
    assert _me(client)["acting_membership"]["role"] == Role.CLINICIAN
    _me(client)  # served from the cache now
    yesterday = timezone.localdate() - dt.timedelta(days=1)
    Membership.objects.filter(user=world.user("township_clinician")).update(ended_on=yesterday)  # no signal
    body = _me(client)
    assert body["acting_membership"] is None and body["memberships"] == [] and body["permissions"] == []


def test_a_changed_role_or_institution_applies_at_once(world: World, login) -> None:  # type: ignore[no-untyped-def]
    client = login("township_clinician")
    before = _me(client)["acting_membership"]
    Membership.objects.filter(uuid=before["id"]).update(role=Role.INSTITUTION_ADMIN, institution=world.t)
    after = _me(client)["acting_membership"]
    assert before["institution"]["id"] != str(world.t.uuid)
    assert after["role"] == Role.INSTITUTION_ADMIN and after["institution"]["id"] == str(world.t.uuid)


def test_a_renamed_institution_shows_after_a_save(world: World, login) -> None:  # type: ignore[no-untyped-def]
    client = login("township_clinician")
    institution_id = _me(client)["acting_membership"]["institution"]["id"]
    institution = Institution.objects.get(uuid=institution_id)
    institution.name = "台山市改名卫生院"
    institution.save()  # the save signal empties this process's cache
    assert _me(client)["acting_membership"]["institution"]["name"] == "台山市改名卫生院"


def test_a_membership_not_started_yet_is_not_used(world: World, login) -> None:  # type: ignore[no-untyped-def]
    client = login("township_clinician")
    _me(client)
    tomorrow = timezone.localdate() + dt.timedelta(days=1)
    Membership.objects.filter(user=world.user("township_clinician")).update(started_on=tomorrow)
    assert _me(client)["memberships"] == []
