"""Consortium structure: bureaus, consortia, member institutions, departments, service grids."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.core.validators import MaxValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from yilian.core.models import ChoiceLabelsModel, PublicModel
from yilian.core.validators import validate_credit_code, validate_division_code

if TYPE_CHECKING:
    from yilian.accounts.actors import Actor

MAX_POPULATION = 10_000_000


class HealthAuthority(PublicModel):
    """卫健局: the health bureau that supervises the consortia of its area (GB/T 2260 code)."""

    name = models.CharField("名称", max_length=100)
    division_code = models.CharField("行政区划代码", max_length=6, unique=True, validators=[validate_division_code])
    is_active = models.BooleanField("启用", default=True)

    class Meta:
        verbose_name = "卫生健康行政部门"
        verbose_name_plural = "卫生健康行政部门"
        ordering = ["division_code"]

    def __str__(self) -> str:
        return self.name


class InstitutionLevel(models.TextChoices):
    TERTIARY = "tertiary", _("三级")
    SECONDARY = "secondary", _("二级")
    PRIMARY = "primary", _("一级")
    UNGRADED = "ungraded", _("未定级")


class InstitutionKind(models.TextChoices):
    GENERAL_HOSPITAL = "general_hospital", _("综合医院")
    TCM_HOSPITAL = "tcm_hospital", _("中医院")
    SPECIALTY_HOSPITAL = "specialty_hospital", _("专科医院")
    MATERNAL_CHILD = "maternal_child", _("妇幼保健院")
    TOWNSHIP_CENTRE = "township_centre", _("乡镇卫生院")
    COMMUNITY_CENTRE = "community_centre", _("社区卫生服务中心")
    COMMUNITY_STATION = "community_station", _("社区卫生服务站")
    VILLAGE_CLINIC = "village_clinic", _("村卫生室")
    NURSING_HOME = "nursing_home", _("护理院")
    REHABILITATION = "rehabilitation", _("康复机构")
    PRIVATE_CLINIC = "private_clinic", _("社会办诊所")


# 基层医疗卫生机构: the primary level in every indicator (indicators.md, "Terms").
PRIMARY_LEVEL_KINDS = frozenset(
    {
        InstitutionKind.TOWNSHIP_CENTRE,
        InstitutionKind.COMMUNITY_CENTRE,
        InstitutionKind.COMMUNITY_STATION,
        InstitutionKind.VILLAGE_CLINIC,
    }
)


class Capability(models.TextChoices):
    """Services and equipment a receiving institution must have (referral destination rules)."""

    CT = "ct", _("CT")
    MRI = "mri", _("磁共振")
    DR = "dr", _("DR")
    ULTRASOUND = "ultrasound", _("超声")
    ENDOSCOPY = "endoscopy", _("内镜")
    ECG = "ecg", _("心电图")
    PCI = "pci", _("PCI介入")
    DIALYSIS = "dialysis", _("血液透析")
    ICU = "icu", _("重症监护")
    LAB = "lab", _("检验")
    PATHOLOGY = "pathology", _("病理")
    STROKE_CENTRE = "stroke_centre", _("卒中中心")
    CHEST_PAIN_CENTRE = "chest_pain_centre", _("胸痛中心")
    OBSTETRICS = "obstetrics", _("产科")


class InstitutionQuerySet(models.QuerySet["Institution"]):
    def active(self) -> InstitutionQuerySet:
        return self.filter(is_active=True)

    def primary_level(self) -> InstitutionQuerySet:
        return self.filter(kind__in=PRIMARY_LEVEL_KINDS)

    def visible_to(self, actor: Actor) -> InstitutionQuerySet:
        from yilian.organizations.access import institution_scope_filter

        return self.filter(institution_scope_filter(actor, prefix=""))


class Institution(PublicModel):
    """成员单位: a hospital, health centre or clinic. Deactivated, never deleted, once it holds data."""

    authority = models.ForeignKey(
        HealthAuthority, on_delete=models.PROTECT, related_name="institutions", verbose_name="主管卫健部门"
    )
    name = models.CharField("机构名称", max_length=100, unique=True)
    short_name = models.CharField("简称", max_length=30, blank=True)
    credit_code = models.CharField(
        "统一社会信用代码", max_length=18, unique=True, null=True, blank=True, validators=[validate_credit_code]
    )
    license_number = models.CharField("执业许可证登记号", max_length=40, unique=True, null=True, blank=True)
    level = models.CharField("级别", max_length=16, choices=InstitutionLevel.choices, default=InstitutionLevel.UNGRADED)
    kind = models.CharField("类型", max_length=24, choices=InstitutionKind.choices)
    parent = models.ForeignKey(
        "self",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="children",
        verbose_name="上级机构",
        help_text="村卫生室所属的乡镇卫生院或社区卫生服务中心",
    )
    town = models.CharField("所在乡镇/街道", max_length=50, blank=True)
    address = models.CharField("地址", max_length=200, blank=True)
    phone = models.CharField("联系电话", max_length=30, blank=True)
    is_active = models.BooleanField("启用", default=True)

    objects = InstitutionQuerySet.as_manager()

    class Meta:
        verbose_name = "医疗机构"
        verbose_name_plural = "医疗机构"
        ordering = ["name"]
        indexes = [models.Index(fields=["authority", "kind"]), models.Index(fields=["town"])]
        constraints = [
            models.CheckConstraint(condition=~Q(parent=models.F("id")), name="institution_not_own_parent"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_primary_level(self) -> bool:
        """基层医疗卫生机构 (township, community and village level)."""
        return self.kind in PRIMARY_LEVEL_KINDS

    @property
    def display_name(self) -> str:
        return self.short_name or self.name


class InstitutionCapability(ChoiceLabelsModel):
    """One service or piece of equipment an institution offers (CT, PCI, dialysis …)."""

    institution = models.ForeignKey(Institution, on_delete=models.CASCADE, related_name="capabilities", verbose_name="机构")
    capability = models.CharField("能力", max_length=24, choices=Capability.choices)

    class Meta:
        verbose_name = "机构服务能力"
        verbose_name_plural = "机构服务能力"
        constraints = [models.UniqueConstraint(fields=["institution", "capability"], name="unique_institution_capability")]

    def __str__(self) -> str:
        return f"{self.institution} · {self.get_capability_display()}"


class ConsortiumKind(models.TextChoices):
    COUNTY_COMMUNITY = "county_community", _("县域医共体")
    CITY_GROUP = "city_group", _("城市医疗集团")
    SPECIALTY_ALLIANCE = "specialty_alliance", _("专科联盟")
    TELEMEDICINE_NETWORK = "telemedicine_network", _("远程医疗协作网")


class ConsortiumQuerySet(models.QuerySet["Consortium"]):
    def visible_to(self, actor: Actor) -> ConsortiumQuerySet:
        from yilian.organizations.access import consortium_scope_filter

        return self.filter(consortium_scope_filter(actor))


class Consortium(PublicModel):
    """医联体 / 医共体: a lead institution with its members, supervised by a bureau."""

    authority = models.ForeignKey(
        HealthAuthority, on_delete=models.PROTECT, related_name="consortia", verbose_name="主管卫健部门"
    )
    name = models.CharField("名称", max_length=100, unique=True)
    short_name = models.CharField("简称", max_length=30, blank=True)
    kind = models.CharField("类型", max_length=24, choices=ConsortiumKind.choices, default=ConsortiumKind.COUNTY_COMMUNITY)
    lead_institution = models.ForeignKey(
        Institution, on_delete=models.PROTECT, related_name="led_consortia", verbose_name="牵头单位"
    )
    established_on = models.DateField("成立日期")
    dissolved_on = models.DateField("解散日期", null=True, blank=True)

    objects = ConsortiumQuerySet.as_manager()

    class Meta:
        verbose_name = "医联体"
        verbose_name_plural = "医联体"
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(dissolved_on__isnull=True) | Q(dissolved_on__gte=models.F("established_on")),
                name="consortium_dissolved_after_established",
            )
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_active(self) -> bool:
        return self.dissolved_on is None or self.dissolved_on > timezone.localdate()


class MemberRole(models.TextChoices):
    LEAD = "lead", _("牵头单位")
    BACKBONE = "backbone", _("骨干单位")
    MEMBER = "member", _("成员单位")


class ConsortiumMembershipQuerySet(models.QuerySet["ConsortiumMembership"]):
    def current(self) -> ConsortiumMembershipQuerySet:
        today = timezone.localdate()
        return self.filter(Q(left_on__isnull=True) | Q(left_on__gt=today), joined_on__lte=today)


class ConsortiumMembership(ChoiceLabelsModel):
    """An institution's membership of a consortium; an institution may belong to several."""

    consortium = models.ForeignKey(Consortium, on_delete=models.PROTECT, related_name="memberships", verbose_name="医联体")
    institution = models.ForeignKey(
        Institution, on_delete=models.PROTECT, related_name="consortium_memberships", verbose_name="机构"
    )
    role = models.CharField("角色", max_length=16, choices=MemberRole.choices, default=MemberRole.MEMBER)
    joined_on = models.DateField("加入日期")
    left_on = models.DateField("退出日期", null=True, blank=True)

    objects = ConsortiumMembershipQuerySet.as_manager()

    class Meta:
        verbose_name = "医联体成员关系"
        verbose_name_plural = "医联体成员关系"
        ordering = ["consortium", "role", "institution__name"]
        constraints = [
            models.UniqueConstraint(
                fields=["consortium", "institution"], condition=Q(left_on__isnull=True), name="one_open_consortium_membership"
            ),
            models.CheckConstraint(
                condition=Q(left_on__isnull=True) | Q(left_on__gte=models.F("joined_on")), name="membership_left_after_joined"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.consortium} · {self.institution} ({self.get_role_display()})"


class CentreKind(models.TextChoices):
    """The six shared centres of a consortium ("六统一")."""

    ADMINISTRATION = "administration", _("行政管理中心")
    HUMAN_RESOURCES = "human_resources", _("人力资源中心")
    FINANCE = "finance", _("财务管理中心")
    QUALITY = "quality", _("质量管理中心")
    PHARMACY_DEVICES = "pharmacy_devices", _("药械管理中心")
    INFORMATION = "information", _("信息管理中心")


class ConsortiumCentre(ChoiceLabelsModel):
    """One of the six management centres of a consortium, hosted by the lead institution."""

    consortium = models.ForeignKey(Consortium, on_delete=models.CASCADE, related_name="centres", verbose_name="医联体")
    kind = models.CharField("中心", max_length=24, choices=CentreKind.choices)
    host_institution = models.ForeignKey(
        Institution, on_delete=models.PROTECT, related_name="hosted_centres", verbose_name="承担单位"
    )

    class Meta:
        verbose_name = "医联体管理中心"
        verbose_name_plural = "医联体管理中心"
        ordering = ["consortium", "kind"]
        constraints = [models.UniqueConstraint(fields=["consortium", "kind"], name="unique_consortium_centre")]

    def __str__(self) -> str:
        return f"{self.consortium.short_name or self.consortium.name}{self.get_kind_display()}"


class DepartmentQuerySet(models.QuerySet["Department"]):
    def visible_to(self, actor: Actor) -> DepartmentQuerySet:
        from yilian.organizations.access import institution_scope_filter

        return self.filter(institution_scope_filter(actor, prefix="institution__"))


class Department(PublicModel):
    """科室 of an institution."""

    institution = models.ForeignKey(Institution, on_delete=models.PROTECT, related_name="departments", verbose_name="机构")
    name = models.CharField("科室名称", max_length=60)
    code = models.CharField("科室代码", max_length=20)
    is_clinical = models.BooleanField("临床科室", default=True)
    beds = models.PositiveIntegerField("编制床位", default=0, validators=[MaxValueValidator(10_000)])
    is_active = models.BooleanField("启用", default=True)

    objects = DepartmentQuerySet.as_manager()

    class Meta:
        verbose_name = "科室"
        verbose_name_plural = "科室"
        ordering = ["institution__name", "code"]
        constraints = [
            models.UniqueConstraint(fields=["institution", "code"], name="unique_department_code"),
            models.UniqueConstraint(fields=["institution", "name"], name="unique_department_name"),
        ]

    def __str__(self) -> str:
        return f"{self.institution.display_name} · {self.name}"


class GridKind(models.TextChoices):
    VILLAGE = "village", _("行政村")
    COMMUNITY = "community", _("社区")


class ServiceGridQuerySet(models.QuerySet["ServiceGrid"]):
    def visible_to(self, actor: Actor) -> ServiceGridQuerySet:
        from yilian.organizations.access import consortium_scope_filter

        return self.filter(consortium_scope_filter(actor, prefix="consortium__"))


class ServiceGrid(PublicModel):
    """网格: a village or community whose residents a consortium and institution are responsible for."""

    consortium = models.ForeignKey(Consortium, on_delete=models.PROTECT, related_name="grids", verbose_name="医联体")
    responsible_institution = models.ForeignKey(
        Institution, on_delete=models.PROTECT, related_name="grids", verbose_name="责任机构"
    )
    name = models.CharField("网格名称", max_length=60)
    kind = models.CharField("类型", max_length=16, choices=GridKind.choices, default=GridKind.VILLAGE)
    town = models.CharField("所在乡镇/街道", max_length=50)
    population = models.PositiveIntegerField("常住人口", default=0, validators=[MaxValueValidator(MAX_POPULATION)])
    is_active = models.BooleanField("启用", default=True)

    objects = ServiceGridQuerySet.as_manager()

    class Meta:
        verbose_name = "服务网格"
        verbose_name_plural = "服务网格"
        ordering = ["town", "name"]
        constraints = [
            models.UniqueConstraint(fields=["consortium", "town", "name"], name="unique_grid_name_in_town"),
            models.CheckConstraint(condition=Q(population__lte=MAX_POPULATION), name="grid_population_bounded"),
        ]

    def __str__(self) -> str:
        return f"{self.town}{self.name}"
