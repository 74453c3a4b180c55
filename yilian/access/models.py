"""Cross-institution access to patient data: grants from care relationships, and the access log."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from yilian.core.models import ChoiceLabelsModel, PublicModel
from yilian.organizations.models import Institution
from yilian.patients.models import Patient


class GrantSource(models.TextChoices):
    REFERRAL = "referral", _("转诊")
    CONSULTATION = "consultation", _("会诊/远程诊断")
    CONTRACT = "contract", _("家庭医生签约")
    BREAK_GLASS = "break_glass", _("紧急授权（破窗）")
    APPOINTMENT = "appointment", _("预约号源/床位")


class GrantScope(models.TextChoices):
    SUMMARY = "summary", _("基本信息")
    RECORD = "record", _("完整健康档案")


class ReviewOutcome(models.TextChoices):
    JUSTIFIED = "justified", _("合理")
    UNJUSTIFIED = "unjustified", _("不合理")


class AccessGrantQuerySet(models.QuerySet["AccessGrant"]):
    def active(self) -> AccessGrantQuerySet:
        now = timezone.now()
        return self.filter(revoked_at__isnull=True, starts_at__lte=now, expires_at__gt=now)


class AccessGrant(PublicModel):
    """An expiring permission for another institution (or one user) to see a patient's data.

    Created only by a care relationship (referral, consultation, contract) or by break-glass.
    """

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="access_grants", verbose_name="患者")
    grantee_institution = models.ForeignKey(
        Institution, on_delete=models.PROTECT, null=True, blank=True, related_name="received_grants", verbose_name="被授权机构"
    )
    grantee_user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="received_grants",
        verbose_name="被授权人",
    )
    # The institution the grantee acted for when the grant was made (for break-glass review).
    acting_institution = models.ForeignKey(
        Institution, on_delete=models.PROTECT, null=True, blank=True, related_name="+", verbose_name="申请时所在机构"
    )
    scope = models.CharField("范围", max_length=16, choices=GrantScope.choices, default=GrantScope.RECORD)
    source = models.CharField("来源", max_length=16, choices=GrantSource.choices)
    source_reference = models.CharField("来源单据", max_length=64, blank=True)
    reason = models.TextField("理由", max_length=1000, blank=True)
    granted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+", verbose_name="授权人"
    )
    starts_at = models.DateTimeField("生效时间", default=timezone.now)
    expires_at = models.DateTimeField("失效时间")
    revoked_at = models.DateTimeField("撤销时间", null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+", verbose_name="撤销人"
    )
    reviewed_at = models.DateTimeField("审核时间", null=True, blank=True)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+", verbose_name="审核人"
    )
    review_outcome = models.CharField("审核结论", max_length=16, choices=ReviewOutcome.choices, blank=True)
    review_note = models.TextField("审核意见", max_length=1000, blank=True)

    objects = AccessGrantQuerySet.as_manager()

    class Meta:
        verbose_name = "访问授权"
        verbose_name_plural = "访问授权"
        ordering = ["-starts_at"]
        indexes = [
            models.Index(fields=["grantee_institution", "expires_at"]),
            models.Index(fields=["grantee_user", "expires_at"]),
            models.Index(fields=["patient", "expires_at"]),
            models.Index(fields=["source", "reviewed_at"]),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(grantee_institution__isnull=False) | Q(grantee_user__isnull=False), name="grant_has_grantee"
            ),
            models.CheckConstraint(condition=Q(expires_at__gt=models.F("starts_at")), name="grant_expires_after_start"),
            models.CheckConstraint(condition=~Q(source="break_glass") | ~Q(reason=""), name="break_glass_needs_reason"),
        ]

    def __str__(self) -> str:
        grantee = self.grantee_user or self.grantee_institution
        return f"{grantee} → {self.patient} ({self.get_source_display()})"

    @property
    def is_active(self) -> bool:
        now = timezone.now()
        return self.revoked_at is None and self.starts_at <= now < self.expires_at


class AccessAction(models.TextChoices):
    LIST = "list", _("列表中查看")
    VIEW_SUMMARY = "view_summary", _("查看基本信息")
    VIEW_RECORD = "view_record", _("查看健康档案")
    BREAK_GLASS = "break_glass", _("紧急授权访问")


class AccessBasis(models.TextChoices):
    """Why a read was allowed: the acting institution holds the record, a grant, or the duty of
    reviewing the master patient index (a reviewer reading both sides of a possible duplicate)."""

    HOLDER = "holder", _("建档机构")
    GRANT = "grant", _("授权")
    MPI_REVIEW = "mpi_review", _("主索引审核")


class AccessLog(ChoiceLabelsModel):
    """One row per read of patient-identifiable data. Append-only; the patient can see it."""

    at = models.DateTimeField("时间", default=timezone.now)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+", verbose_name="访问人"
    )
    api_key = models.ForeignKey(
        "accounts.ApiKey", on_delete=models.PROTECT, null=True, blank=True, related_name="+", verbose_name="接口密钥"
    )
    actor_name = models.CharField("访问人姓名", max_length=60)
    role = models.CharField("角色", max_length=32, blank=True)
    acting_institution = models.ForeignKey(
        Institution, on_delete=models.PROTECT, null=True, blank=True, related_name="+", verbose_name="所在机构"
    )
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="access_logs", verbose_name="患者")
    action = models.CharField("操作", max_length=16, choices=AccessAction.choices)
    basis = models.CharField("依据", max_length=16, choices=AccessBasis.choices)
    grant = models.ForeignKey(
        AccessGrant, on_delete=models.PROTECT, null=True, blank=True, related_name="uses", verbose_name="授权"
    )
    ip_address = models.GenericIPAddressField("来源地址", null=True, blank=True)
    path = models.CharField("访问路径", max_length=200, blank=True)

    class Meta:
        verbose_name = "访问日志"
        verbose_name_plural = "访问日志"
        ordering = ["-at", "-id"]
        indexes = [
            models.Index(fields=["patient", "-at"]),
            models.Index(fields=["user", "-at"]),
            models.Index(fields=["acting_institution", "-at"]),
        ]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.actor_name} {self.get_action_display()} {self.patient_id}"
