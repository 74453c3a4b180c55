"""Referrals (FHIR ServiceRequest + Task), their criteria catalogue, deadlines and follow-up tasks.

Lifecycle (../shared/domain/rules.md): submitted → accepted (or rejected with a reason) → scheduled
(a slot or bed reserved) → arrived → completed (result or discharge summary returned); cancelled or
expired at any open step. A down referral is accepted by the receiving primary institution's
acknowledgment, which needs at least one follow-up task, and cannot complete without one. At most
one open referral per patient and direction (a database constraint).
"""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from yilian.core.models import ChoiceLabelsModel, PublicModel
from yilian.organizations.models import Consortium, Department, Institution
from yilian.patients.models import Patient


class Direction(models.TextChoices):
    UP = "up", _("上转")
    DOWN = "down", _("下转")
    LATERAL = "lateral", _("平转")


class Urgency(models.TextChoices):
    ROUTINE = "routine", _("普通")
    URGENT = "urgent", _("紧急")
    EMERGENCY = "emergency", _("急诊绿色通道")


class ReferralStatus(models.TextChoices):
    SUBMITTED = "submitted", _("待接收")
    ACCEPTED = "accepted", _("已接收")
    SCHEDULED = "scheduled", _("已预约")
    ARRIVED = "arrived", _("已到诊")
    COMPLETED = "completed", _("已完成")
    REJECTED = "rejected", _("已拒绝")
    CANCELLED = "cancelled", _("已撤销")
    EXPIRED = "expired", _("已过期")


OPEN_STATUSES = (ReferralStatus.SUBMITTED, ReferralStatus.ACCEPTED, ReferralStatus.SCHEDULED, ReferralStatus.ARRIVED)
CLOSED_STATUSES = (ReferralStatus.COMPLETED, ReferralStatus.REJECTED, ReferralStatus.CANCELLED, ReferralStatus.EXPIRED)


class ShareScope(models.TextChoices):
    """What the receiver may read of the patient's shared record while the referral is open."""

    SUMMARY = "summary", _("基本信息")
    RECORD = "record", _("完整健康档案")


class DiseaseArea(models.TextChoices):
    HYPERTENSION = "hypertension", _("高血压")
    DIABETES = "diabetes", _("2型糖尿病")
    OTHER = "other", _("其他")


class ReferralCriterion(PublicModel):
    """One line of the referral-criteria catalogue (转诊标准) for a disease and direction, offered
    as a checklist when referring. Seeded from rules.md for hypertension and diabetes; a consortium
    manager edits the catalogue of the consortia their institution leads (rows without a consortium
    are the county-wide seed, shared by all)."""

    consortium = models.ForeignKey(
        Consortium, on_delete=models.CASCADE, null=True, blank=True, related_name="referral_criteria", verbose_name="医联体"
    )
    disease = models.CharField("病种", max_length=16, choices=DiseaseArea.choices)
    direction = models.CharField("方向", max_length=8, choices=Direction.choices)
    urgency = models.CharField("建议紧急程度", max_length=12, choices=Urgency.choices, default=Urgency.ROUTINE)
    text = models.CharField("标准", max_length=300)
    required_capability = models.CharField("需要的能力", max_length=24, blank=True, help_text="如 pci：转往具备PCI能力的医院")
    position = models.PositiveSmallIntegerField("排序", default=0, validators=[MaxValueValidator(1000)])
    is_active = models.BooleanField("启用", default=True)

    class Meta:
        verbose_name = "转诊标准"
        verbose_name_plural = "转诊标准"
        ordering = ["disease", "direction", "position", "id"]

    def __str__(self) -> str:
        return f"{self.get_disease_display()} {self.get_direction_display()}: {self.text}"


