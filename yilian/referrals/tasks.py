"""Background work for referrals (run by `manage.py db_worker`; enqueue from a timer every minute):
arrivals seen in the shared record, escalation past the acceptance deadline, expiry."""

from __future__ import annotations

from django_tasks import task

from yilian.referrals import services


@task()
def referrals_tick() -> dict[str, int]:
    """Arrivals, escalations and expiries due now; returns how many of each."""
    return services.referrals_tick()
