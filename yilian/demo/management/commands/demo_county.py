"""manage.py demo_county: build the demo county (台山市) with personas and residents."""

from __future__ import annotations

import sys
import unicodedata
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from yilian.demo import encounters, identities, referrals, scheduling, taishan
from yilian.demo.services import DemoCountyExists, PersonaLogin, demo_county_build, demo_county_exists, persona_logins


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _pad(text: str, width: int) -> str:
    return text + " " * (width - _width(text))


class Command(BaseCommand):
    help = "建立演示县（台山市）：两个医共体、全部成员单位、科室、网格、演示账号和居民。"

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--residents", type=int, default=None, help="居民人数（默认 5000，或按 --encounters 推算）")
        parser.add_argument(
            "--encounters",
            type=int,
            default=None,
            help="就诊记录数：一年病历写到这个数为止；不指定 --residents 时按每人约 3.1 次就诊推算居民人数",
        )
        parser.add_argument("--seed", type=int, default=taishan.DEFAULT_SEED, help="随机种子：同一种子得到同一个县（默认 2026）")
        parser.add_argument("--reset", action="store_true", help="先删除已有的演示县再重建")
        parser.add_argument("--skip-existing", action="store_true", help="演示县已存在时只打印登录信息，不报错")
        parser.add_argument("--quiet", action="store_true", help="不显示进度条")
        parser.add_argument(
            "--referral-history",
            type=int,
            default=referrals.DEFAULT_HISTORY,
            help=f"一年内已结束的历史转诊单数（默认 {referrals.DEFAULT_HISTORY}）",
        )
        parser.add_argument("--no-identities", action="store_true", help="不生成患者主索引的跨机构重复身份与待审核匹配")

    def handle(self, *args: Any, **options: Any) -> None:
        target: int | None = options["encounters"]
        if target is not None and target < 0:
            raise CommandError("--encounters 不能为负数。")
        residents: int = options["residents"]
        if residents is None:
            residents = taishan.DEFAULT_RESIDENTS if target is None else encounters.residents_for_encounters(target)
        if residents < 0:
            raise CommandError("--residents 不能为负数。")
        if options["skip_existing"] and not options["reset"] and demo_county_exists():
            self.stdout.write(f"演示县（{taishan.AUTHORITY_NAME}）已存在，未做改动。")
            self._print_logins(persona_logins())
            return
        show_progress = not options["quiet"] and sys.stderr.isatty() and options["verbosity"] > 0
        with tqdm(
            total=residents,
            file=sys.stderr,
            disable=not show_progress,
            unit="人",
            unit_scale=True,
            desc="居民",
            dynamic_ncols=True,
        ) as bar:
            try:
                county = demo_county_build(
                    residents=residents, seed=options["seed"], replace=options["reset"], progress=bar.update
                )
            except DemoCountyExists as exc:
                raise CommandError(
                    f"演示县（{taishan.AUTHORITY_NAME}）已存在，未做改动。要重建请加 --reset（会删除演示县的全部数据）。"
                ) from exc
        county.counts.update(identities.demo_identities_load(seed=county.seed, enabled=not options["no_identities"]))
        with tqdm(
            total=residents,
            file=sys.stderr,
            disable=not show_progress,
            unit="人",
            unit_scale=True,
            desc="病历",
            dynamic_ncols=True,
        ) as bar:
            records = encounters.demo_encounters_build(seed=county.seed, limit=target, progress=bar.update)
        county.counts.update(records.counts)
        county.counts.update(scheduling.demo_scheduling_load(seed=county.seed))
        county.counts.update(referrals.demo_referrals_load(seed=county.seed, history=options["referral_history"]))
        counts = "，".join(f"{label} {n:,}" for label, n in county.counts.items())
        rate = residents / county.resident_seconds if county.resident_seconds else 0.0
        rows = sum(records.counts.values())
        self.stdout.write(
            self.style.SUCCESS(
                f"已建立演示县 {taishan.COUNTY}（种子 {county.seed}）：{counts}。"
                f"用时 {county.seconds:.1f} 秒（居民 {county.resident_seconds:.1f} 秒，{rate:,.0f} 人/秒）；"
                f"病历 {records.seconds:.1f} 秒（{rows / records.seconds if records.seconds else 0:,.0f} 行/秒"
                f"{f'，其中重建索引与约束 {records.rebuild_seconds:.1f} 秒' if records.rebuild_seconds else ''}）。"
            )
        )
        self._print_logins(county.personas)

    def _print_logins(self, logins: list[PersonaLogin]) -> None:
        header = ("用户名", "身份", "所在机构")
        rows = [header, *((p.username, p.label, p.place) for p in logins)]
        widths = [max(_width(row[i]) for row in rows) for i in range(3)]
        self.stdout.write("")
        self.stdout.write("演示账号：")
        for n, row in enumerate(rows):
            self.stdout.write("  " + "  ".join(_pad(cell, widths[i]) for i, cell in enumerate(row)).rstrip())
            if n == 0:
                self.stdout.write("  " + "  ".join("-" * w for w in widths))
        self.stdout.write("")
        self.stdout.write(f"所有演示账号的密码：{taishan.DEMO_PASSWORD}")