class ReferralDeadline(ChoiceLabelsModel):
    """How long the receiver has to accept a referral of one urgency in a consortium, and when an
    unanswered one expires. Without a row the settings' defaults apply (REFERRAL_DEADLINES)."""

    consortium = models.ForeignKey(Consortium, on_delete=models.CASCADE, related_name="referral_deadlines", verbose_name="医联体")
    urgency = models.CharField("紧急程度", max_length=12, choices=Urgency.choices)
    accept_minutes = models.PositiveIntegerField(
        "接收时限（分钟）", validators=[MinValueValidator(5), MaxValueValidator(30 * 24 * 60)]
    )
    expire_minutes = models.PositiveIntegerField(
        "过期时限（分钟）", validators=[MinValueValidator(5), MaxValueValidator(90 * 24 * 60)]
    )

    class Meta:
        verbose_name = "转诊时限"
        verbose_name_plural = "转诊时限"
        constraints = [
            models.UniqueConstraint(fields=["consortium", "urgency"], name="unique_referral_deadline"),
            models.CheckConstraint(
                condition=Q(expire_minutes__gt=models.F("accept_minutes")), name="referral_expiry_after_deadline"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.consortium} · {self.get_urgency_display()}"


class ReferralQuerySet(models.QuerySet["Referral"]):
    def open(self) -> ReferralQuerySet:
        return self.filter(status__in=OPEN_STATUSES)


class Referral(PublicModel):
    """转诊单 (FHIR ServiceRequest with its Task): one patient sent from one member to another."""

    number = models.CharField("转诊单号", max_length=24, unique=True)
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="referrals", verbose_name="患者")
    consortium = models.ForeignKey(Consortium, on_delete=models.PROTECT, related_name="referrals", verbose_name="医联体")
    direction = models.CharField("方向", max_length=8, choices=Direction.choices)
    urgency = models.CharField("紧急程度", max_length=12, choices=Urgency.choices, default=Urgency.ROUTINE)
    status = models.CharField("状态", max_length=12, choices=ReferralStatus.choices, default=ReferralStatus.SUBMITTED)

    sender_institution = models.ForeignKey(
        Institution, on_delete=models.PROTECT, related_name="referrals_sent", verbose_name="转出机构"
    )
    sender_department = models.ForeignKey(
        Department, on_delete=models.PROTECT, null=True, blank=True, related_name="referrals_sent", verbose_name="转出科室"
    )
    sender_user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="referrals_sent",
        verbose_name="转诊医生",
    )
    sender_name = models.CharField("转诊医生姓名", max_length=60)
    sender_phone = models.CharField("转诊医生联系电话", max_length=30, blank=True)
    destination_institution = models.ForeignKey(
        Institution, on_delete=models.PROTECT, related_name="referrals_received", verbose_name="接收机构"
    )
    destination_department = models.ForeignKey(
        Department, on_delete=models.PROTECT, null=True, blank=True, related_name="referrals_received", verbose_name="接收科室"
    )

    reason = models.TextField("转诊原因", max_length=1000)
    diagnosis_code = models.CharField("初步诊断编码（ICD-10）", max_length=16, blank=True)
    diagnosis_name = models.CharField("初步诊断", max_length=100)
    clinical_summary = models.TextField("病情摘要", max_length=4000, blank=True)
    criteria = models.JSONField("符合的转诊标准", default=list, blank=True)
    required_capability = models.CharField("需要的能力", max_length=24, blank=True)
    wanted_from = models.DateField("期望就诊开始日期", null=True, blank=True)
    wanted_to = models.DateField("期望就诊截止日期", null=True, blank=True)
    share_scope = models.CharField("共享范围", max_length=8, choices=ShareScope.choices, default=ShareScope.RECORD)
    grant = models.ForeignKey(
        "access.AccessGrant", on_delete=models.PROTECT, null=True, blank=True, related_name="+", verbose_name="访问授权"
    )

    submitted_at = models.DateTimeField("提交时间")
    accept_by = models.DateTimeField("接收时限")
    expires_at = models.DateTimeField("过期时间")
    escalated_at = models.DateTimeField("已上报调度于", null=True, blank=True)
    accepted_at = models.DateTimeField("接收时间", null=True, blank=True)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+", verbose_name="接收人"
    )
    receiver_note = models.CharField("接收意见", max_length=500, blank=True)
    booking = models.ForeignKey(
        "scheduling.Booking", on_delete=models.PROTECT, null=True, blank=True, related_name="referrals", verbose_name="预约"
    )
    bed_reservation = models.ForeignKey(
        "scheduling.BedReservation",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="referrals",
        verbose_name="床位预留",
    )
    scheduled_at = models.DateTimeField("预约时间", null=True, blank=True)
    appointment_start = models.DateTimeField("就诊时间", null=True, blank=True)
    instructions = models.CharField("就诊须知", max_length=500, blank=True, help_text="地点、需携带的资料等，发给居民")
    arrived_at = models.DateTimeField("到诊时间", null=True, blank=True)
    arrival_source = models.CharField("到诊确认方式", max_length=80, blank=True)
    completed_at = models.DateTimeField("完成时间", null=True, blank=True)
    completed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+", verbose_name="完成人"
    )
    result_summary = models.TextField("诊疗结果/出院小结", max_length=4000, blank=True)
    ended_at = models.DateTimeField("结束时间", null=True, blank=True)
    end_reason = models.CharField("拒绝/撤销/过期原因", max_length=500, blank=True)
    # The sending system's own identifier of the order (FHIR ServiceRequest.identifier), so a
    # member HIS that sends the same ServiceRequest again gets the same referral back.
    source_system = models.CharField("发送方标识系统", max_length=200, blank=True)
    source_identifier = models.CharField("发送方转诊单标识", max_length=64, blank=True)

    objects = ReferralQuerySet.as_manager()

    class Meta:
        verbose_name = "转诊单"
        verbose_name_plural = "转诊单"
        ordering = ["-submitted_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["patient", "direction"],
                condition=Q(status__in=["submitted", "accepted", "scheduled", "arrived"]),
                name="one_open_referral_per_patient_and_direction",
            ),
            models.CheckConstraint(
                condition=~Q(sender_institution=models.F("destination_institution")), name="referral_not_to_itself"
            ),
            models.CheckConstraint(condition=Q(expires_at__gt=models.F("submitted_at")), name="referral_expires_after_submit"),
            models.UniqueConstraint(
                fields=["sender_institution", "source_system", "source_identifier"],
                condition=~Q(source_identifier=""),
                name="one_referral_per_source_identifier",
            ),
        ]
        indexes = [
            models.Index(fields=["destination_institution", "status", "-submitted_at"], name="referral_inbox"),
            models.Index(fields=["sender_institution", "status", "-submitted_at"], name="referral_outbox"),
            # The unfiltered inbox and outbox, newest first: the first page is read off the index
            # (100,000 referrals: the lead hospital's inbox page 255 ms → 8 ms; docs/benchmarks.md).
            models.Index(fields=["destination_institution", "-submitted_at", "-id"], name="referral_inbox_recent"),
            models.Index(fields=["sender_institution", "-submitted_at", "-id"], name="referral_outbox_recent"),
            models.Index(fields=["consortium", "status", "-submitted_at"], name="referral_board"),
            models.Index(fields=["status", "accept_by"], name="referral_deadline"),
            models.Index(fields=["patient", "-submitted_at"], name="referral_patient"),
        ]

    def __str__(self) -> str:
        return f"{self.number} {self.get_direction_display()} {self.get_status_display()}"

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES


