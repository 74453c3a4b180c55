"""Portal fixtures: an empty console outbox for every test; residents from the shared world."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from yilian.notifications.sms import ConsoleSmsGateway


@pytest.fixture(autouse=True)
def empty_outbox() -> Iterator[None]:
    ConsoleSmsGateway.clear()
    yield
    ConsoleSmsGateway.clear()
