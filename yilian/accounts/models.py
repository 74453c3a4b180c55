"""People: accounts, practitioner profiles, memberships (user × institution × role), API keys."""

from __future__ import annotations

import hashlib
import secrets
import uuid

from django.contrib.auth.models import AbstractUser
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from yilian.accounts.roles import AUTHORITY_ROLES, Role
from yilian.core.models import ChoiceLabelsModel, PublicModel
from yilian.organizations.models import Department, HealthAuthority, Institution


class User(ChoiceLabelsModel, AbstractUser):
    """A person who logs in. Chinese names are kept whole in `full_name`."""

    uuid = models.UUIDField("公开标识", default=uuid.uuid4, unique=True, editable=False)
    full_name = models.CharField("姓名", max_length=50, blank=True)
    phone = models.CharField("手机号", max_length=20, blank=True)
    failed_login_count = models.PositiveSmallIntegerField("连续登录失败次数", default=0)
    locked_until = models.DateTimeField("锁定至", null=True, blank=True)

    class Meta:
        verbose_name = "用户"
        verbose_name_plural = "用户"

    def __str__(self) -> str:
        return self.full_name or self.username

    def get_full_name(self) -> str:
        return self.full_name or self.username

    @property
    def is_locked(self) -> bool:
        return self.locked_until is not None and self.locked_until > timezone.now()


class PractitionerTitle(models.TextChoices):
    """专业技术职称 of physicians, nurses and village doctors."""

    CHIEF_PHYSICIAN = "chief_physician", _("主任医师")
    ASSOCIATE_CHIEF_PHYSICIAN = "associate_chief_physician", _("副主任医师")
    ATTENDING_PHYSICIAN = "attending_physician", _("主治医师")
    RESIDENT_PHYSICIAN = "resident_physician", _("住院医师")
    PHYSICIAN = "physician", _("医师")
    ASSISTANT_PHYSICIAN = "assistant_physician", _("医士")
    CHIEF_NURSE = "chief_nurse", _("主任护师")
    ASSOCIATE_CHIEF_NURSE = "associate_chief_nurse", _("副主任护师")
    SUPERVISING_NURSE = "supervising_nurse", _("主管护师")
    NURSE_PRACTITIONER = "nurse_practitioner", _("护师")
    NURSE = "nurse", _("护士")
    VILLAGE_DOCTOR = "village_doctor", _("乡村医生")
    PHARMACIST = "pharmacist", _("药师")
    TECHNICIAN = "technician", _("技师")


# Intermediate title or above (中级及以上): counted by the deployment indicator B3.
INTERMEDIATE_OR_ABOVE = frozenset(
    {
        PractitionerTitle.CHIEF_PHYSICIAN,
        PractitionerTitle.ASSOCIATE_CHIEF_PHYSICIAN,
        PractitionerTitle.ATTENDING_PHYSICIAN,
        PractitionerTitle.CHIEF_NURSE,
        PractitionerTitle.ASSOCIATE_CHIEF_NURSE,
        PractitionerTitle.SUPERVISING_NURSE,
    }
)


class Practitioner(ChoiceLabelsModel):
    """执业人员档案: the professional side of a user."""

    user = models.OneToOneField(User, on_delete=models.CASCADE, related_name="practitioner", verbose_name="用户")
    title = models.CharField("职称", max_length=32, choices=PractitionerTitle.choices)
    specialty = models.CharField("专业", max_length=50, blank=True)
    certificate_number = models.CharField("执业证书编码", max_length=30, unique=True, null=True, blank=True)

    class Meta:
        verbose_name = "执业人员"
        verbose_name_plural = "执业人员"

    def __str__(self) -> str:
        return f"{self.user} · {self.get_title_display()}"


class MembershipQuerySet(models.QuerySet["Membership"]):
    def current(self) -> MembershipQuerySet:
        today = timezone.localdate()
        return self.filter(Q(ended_on__isnull=True) | Q(ended_on__gt=today), started_on__lte=today, is_active=True)


class Membership(PublicModel):
    """A user's role at an institution (or at a health authority, for bureau supervisors), with dates.

    A user with several memberships picks the one they act through in the page header.
    """

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="memberships", verbose_name="用户")
    institution = models.ForeignKey(
        Institution, on_delete=models.PROTECT, null=True, blank=True, related_name="staff_memberships", verbose_name="机构"
    )
    authority = models.ForeignKey(
        HealthAuthority,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="staff_memberships",
        verbose_name="卫健部门",
    )
    department = models.ForeignKey(
        Department, on_delete=models.PROTECT, null=True, blank=True, related_name="staff_memberships", verbose_name="科室"
    )
    role = models.CharField("角色", max_length=32, choices=Role.choices)
    started_on = models.DateField("开始日期", default=timezone.localdate)
    ended_on = models.DateField("结束日期", null=True, blank=True)
    is_active = models.BooleanField("有效", default=True)

    objects = MembershipQuerySet.as_manager()

    class Meta:
        verbose_name = "任职"
        verbose_name_plural = "任职"
        ordering = ["user__username", "started_on"]
        constraints = [
            models.CheckConstraint(
                condition=(Q(institution__isnull=False) & Q(authority__isnull=True))
                | (Q(institution__isnull=True) & Q(authority__isnull=False)),
                name="membership_at_institution_xor_authority",
            ),
            models.CheckConstraint(
                condition=Q(ended_on__isnull=True) | Q(ended_on__gte=models.F("started_on")),
                name="membership_ends_after_start",
            ),
            models.UniqueConstraint(
                fields=["user", "institution", "role"],
                condition=Q(ended_on__isnull=True, institution__isnull=False),
                name="one_open_membership_per_role_institution",
            ),
        ]
        indexes = [models.Index(fields=["institution", "role"])]

    def __str__(self) -> str:
        return f"{self.user} · {self.place} · {self.get_role_display()}"

    @property
    def place(self) -> Institution | HealthAuthority | None:
        return self.institution or self.authority

    @property
    def is_authority_role(self) -> bool:
        return self.role in AUTHORITY_ROLES


def hash_api_key(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


class ApiKey(PublicModel):
    """An institution-scoped key a member system (HIS, LIS, PACS) uses for /api/v1 and /fhir.

    Only a SHA-256 digest is stored; the key itself is shown once, when it is created.
    """

    institution = models.ForeignKey(Institution, on_delete=models.PROTECT, related_name="api_keys", verbose_name="机构")
    name = models.CharField("名称", max_length=60)
    prefix = models.CharField("前缀", max_length=12, unique=True)
    key_digest = models.CharField("摘要", max_length=64, unique=True)
    created_by = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, blank=True, verbose_name="创建人")
    expires_at = models.DateTimeField("过期时间", null=True, blank=True)
    revoked_at = models.DateTimeField("吊销时间", null=True, blank=True)
    last_used_at = models.DateTimeField("最后使用", null=True, blank=True)

    class Meta:
        verbose_name = "接口密钥"
        verbose_name_plural = "接口密钥"
        ordering = ["institution", "name"]

    def __str__(self) -> str:
        return f"{self.institution.display_name} · {self.name} ({self.prefix}…)"

    @staticmethod
    def generate_raw_key() -> tuple[str, str]:
        """A new key as (prefix, raw key). The prefix identifies the key in lists and logs."""
        prefix = "yl_" + secrets.token_hex(4)
        return prefix, f"{prefix}.{secrets.token_urlsafe(32)}"

    @property
    def is_usable(self) -> bool:
        now = timezone.now()
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now) and self.institution.is_active