class ReferralEvent(ChoiceLabelsModel):
    """One step of a referral's history (提交、接收、预约、到诊、完成…), with who took it and why."""

    class Kind(models.TextChoices):
        SUBMITTED = "submitted", _("提交")
        ACCEPTED = "accepted", _("接收")
        REJECTED = "rejected", _("拒绝")
        SCHEDULED = "scheduled", _("预约")
        ARRIVED = "arrived", _("到诊")
        COMPLETED = "completed", _("完成")
        CANCELLED = "cancelled", _("撤销")
        EXPIRED = "expired", _("过期")
        ESCALATED = "escalated", _("超时上报")
        FOLLOW_UP = "follow_up", _("随访任务")

    referral = models.ForeignKey(Referral, on_delete=models.CASCADE, related_name="events", verbose_name="转诊单")
    at = models.DateTimeField("时间")
    kind = models.CharField("事件", max_length=12, choices=Kind.choices)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+", verbose_name="操作人"
    )
    institution = models.ForeignKey(
        Institution, on_delete=models.PROTECT, null=True, blank=True, related_name="+", verbose_name="操作机构"
    )
    note = models.CharField("说明", max_length=500, blank=True)

    class Meta:
        verbose_name = "转诊记录"
        verbose_name_plural = "转诊记录"
        ordering = ["at", "id"]
        indexes = [models.Index(fields=["referral", "at"])]

    def __str__(self) -> str:
        return f"{self.referral.number} {self.get_kind_display()}"


class FollowUpStatus(models.TextChoices):
    OPEN = "open", _("待随访")
    DONE = "done", _("已完成")
    CANCELLED = "cancelled", _("已取消")


class FollowUpTask(PublicModel):
    """随访任务 after a down referral: when and what the responsible family or village doctor checks."""

    referral = models.ForeignKey(Referral, on_delete=models.CASCADE, related_name="follow_ups", verbose_name="转诊单")
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="referral_follow_ups", verbose_name="患者")
    institution = models.ForeignKey(
        Institution, on_delete=models.PROTECT, related_name="follow_up_tasks", verbose_name="负责机构"
    )
    responsible = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="follow_up_tasks", verbose_name="责任医生"
    )
    due_date = models.DateField("随访日期")
    what_to_check = models.CharField("随访内容", max_length=300)
    status = models.CharField("状态", max_length=12, choices=FollowUpStatus.choices, default=FollowUpStatus.OPEN)
    done_at = models.DateTimeField("完成时间", null=True, blank=True)
    result = models.CharField("随访结果", max_length=500, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+", verbose_name="创建人")
    # The sending system's own identifier of the task (FHIR Task.identifier), unique per institution
    # that sent it, so a member HIS that sends the same follow-up Task again gets the same task back.
    source_institution = models.ForeignKey(
        Institution, on_delete=models.PROTECT, null=True, blank=True, related_name="+", verbose_name="发送方机构"
    )
    source_system = models.CharField("发送方标识系统", max_length=200, blank=True)
    source_identifier = models.CharField("发送方随访任务标识", max_length=64, blank=True)

    class Meta:
        verbose_name = "随访任务"
        verbose_name_plural = "随访任务"
        ordering = ["due_date", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["source_institution", "source_system", "source_identifier"],
                condition=~Q(source_identifier=""),
                name="one_follow_up_per_source_identifier",
            ),
            models.CheckConstraint(
                condition=Q(source_identifier="") | Q(source_institution__isnull=False),
                name="follow_up_source_identifier_has_institution",
            ),
        ]
        indexes = [
            models.Index(fields=["responsible", "status", "due_date"]),
            models.Index(fields=["institution", "status", "due_date"]),
        ]

    def __str__(self) -> str:
        return f"{self.due_date} {self.what_to_check}"
