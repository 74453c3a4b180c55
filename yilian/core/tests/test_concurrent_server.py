"""The server keeps answering while many clients write at once: no 5xx, nothing lost.

A real threaded live server and real HTTP clients; on SQLite the writers queue on the database
lock (IMMEDIATE transactions, busy timeout), on PostgreSQL they run side by side."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from django.conf import settings
from django.test import Client

from yilian.organizations.models import Department
from yilian.testing.world import build_world

CLIENTS = 12
WRITES_PER_CLIENT = 6


def session_client(base: str, user) -> httpx.Client:  # type: ignore[no-untyped-def]
    django_client = Client()
    django_client.force_login(user)
    session = django_client.cookies[settings.SESSION_COOKIE_NAME].value
    client = httpx.Client(base_url=base, cookies={settings.SESSION_COOKIE_NAME: session}, timeout=60)
    client.get("/")  # sets the CSRF cookie
    client.headers["X-CSRFToken"] = client.cookies.get(settings.CSRF_COOKIE_NAME) or ""
    client.headers["Referer"] = base + "/"
    return client


@pytest.mark.django_db(transaction=True)
def test_concurrent_writes_get_answers_not_errors(live_server) -> None:
    world = build_world()
    manager = world.user("institution_admin")
    url = f"/api/v1/institutions/{world.b.uuid}/departments"
    barrier = threading.Barrier(CLIENTS)

    def writer(i: int) -> list[int]:
        client = session_client(live_server.url, manager)
        try:
            barrier.wait()
            statuses = []
            for j in range(WRITES_PER_CLIENT):
                # Half the codes are shared between two clients: one of each pair must lose cleanly.
                code = f"9{(i // 2) if j % 2 else i:02d}{j}"
                response = client.post(url, json={"name": f"并发科室{i}-{j}", "code": code})
                statuses.append(response.status_code)
            return statuses
        finally:
            client.close()

    with ThreadPoolExecutor(CLIENTS) as pool:
        statuses = [s for result in pool.map(writer, range(CLIENTS)) for s in result]

    assert len(statuses) == CLIENTS * WRITES_PER_CLIENT
    assert not [s for s in statuses if s >= 500], statuses
    assert set(statuses) <= {201, 409, 422}, statuses
    assert statuses.count(201) == Department.objects.filter(institution=world.b, name__startswith="并发科室").count()
    assert statuses.count(201) == Department.objects.filter(institution=world.b, code__startswith="9").count()
    assert statuses.count(409) + statuses.count(422) > 0  # the shared codes did collide
    reader = session_client(live_server.url, manager)
    assert reader.get(url).status_code == 200
    reader.close()
