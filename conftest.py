"""Fixtures shared by every app: the persona world and logged-in clients."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.test import Client
from django.utils import translation

from yilian.accounts.selectors import memberships_cache_clear
from yilian.accounts.services import api_key_cache_clear
from yilian.testing.world import World, build_world


@pytest.fixture(autouse=True)
def _fresh_membership_cache() -> None:
    """Rolled-back tests reuse user ids (SQLite): no test sees another's cached memberships."""
    memberships_cache_clear()
    api_key_cache_clear()


@pytest.fixture(autouse=True)
def _default_language():  # type: ignore[no-untyped-def]
    """A request with the English cookie leaves English active in this thread (the middleware sets it
    per request and nothing resets it), so each test starts in the default language, whatever the
    test before it on the same worker asked for."""
    translation.activate(settings.LANGUAGE_CODE)
    yield
    translation.activate(settings.LANGUAGE_CODE)


@pytest.fixture
def world(db: None) -> World:
    return build_world()


@pytest.fixture
def login(world: World):  # type: ignore[no-untyped-def]
    """login("township_clinician") -> a Client logged in as that persona."""

    def _login(persona: str) -> Client:
        client = Client()
        client.force_login(world.user(persona))
        return client

    return _login
