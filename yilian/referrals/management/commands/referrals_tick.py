"""manage.py referrals_tick: move referrals whose patient the shared record shows at the destination
to arrived, escalate those past their acceptance deadline to the coordinators, expire the stale.

Run it from a timer every minute (cron, a systemd timer; `make demo` runs it with the scheduling
tick), or enqueue yilian.referrals.tasks.referrals_tick; safe to run concurrently and repeatedly."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from yilian.referrals.services import referrals_tick


class Command(BaseCommand):
    help = "转诊定时任务：到诊识别、超时上报、过期处理"

    def handle(self, *args: Any, **options: Any) -> None:
        counts = referrals_tick()
        self.stdout.write(f"到诊 {counts['arrived']} 张，超时上报 {counts['escalated']} 张，过期 {counts['expired']} 张。")
