"""Racing writers: database constraints decide, and losers get a ValidationError, never a 500."""

from __future__ import annotations

import threading

import pytest
from django.core.exceptions import ValidationError
from django.db import connection

from yilian.accounts.actors import Actor
from yilian.core.validators import credit_code_check_character
from yilian.organizations.models import Institution, InstitutionKind, InstitutionLevel
from yilian.organizations.services import institution_create
from yilian.testing.world import build_world

THREADS = 8


@pytest.mark.django_db(transaction=True)
def test_duplicate_credit_code_race_has_exactly_one_winner():
    world = build_world()
    admin = Actor(user=world.user("system_admin"))
    body = "12440781MB2C12345"
    code = body + credit_code_check_character(body)
    barrier = threading.Barrier(THREADS)
    outcomes: list[str] = []
    lock = threading.Lock()

    def register(i: int) -> None:
        try:
            barrier.wait(timeout=10)
            institution_create(
                actor=admin,
                authority=world.authority,
                name=f"台山市新建卫生院{i}",
                kind=InstitutionKind.TOWNSHIP_CENTRE,
                level=InstitutionLevel.PRIMARY,
                credit_code=code,
                town="白沙镇",
            )
            result = "created"
        except ValidationError:
            result = "refused"
        except Exception as exc:  # anything else would be a 500 in a view
            result = f"error: {exc!r}"
        finally:
            connection.close()
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=register, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(outcomes) == ["created"] + ["refused"] * (THREADS - 1), outcomes
    assert Institution.objects.filter(credit_code=code).count() == 1
