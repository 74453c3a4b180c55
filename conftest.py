"""Fixtures shared by every app: the persona world and logged-in clients."""

from __future__ import annotations

import pytest
from django.test import Client

from yilian.testing.world import World, build_world


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
