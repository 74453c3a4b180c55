"""The task framework end to end: enqueue on the database backend, run the real worker."""

from __future__ import annotations

import datetime as dt
from unittest import mock

from django.core.management import call_command
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from yilian.access.services import break_glass_open
from yilian.access.tests.test_gatekeepers import actor


def run_worker() -> None:
    # The worker calls close_old_connections() between tasks; inside the test's transaction that
    # would close the test connection (autocommit differs from the settings), so keep it open here.
    # Everything else is the real worker: it claims due rows, runs them and records the result.
    from django_tasks_db.management.commands import db_worker

    with mock.patch.object(db_worker, "close_old_connections", lambda: None):
        call_command("db_worker", batch=True, no_startup_delay=True, verbosity=0)


def test_unreviewed_break_glass_reminds_privacy_officer_after_expiry(world, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        grant = break_glass_open(
            actor=actor(world, "lead_clinician"), patient=world.patients["at_b"], reason="急诊抢救需要既往史"
        )
    officer = world.user("privacy_officer")
    first_notice = officer.notifications.count()
    task_row = DBTaskResult.objects.get()
    assert task_row.run_after == grant.expires_at

    run_worker()  # not due yet: nothing runs
    assert officer.notifications.count() == first_notice

    DBTaskResult.objects.update(run_after=timezone.now() - dt.timedelta(seconds=1))
    with django_capture_on_commit_callbacks(execute=True):
        run_worker()
    assert officer.notifications.count() == first_notice + 1
    assert DBTaskResult.objects.get().status == "SUCCESSFUL"


def test_reviewed_break_glass_sends_no_reminder(world, django_capture_on_commit_callbacks):
    from yilian.access.services import break_glass_review

    with django_capture_on_commit_callbacks(execute=True):
        grant = break_glass_open(
            actor=actor(world, "lead_clinician"), patient=world.patients["at_b"], reason="急诊抢救需要既往史"
        )
    break_glass_review(actor=actor(world, "privacy_officer"), grant=grant, outcome="justified", note="确为急诊")
    DBTaskResult.objects.update(run_after=timezone.now() - dt.timedelta(seconds=1))
    before = world.user("privacy_officer").notifications.count()
    with django_capture_on_commit_callbacks(execute=True):
        run_worker()
    assert world.user("privacy_officer").notifications.count() == before
