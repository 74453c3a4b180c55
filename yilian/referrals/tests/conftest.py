"""Fixtures of the referral tests."""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps


@pytest.fixture
def criteria(db: None) -> None:
    """The county-wide criteria catalogue. Seeded by a data migration, but a live-server (transactional)
    test flushes the tables after it runs, so tests that need the catalogue seed it again (idempotent)."""
    importlib.import_module("yilian.referrals.migrations.0002_seed_criteria").seed(apps, None)
