"""The inbound message store (接入消息) and CSV import jobs.

Every message a member system sends, over any channel, is kept as it arrived (raw bytes) with who
sent it, a content key that makes a second delivery a no-op, and what became of it. A rejected
message stays here with its reason: that is the dead-letter list (死信), where a person with
`interop.manage` can read it, fix it and replay it.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from yilian.accounts.models import ApiKey, User
from yilian.core.models import PublicModel
from yilian.organizations.models import Institution


class Channel(models.TextChoices):
    FHIR = "fhir", _("FHIR R4")
    HL7_HTTP = "hl7_http", _("HL7 v2（HTTP）")
    HL7_MLLP = "hl7_mllp", _("HL7 v2（MLLP）")
    CSV = "csv", _("CSV 导入")


class MessageStatus(models.TextChoices):
    RECEIVED = "received", _("已接收")
    ACCEPTED = "accepted", _("已入库")
    REJECTED = "rejected", _("已拒收")
    DISCARDED = "discarded", _("已作废")


class MessageQuerySet(models.QuerySet["InboundMessage"]):
    def dead_letters(self) -> MessageQuerySet:
        return self.filter(status=MessageStatus.REJECTED)


class InboundMessage(PublicModel):
    """One message as a member system sent it: a FHIR resource or Bundle, an HL7 v2 message, or a
    CSV row that was refused. `content_key` (SHA-256 of channel and content) is unique per
    institution, so sending the same thing twice finds the first delivery and changes nothing."""

    institution = models.ForeignKey(
        Institution, on_delete=models.PROTECT, related_name="inbound_messages", verbose_name="来源机构"
    )
    api_key = models.ForeignKey(ApiKey, on_delete=models.SET_NULL, null=True, blank=True, verbose_name="接口密钥")
    channel = models.CharField("通道", max_length=10, choices=Channel.choices)
    kind = models.CharField(
        "消息类型", max_length=40, blank=True, help_text="ADT^A01、Bundle/transaction、Patient、csv:patients …"
    )
    control_id = models.CharField("消息标识", max_length=64, blank=True, help_text="MSH-10、Bundle.id 或 CSV 行号")
    charset = models.CharField("字符集", max_length=20, blank=True)
    raw = models.BinaryField("原始内容")
    content_key = models.CharField("内容摘要", max_length=64)
    status = models.CharField("状态", max_length=10, choices=MessageStatus.choices, default=MessageStatus.RECEIVED)
    reason = models.TextField("拒收原因", blank=True)
    response = models.TextField("应答", blank=True, help_text="返回给发送方的 ACK 或 FHIR 应答")
    attempts = models.PositiveIntegerField("处理次数", default=0)
    processed_at = models.DateTimeField("处理时间", null=True, blank=True)
    edited_by = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", verbose_name="修改人")
    edited_at = models.DateTimeField("修改时间", null=True, blank=True)
    replay_of = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="replays", verbose_name="重放自"
    )
    import_job = models.ForeignKey(
        "ImportJob", on_delete=models.CASCADE, null=True, blank=True, related_name="rejected_rows", verbose_name="导入任务"
    )

    objects = MessageQuerySet.as_manager()

    class Meta:
        verbose_name = "接入消息"
        verbose_name_plural = "接入消息"
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(fields=["institution", "content_key"], name="interop_message_unique_content"),
        ]
        indexes = [
            models.Index(fields=["institution", "status", "-id"]),
            models.Index(fields=["status", "-id"]),
        ]

    def __str__(self) -> str:
        return f"{self.get_channel_display()} {self.kind} {self.control_id}".strip()

    @property
    def is_dead_letter(self) -> bool:
        return self.status == MessageStatus.REJECTED

    def text(self) -> str:
        """The content as text in its charset (undecodable bytes shown as replacement characters)."""
        raw = bytes(self.raw)
        try:
            return raw.decode(self.charset or "utf-8")
        except (LookupError, UnicodeDecodeError):
            return raw.decode("utf-8", errors="replace")


class ImportKind(models.TextChoices):
    PATIENTS = "patients", _("患者")
    ENCOUNTERS = "encounters", _("就诊")
    DIAGNOSES = "diagnoses", _("诊断")
    RESULTS = "results", _("检查检验结果")
    SETTLEMENTS = "settlements", _("医保结算")


class ImportStatus(models.TextChoices):
    QUEUED = "queued", _("排队中")
    RUNNING = "running", _("导入中")
    DONE = "done", _("已完成")
    FAILED = "failed", _("失败")


class ImportJob(PublicModel):
    """A CSV file an institution uploaded (导入任务). Rows are applied in chunks in the background;
    `processed_rows` advances in the same transaction as each chunk, so a job stopped midway resumes
    where it stopped and re-applying a row is an idempotent upsert anyway. Refused rows become
    dead letters (`rejected_rows`) with their reasons; a dry run validates without writing."""

    institution = models.ForeignKey(Institution, on_delete=models.PROTECT, related_name="import_jobs", verbose_name="机构")
    created_by = models.ForeignKey(
        User, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", verbose_name="导入人"
    )
    kind = models.CharField("数据类型", max_length=12, choices=ImportKind.choices)
    file_name = models.CharField("文件名", max_length=200)
    content = models.BinaryField("文件内容")
    charset = models.CharField("字符集", max_length=20, default="utf-8")
    dry_run = models.BooleanField("试运行（只校验不写入）", default=False)
    status = models.CharField("状态", max_length=8, choices=ImportStatus.choices, default=ImportStatus.QUEUED)
    total_rows = models.PositiveIntegerField("总行数", default=0)
    processed_rows = models.PositiveIntegerField("已处理", default=0)
    accepted_rows = models.PositiveIntegerField("成功", default=0)
    error_rows = models.PositiveIntegerField("出错", default=0)
    errors = models.JSONField("行错误", default=list, blank=True, help_text="[{row, field, message}]，最多保留前若干条")
    message = models.TextField("说明", blank=True)
    started_at = models.DateTimeField("开始时间", null=True, blank=True)
    finished_at = models.DateTimeField("完成时间", null=True, blank=True)

    class Meta:
        verbose_name = "导入任务"
        verbose_name_plural = "导入任务"
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(processed_rows__lte=models.F("total_rows")), name="interop_import_progress_bounded"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} · {self.file_name}"

    @property
    def percent(self) -> int:
        return 100 if not self.total_rows else int(self.processed_rows * 100 / self.total_rows)

    @property
    def is_finished(self) -> bool:
        return self.status in {ImportStatus.DONE, ImportStatus.FAILED}
