"""manage.py demo_timers: the demo's timer. Every minute (and once at start) it runs what a real
deployment's cron or task worker runs: `scheduling_tick` (release unused reserved units, expire
bed reservations) and `referrals_tick` (arrivals from the shared record, escalation past the
acceptance deadline, expiry). Prints a line only when something moved. `make demo` starts it next
to the server and stops it with the server; `--once` runs one round and returns."""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import DatabaseError, close_old_connections
from django.utils import timezone

from yilian.referrals.services import referrals_tick
from yilian.scheduling.services import quota_release, reservations_expire


def tick_once() -> dict[str, int]:
    """One round of every demo timer; the counts of what moved."""
    counts = {"released": quota_release(), "reservations_expired": reservations_expire()}
    counts.update(referrals_tick())
    return counts


class Command(BaseCommand):
    help = "演示定时任务：每分钟运行 scheduling_tick 与 referrals_tick（号源释放、床位预留过期、到诊识别、超时上报、过期）"

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--interval", type=int, default=60, help="间隔秒数（默认 60）")
        parser.add_argument("--once", action="store_true", help="只运行一轮")

    def handle(self, *args: Any, **options: Any) -> None:
        interval = max(1, options["interval"])
        while True:
            try:
                counts = tick_once()
            except DatabaseError as exc:  # a locked SQLite file or a restarting server: try next round
                self.stderr.write(f"[定时任务] {exc}")
                counts = {}
            finally:
                close_old_connections()
            if any(counts.values()) or options["once"]:
                stamp = timezone.localtime().strftime("%H:%M:%S")
                self.stdout.write(
                    f"[定时任务 {stamp}] 释放预留号源 {counts.get('released', 0)} 个，过期床位预留 "
                    f"{counts.get('reservations_expired', 0)} 个；转诊到诊 {counts.get('arrived', 0)} 张，"
                    f"超时上报 {counts.get('escalated', 0)} 张，过期 {counts.get('expired', 0)} 张。"
                )
                self.stdout.flush()
            if options["once"]:
                return
            time.sleep(interval)
