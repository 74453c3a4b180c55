"""manage.py scheduling_tick: release due quotas and expire bed reservations now.

Run it from a timer every few minutes (cron, a systemd timer), or enqueue the tasks of
yilian.scheduling.tasks for the db_worker; both are safe to run concurrently and repeatedly."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from yilian.scheduling.services import quota_release, reservations_expire


class Command(BaseCommand):
    help = "释放到期未用的预留号源，并释放过期的床位预留"

    def handle(self, *args: Any, **options: Any) -> None:
        released = quota_release()
        expired = reservations_expire()
        self.stdout.write(f"释放预留号源 {released} 个，过期床位预留 {expired} 个。")
