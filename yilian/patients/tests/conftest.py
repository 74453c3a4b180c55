"""Fixtures for the master patient index tests."""

from __future__ import annotations

import pytest

from yilian.accounts.actors import Actor
from yilian.accounts.selectors import current_memberships
from yilian.testing.world import World


@pytest.fixture
def actor_of(world: World):  # type: ignore[no-untyped-def]
    """actor_of("institution_admin") -> the persona's Actor through its first membership."""

    def _actor(persona: str) -> Actor:
        user = world.user(persona)
        memberships = current_memberships(user)
        return Actor(user=user, membership=memberships[0] if memberships else None, ip_address="10.0.0.9")

    return _actor
