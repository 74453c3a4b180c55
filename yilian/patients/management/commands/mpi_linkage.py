"""manage.py mpi_linkage: train the matching model now, or queue re-linking the whole index."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from yilian.patients.tasks import index_relink, linkage_train


class Command(BaseCommand):
    help = "患者主索引：训练概率匹配模型（Splink，无需标注）并启用为新版本；或排队批量重新关联全部源身份。"

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["train", "relink"], help="train：立即训练；relink：交给后台任务（db_worker）")
        parser.add_argument("--link-threshold", type=float, default=6.0, help="自动关联阈值（匹配权重，默认 6）")
        parser.add_argument("--review-threshold", type=float, default=0.0, help="人工审核阈值（匹配权重，默认 0）")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["action"] == "train":
            version = linkage_train.call(link_threshold=options["link_threshold"], review_threshold=options["review_threshold"])
            self.stdout.write(self.style.SUCCESS(f"已训练并启用匹配模型 v{version}。"))
        else:
            result = index_relink.enqueue()
            self.stdout.write(self.style.SUCCESS(f"已排队批量重新关联（任务 {result.id}），由 db_worker 执行。"))
