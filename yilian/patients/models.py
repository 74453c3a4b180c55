"""Residents and patients (患者/居民). The master patient index (source identities, linkage)
builds on this in the shared-record capability; here a Patient is the person a consortium holds
a health record for, registered at one institution (建档机构)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from yilian.core.models import PublicModel
from yilian.organizations.models import Institution, ServiceGrid

if TYPE_CHECKING:
    from yilian.accounts.actors import Actor


class Sex(models.TextChoices):
    """GB/T 2261.1."""

    UNKNOWN = "0", _("未知的性别")
    MALE = "1", _("男")
    FEMALE = "2", _("女")
    UNSPECIFIED = "9", _("未说明的性别")


class IdentityDocumentType(models.TextChoices):
    """WS 364 CV02.01.101."""

    RESIDENT_ID = "01", _("居民身份证")
    HOUSEHOLD_REGISTER = "02", _("居民户口簿")
    PASSPORT = "03", _("护照")
    MILITARY_OFFICER = "04", _("军官证")
    DRIVING_LICENCE = "05", _("驾驶证")
    HONG_KONG_MACAO_PERMIT = "06", _("港澳居民来往内地通行证")
    TAIWAN_PERMIT = "07", _("台湾居民来往内地通行证")
    OTHER = "99", _("其他法定有效证件")


class PatientQuerySet(models.QuerySet["Patient"]):
    def visible_to(self, actor: Actor) -> PatientQuerySet:
        from yilian.patients.access import patient_scope_filter

        return self.filter(patient_scope_filter(actor))


class Patient(PublicModel):
    """A resident with a health record held by `home_institution`."""

    name = models.CharField("姓名", max_length=50)
    sex = models.CharField("性别", max_length=1, choices=Sex.choices, default=Sex.UNKNOWN)
    birth_date = models.DateField("出生日期", null=True, blank=True)
    id_type = models.CharField(
        "证件类型", max_length=2, choices=IdentityDocumentType.choices, default=IdentityDocumentType.RESIDENT_ID
    )
    id_number = models.CharField("证件号码", max_length=30, blank=True)
    # Kept because a number failing GB 11643 is stored as entered but must never drive a
    # deterministic match (rules.md); the flag lets the index filter on it.
    id_number_valid = models.BooleanField("身份证号校验通过", default=False)
    phone = models.CharField("联系电话", max_length=20, blank=True)
    address = models.CharField("现住址", max_length=200, blank=True)
    town = models.CharField("所在乡镇/街道", max_length=50, blank=True)
    grid = models.ForeignKey(
        ServiceGrid, on_delete=models.PROTECT, null=True, blank=True, related_name="residents", verbose_name="网格"
    )
    home_institution = models.ForeignKey(
        Institution, on_delete=models.PROTECT, related_name="registered_patients", verbose_name="建档机构"
    )
    # Set while this golden patient is merged into another (its identities moved there); cleared by unmerge.
    merged_into = models.ForeignKey(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="+", verbose_name="已合并至"
    )

    objects = PatientQuerySet.as_manager()

    class Meta:
        verbose_name = "居民"
        verbose_name_plural = "居民"
        ordering = ["id"]
        indexes = [
            models.Index(fields=["id_number"]),
            models.Index(fields=["home_institution", "name"]),
            models.Index(fields=["grid"]),
            models.Index(fields=["phone"]),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def masked_id_number(self) -> str:
        """The ID number with its middle hidden, for lists and logs."""
        n = self.id_number
        return f"{n[:4]}**********{n[-4:]}" if len(n) >= 10 else "****"


class LinkMethod(models.TextChoices):
    """How a source identity came to be linked to its golden patient."""

    NATIONAL_ID = "national_id", _("身份证号确定性匹配")
    PROBABILISTIC = "probabilistic", _("概率匹配")
    MANUAL = "manual", _("人工确认")
    NEW = "new", _("新建患者")


class SourceIdentity(PublicModel):
    """The patient as one member institution's system knows them (源身份): its local id and the
    demographics it sent. `patient` is the golden patient the identity is currently linked to;
    clinical records hang off the identity, so merge and unmerge move them by moving the link."""

    institution = models.ForeignKey(
        Institution, on_delete=models.PROTECT, related_name="source_identities", verbose_name="来源机构"
    )
    local_id = models.CharField("机构内患者标识", max_length=64)
    record_number = models.CharField("病案号", max_length=64, blank=True)
    name = models.CharField("姓名", max_length=50)
    sex = models.CharField("性别", max_length=1, choices=Sex.choices, default=Sex.UNKNOWN)
    birth_date = models.DateField("出生日期", null=True, blank=True)
    id_type = models.CharField(
        "证件类型", max_length=2, choices=IdentityDocumentType.choices, default=IdentityDocumentType.RESIDENT_ID
    )
    id_number = models.CharField("证件号码", max_length=30, blank=True)
    id_number_valid = models.BooleanField("身份证号校验通过", default=False)
    phone = models.CharField("联系电话", max_length=20, blank=True)
    address = models.CharField("现住址", max_length=200, blank=True)
    town = models.CharField("所在乡镇/街道", max_length=50, blank=True)
    health_card_number = models.CharField("居民健康卡号", max_length=64, blank=True)
    insurance_number = models.CharField("医保号", max_length=64, blank=True)

    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="identities", verbose_name="主索引患者")
    link_score = models.FloatField("匹配得分", null=True, blank=True)
    link_method = models.CharField("匹配方式", max_length=16, choices=LinkMethod.choices, default=LinkMethod.NEW)
    linked_at = models.DateTimeField("关联时间", null=True, blank=True)
    linked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+", verbose_name="关联人"
    )
    # Blocking keys of the online matcher (derived on save by identity_ingest): the toneless pinyin
    # of the name ("zhangwei") and the phone's last 8 digits, both indexed.
    name_key = models.CharField("姓名拼音键", max_length=120, blank=True, editable=False)
    phone_key = models.CharField("电话键", max_length=8, blank=True, editable=False)

    class Meta:
        verbose_name = "源身份"
        verbose_name_plural = "源身份"
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["institution", "local_id"], name="patients_identity_unique_local_id"),
        ]
        indexes = [
            models.Index(fields=["id_number"]),
            models.Index(fields=["institution", "patient"]),
            models.Index(fields=["patient", "institution"], name="patients_identity_patient_idx"),
            models.Index(fields=["name_key", "birth_date"], name="patients_identity_name_birth"),
            models.Index(fields=["phone_key"], name="patients_identity_phone"),
            models.Index(fields=["birth_date", "town"], name="patients_identity_birth_town"),
        ]

    def __str__(self) -> str:
        return f"{self.name}（{self.local_id}）"


class IdentityLinkEvent(models.Model):
    """One change of the golden patient an identity is linked to (关联历史), kept for audit and
    so that unmerge can put every identity back where it was."""

    identity = models.ForeignKey(SourceIdentity, on_delete=models.PROTECT, related_name="link_events", verbose_name="源身份")
    from_patient = models.ForeignKey(
        Patient, on_delete=models.PROTECT, null=True, blank=True, related_name="+", verbose_name="原患者"
    )
    to_patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="+", verbose_name="新患者")
    method = models.CharField("匹配方式", max_length=16, choices=LinkMethod.choices)
    score = models.FloatField("匹配得分", null=True, blank=True)
    # The link as it was before this change, so unmerge can restore it exactly.
    previous_method = models.CharField("原匹配方式", max_length=16, choices=LinkMethod.choices, blank=True)
    previous_score = models.FloatField("原匹配得分", null=True, blank=True)
    previous_linked_at = models.DateTimeField("原关联时间", null=True, blank=True)
    merge = models.ForeignKey(
        "PatientMerge", on_delete=models.PROTECT, null=True, blank=True, related_name="link_events", verbose_name="合并"
    )
    actor_name = models.CharField("操作人", max_length=60, blank=True)
    at = models.DateTimeField("时间", auto_now_add=True)

    class Meta:
        verbose_name = "关联记录"
        verbose_name_plural = "关联记录"
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.identity_id}: {self.from_patient_id} → {self.to_patient_id}"


class PatientMerge(PublicModel):
    """A merge of golden patient `merged` into `survivor` (患者合并): every identity of `merged` was
    moved to `survivor`. Unmerge moves exactly those identities back and stamps `unmerged_at`."""

    survivor = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="merges_survived", verbose_name="保留患者")
    merged = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="merges_absorbed", verbose_name="被合并患者")
    reason = models.CharField("合并原因", max_length=500)
    actor_name = models.CharField("操作人", max_length=60)
    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+", verbose_name="操作用户"
    )
    actor_institution = models.ForeignKey(
        Institution, on_delete=models.PROTECT, null=True, blank=True, related_name="+", verbose_name="操作机构"
    )
    unmerged_at = models.DateTimeField("撤销时间", null=True, blank=True)
    unmerged_by_name = models.CharField("撤销人", max_length=60, blank=True)

    class Meta:
        verbose_name = "患者合并"
        verbose_name_plural = "患者合并"
        ordering = ["-id"]
        constraints = [
            models.CheckConstraint(condition=~models.Q(survivor=models.F("merged")), name="patients_merge_distinct"),
        ]

    def __str__(self) -> str:
        return f"{self.merged_id} → {self.survivor_id}"


class ReviewStatus(models.TextChoices):
    OPEN = "open", _("待审核")
    LINKED = "linked", _("已确认同一人")
    DISTINCT = "distinct", _("已确认非同一人")


class ReviewDecision(models.TextChoices):
    """What a reviewer says about a review item (not stored: it sets the item's status)."""

    MERGE = "merge", _("是同一人，合并")
    DISTINCT = "distinct", _("不是同一人")
    LINK_OTHER = "link_other", _("是另一位候选患者")


class MatchReview(PublicModel):
    """A possible match between the review thresholds (待审核匹配): `identity` was given a new golden
    patient, and `candidate` may be the same person. A reviewer merges them or keeps them apart."""

    identity = models.ForeignKey(SourceIdentity, on_delete=models.PROTECT, related_name="reviews", verbose_name="源身份")
    candidate = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="+", verbose_name="候选患者")
    score = models.FloatField("匹配得分")
    comparison = models.JSONField("比较明细", default=dict)
    status = models.CharField("状态", max_length=16, choices=ReviewStatus.choices, default=ReviewStatus.OPEN)
    decided_at = models.DateTimeField("审核时间", null=True, blank=True)
    decided_by_name = models.CharField("审核人", max_length=60, blank=True)
    merge = models.ForeignKey(
        PatientMerge, on_delete=models.PROTECT, null=True, blank=True, related_name="+", verbose_name="合并"
    )

    class Meta:
        verbose_name = "待审核匹配"
        verbose_name_plural = "待审核匹配"
        ordering = ["-score", "id"]
        constraints = [
            models.UniqueConstraint(fields=["identity", "candidate"], name="patients_review_unique_pair"),
        ]
        indexes = [models.Index(fields=["status", "-score"], name="patients_review_status")]

    def __str__(self) -> str:
        return f"{self.identity_id} ~ {self.candidate_id} ({self.score:.1f})"


class LinkageModel(models.Model):
    """A trained Fellegi–Sunter model (概率匹配模型): m/u probabilities per comparison level and the
    two thresholds, as JSON, versioned. The newest active row drives online matching."""

    version = models.PositiveIntegerField("版本", unique=True)
    parameters = models.JSONField("参数")
    link_threshold = models.FloatField("自动关联阈值")
    review_threshold = models.FloatField("人工审核阈值")
    trained_on = models.PositiveIntegerField("训练记录数", default=0)
    note = models.CharField("说明", max_length=200, blank=True)
    active = models.BooleanField("启用", default=True)
    created_at = models.DateTimeField("创建时间", auto_now_add=True)

    class Meta:
        verbose_name = "匹配模型"
        verbose_name_plural = "匹配模型"
        ordering = ["-version"]

    def __str__(self) -> str:
        return f"v{self.version}"
