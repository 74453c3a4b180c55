"""Background work for scheduling (run by `manage.py db_worker`; enqueue from a timer every few
minutes): quotas whose release time has come go to the general pool, expired bed reservations free
their beds."""

from __future__ import annotations

from django_tasks import task

from yilian.scheduling import services


@task()
def quota_release() -> int:
    """Release unused reserved units whose release time has come; returns the units released."""
    return services.quota_release()


@task()
def reservations_expire() -> int:
    """Free the beds of expired reservations; returns how many reservations expired."""
    return services.reservations_expire()
