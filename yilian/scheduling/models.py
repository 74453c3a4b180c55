"""Scheduling (号源 / 床位 / 设备统筹), in FHIR's words.

- Schedule: the bookable calendar of a department, a practitioner or a piece of equipment (CT, MRI …)
  at a member institution. SlotTemplate: its recurring pattern (weekdays, hours, slot length,
  capacity per slot). Leave: a practitioner's absence, which closes their slots.
- Quota: units of every slot reserved for member institutions (号源下沉: one institution, or every
  member of a consortium) or for the green channel, released to the general pool a configurable
  time before the slot when unused.
- Slot: one bookable time of a schedule. SlotPool: one slice of a slot's capacity (the general
  pool, or one quota) with its own `booked ≤ capacity` check constraint. Booking (FHIR Appointment):
  one patient in one pool of one slot.
- Ward and Bed (FHIR Location, physicalType wa / bd) with a status; BedReservation holds a bed for
  a patient until it expires.
"""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from yilian.accounts.models import Practitioner
from yilian.core.models import PublicModel
from yilian.organizations.models import Capability, Consortium, Department, Institution
from yilian.patients.models import Patient

MAX_CAPACITY = 500
MAX_SLOT_MINUTES = 720
MIN_SLOT_MINUTES = 5
MAX_RELEASE_HOURS = 24 * 30
# Equipment a schedule may book (the imaging and function rooms of rules.md).
EQUIPMENT_CAPABILITIES = (
    Capability.CT,
    Capability.MRI,
    Capability.DR,
    Capability.ULTRASOUND,
    Capability.ENDOSCOPY,
    Capability.ECG,
)


class ScheduleKind(models.TextChoices):
    DEPARTMENT = "department", _("科室门诊")
    PRACTITIONER = "practitioner", _("专家门诊")
    EQUIPMENT = "equipment", _("检查设备")


class ScheduleQuerySet(models.QuerySet["Schedule"]):
    def active(self) -> ScheduleQuerySet:
        return self.filter(is_active=True)


class Schedule(PublicModel):
    """排班 (FHIR Schedule): what can be booked at an institution — a department's clinic, one
    practitioner's clinic, or a piece of equipment such as the CT room."""

    institution = models.ForeignKey(Institution, on_delete=models.PROTECT, related_name="schedules", verbose_name="机构")
    kind = models.CharField("类型", max_length=16, choices=ScheduleKind.choices)
    name = models.CharField("名称", max_length=60)
    department = models.ForeignKey(
        Department, on_delete=models.PROTECT, null=True, blank=True, related_name="schedules", verbose_name="科室"
    )
    practitioner = models.ForeignKey(
        Practitioner, on_delete=models.PROTECT, null=True, blank=True, related_name="schedules", verbose_name="医生"
    )
    capability = models.CharField(
        "设备类别", max_length=24, blank=True, choices=[(c.value, c.label) for c in EQUIPMENT_CAPABILITIES]
    )
    location = models.CharField("地点", max_length=100, blank=True, help_text="如：门诊楼三楼心内科诊区")
    is_active = models.BooleanField("启用", default=True)

    objects = ScheduleQuerySet.as_manager()

    class Meta:
        verbose_name = "排班"
        verbose_name_plural = "排班"
        ordering = ["institution__name", "kind", "name"]
        constraints = [
            models.UniqueConstraint(fields=["institution", "name"], name="unique_schedule_name"),
            models.CheckConstraint(
                condition=~Q(kind="department") | Q(department__isnull=False), name="department_schedule_has_department"
            ),
            models.CheckConstraint(
                condition=~Q(kind="practitioner") | Q(practitioner__isnull=False),
                name="practitioner_schedule_has_practitioner",
            ),
            models.CheckConstraint(condition=~Q(kind="equipment") | ~Q(capability=""), name="equipment_schedule_has_capability"),
        ]

    def __str__(self) -> str:
        return f"{self.institution.display_name} · {self.name}"


weekdays_validator = RegexValidator(r"^[0-6]{1,7}$", _("出诊星期应为 0（周一）到 6（周日）的数字，如 01234。"))


class SlotTemplate(PublicModel):
    """出诊规则: slots of `slot_minutes` from `start_time` to `end_time` on the given weekdays, each
    with `capacity` units. Public holidays close it unless `on_public_holidays`; make-up workdays
    (调休上班) open it when `on_makeup_workdays`."""

    schedule = models.ForeignKey(Schedule, on_delete=models.CASCADE, related_name="templates", verbose_name="排班")
    weekdays = models.CharField("出诊星期", max_length=7, validators=[weekdays_validator], help_text="0=周一 … 6=周日")
    start_time = models.TimeField("开始时间")
    end_time = models.TimeField("结束时间")
    slot_minutes = models.PositiveSmallIntegerField(
        "每个号段分钟数", validators=[MinValueValidator(MIN_SLOT_MINUTES), MaxValueValidator(MAX_SLOT_MINUTES)]
    )
    capacity = models.PositiveSmallIntegerField(
        "每个号段号源数", validators=[MinValueValidator(1), MaxValueValidator(MAX_CAPACITY)]
    )
    on_public_holidays = models.BooleanField("法定节假日照常出诊", default=False)
    on_makeup_workdays = models.BooleanField("调休上班日出诊", default=True)
    valid_from = models.DateField("生效日期")
    valid_until = models.DateField("失效日期", null=True, blank=True)

    class Meta:
        verbose_name = "出诊规则"
        verbose_name_plural = "出诊规则"
        ordering = ["schedule", "start_time"]
        constraints = [
            models.CheckConstraint(condition=Q(end_time__gt=F("start_time")), name="template_ends_after_start"),
            models.CheckConstraint(condition=Q(capacity__gte=1, capacity__lte=MAX_CAPACITY), name="template_capacity_bounded"),
            models.CheckConstraint(
                condition=Q(slot_minutes__gte=MIN_SLOT_MINUTES, slot_minutes__lte=MAX_SLOT_MINUTES),
                name="template_slot_minutes_bounded",
            ),
            models.CheckConstraint(
                condition=Q(valid_until__isnull=True) | Q(valid_until__gte=F("valid_from")), name="template_valid_range"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.schedule} · {self.weekdays} {self.start_time:%H:%M}-{self.end_time:%H:%M}"

    def applies_on(self, day: dt.date) -> bool:
        return self.valid_from <= day and (self.valid_until is None or day <= self.valid_until)

    @property
    def weekday_labels(self) -> str:
        """周一、周三 … for the pages."""
        names = [_("周一"), _("周二"), _("周三"), _("周四"), _("周五"), _("周六"), _("周日")]
        return "、".join(str(names[int(d)]) for d in self.weekdays if d.isdigit() and int(d) < 7)


class QuotaKind(models.TextChoices):
    INSTITUTION = "institution", _("成员单位专享")
    CONSORTIUM = "consortium", _("医联体成员共享")
    GREEN_CHANNEL = "green_channel", _("绿色通道")


class Quota(PublicModel):
    """号源下沉 / 绿色通道: `units_per_slot` units of every slot of a schedule reserved for one member
    institution, for every member of a consortium, or for the green channel; released to the
    general pool `release_hours_before` the slot starts if unused."""

    schedule = models.ForeignKey(Schedule, on_delete=models.CASCADE, related_name="quotas", verbose_name="排班")
    kind = models.CharField("类型", max_length=16, choices=QuotaKind.choices)
    institution = models.ForeignKey(
        Institution, on_delete=models.PROTECT, null=True, blank=True, related_name="slot_quotas", verbose_name="预留机构"
    )
    consortium = models.ForeignKey(
        Consortium, on_delete=models.PROTECT, null=True, blank=True, related_name="slot_quotas", verbose_name="预留医联体"
    )
    units_per_slot = models.PositiveSmallIntegerField(
        "每号段预留号源数", validators=[MinValueValidator(1), MaxValueValidator(MAX_CAPACITY)]
    )
    release_hours_before = models.PositiveIntegerField(
        "提前释放小时数",
        default=24,
        validators=[MaxValueValidator(MAX_RELEASE_HOURS)],
        help_text="未用完的预留号源在就诊前多少小时释放给普通号池",
    )
    is_active = models.BooleanField("启用", default=True)

    class Meta:
        verbose_name = "预留号源"
        verbose_name_plural = "预留号源"
        ordering = ["schedule", "kind"]
        constraints = [
            models.CheckConstraint(
                condition=(Q(kind="institution") & Q(institution__isnull=False) & Q(consortium__isnull=True))
                | (Q(kind="consortium") & Q(institution__isnull=True) & Q(consortium__isnull=False))
                | (Q(kind="green_channel") & Q(institution__isnull=True) & Q(consortium__isnull=True)),
                name="quota_target_matches_kind",
            ),
            models.CheckConstraint(
                condition=Q(units_per_slot__gte=1, units_per_slot__lte=MAX_CAPACITY), name="quota_units_bounded"
            ),
        ]

    def __str__(self) -> str:
        target = self.institution or self.consortium or self.get_kind_display()
        return f"{self.schedule} · {target} × {self.units_per_slot}"

    @property
    def target_label(self) -> str:
        if self.institution is not None:
            return self.institution.display_name
        if self.consortium is not None:
            return self.consortium.short_name or self.consortium.name
        return str(self.get_kind_display())


class Leave(PublicModel):
    """停诊 / 请假: a practitioner's absence; their schedules have no open slots in it."""

    practitioner = models.ForeignKey(Practitioner, on_delete=models.PROTECT, related_name="leaves", verbose_name="医生")
    starts_at = models.DateTimeField("开始时间")
    ends_at = models.DateTimeField("结束时间")
    reason = models.CharField("原因", max_length=200)
    recorded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", verbose_name="登记人"
    )

    class Meta:
        verbose_name = "停诊"
        verbose_name_plural = "停诊"
        ordering = ["-starts_at"]
        constraints = [models.CheckConstraint(condition=Q(ends_at__gt=F("starts_at")), name="leave_ends_after_start")]

    def __str__(self) -> str:
        return f"{self.practitioner} · {self.starts_at:%Y-%m-%d}"


class SlotQuerySet(models.QuerySet["Slot"]):
    def open(self) -> SlotQuerySet:
        return self.filter(is_closed=False)

    def upcoming(self) -> SlotQuerySet:
        return self.filter(start__gt=timezone.now())


class Slot(PublicModel):
    """号源 (FHIR Slot): one bookable time of a schedule; its capacity is split into pools."""

    schedule = models.ForeignKey(Schedule, on_delete=models.CASCADE, related_name="slots", verbose_name="排班")
    template = models.ForeignKey(
        SlotTemplate, on_delete=models.SET_NULL, null=True, blank=True, related_name="slots", verbose_name="出诊规则"
    )
    start = models.DateTimeField("开始时间")
    end = models.DateTimeField("结束时间")
    is_closed = models.BooleanField("已停诊", default=False)
    closed_reason = models.CharField("停诊原因", max_length=200, blank=True)

    objects = SlotQuerySet.as_manager()

    class Meta:
        verbose_name = "号源"
        verbose_name_plural = "号源"
        ordering = ["start"]
        constraints = [
            models.UniqueConstraint(fields=["schedule", "start"], name="unique_slot_start"),
            models.CheckConstraint(condition=Q(end__gt=F("start")), name="slot_ends_after_start"),
        ]
        indexes = [models.Index(fields=["start"])]

    def __str__(self) -> str:
        return f"{self.schedule} · {timezone.localtime(self.start):%Y-%m-%d %H:%M}"


class SlotPool(models.Model):
    """One slice of a slot's capacity: the general pool (no quota) or one quota's reserved units.
    `booked ≤ capacity` is a database constraint, so no race can oversell it."""

    slot = models.ForeignKey(Slot, on_delete=models.CASCADE, related_name="pools", verbose_name="号源")
    quota = models.ForeignKey(
        Quota, on_delete=models.PROTECT, null=True, blank=True, related_name="pools", verbose_name="预留号源"
    )
    capacity = models.PositiveSmallIntegerField("号源数", validators=[MaxValueValidator(MAX_CAPACITY)])
    booked = models.PositiveSmallIntegerField("已预约", default=0)
    release_at = models.DateTimeField("释放时间", null=True, blank=True)
    released_at = models.DateTimeField("已释放于", null=True, blank=True)

    class Meta:
        verbose_name = "号池"
        verbose_name_plural = "号池"
        constraints = [
            models.CheckConstraint(condition=Q(booked__lte=F("capacity")), name="pool_not_overbooked"),
            models.CheckConstraint(condition=Q(booked__gte=0), name="pool_booked_not_negative"),
            models.UniqueConstraint(fields=["slot", "quota"], name="unique_pool_per_quota"),
            models.UniqueConstraint(fields=["slot"], condition=Q(quota__isnull=True), name="one_general_pool_per_slot"),
        ]
        indexes = [models.Index(fields=["release_at"], condition=Q(released_at__isnull=True), name="pool_pending_release")]

    def __str__(self) -> str:
        return f"{self.slot} · {self.label} {self.booked}/{self.capacity}"

    @property
    def free(self) -> int:
        return self.capacity - self.booked

    @property
    def label(self) -> str:
        return self.quota.target_label if self.quota is not None else str(_("普通号池"))


class BookingStatus(models.TextChoices):
    BOOKED = "booked", _("已预约")
    CANCELLED = "cancelled", _("已取消")
    NO_SHOW = "noshow", _("爽约")
    FULFILLED = "fulfilled", _("已就诊")


class Booking(PublicModel):
    """预约 (FHIR Appointment): one patient holds one unit of one pool of a slot."""

    slot = models.ForeignKey(Slot, on_delete=models.PROTECT, related_name="bookings", verbose_name="号源")
    pool = models.ForeignKey(SlotPool, on_delete=models.PROTECT, related_name="bookings", verbose_name="号池")
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="bookings", verbose_name="患者")
    for_institution = models.ForeignKey(
        Institution, on_delete=models.PROTECT, related_name="bookings_made", verbose_name="预约机构"
    )
    booked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", verbose_name="预约人"
    )
    status = models.CharField("状态", max_length=12, choices=BookingStatus.choices, default=BookingStatus.BOOKED)
    note = models.CharField("备注", max_length=200, blank=True)
    cancelled_at = models.DateTimeField("取消时间", null=True, blank=True)
    cancel_reason = models.CharField("取消原因", max_length=200, blank=True)

    class Meta:
        verbose_name = "预约"
        verbose_name_plural = "预约"
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["slot", "patient"], condition=Q(status="booked"), name="one_open_booking_per_slot_and_patient"
            ),
        ]
        indexes = [models.Index(fields=["for_institution", "status"]), models.Index(fields=["patient", "status"])]

    def __str__(self) -> str:
        return f"{self.slot} · {self.patient}"


class Ward(PublicModel):
    """病区 (FHIR Location, physicalType wa) of an institution."""

    institution = models.ForeignKey(Institution, on_delete=models.PROTECT, related_name="wards", verbose_name="机构")
    department = models.ForeignKey(
        Department, on_delete=models.PROTECT, null=True, blank=True, related_name="wards", verbose_name="科室"
    )
    name = models.CharField("病区名称", max_length=60)
    code = models.CharField("病区代码", max_length=20)
    is_active = models.BooleanField("启用", default=True)

    class Meta:
        verbose_name = "病区"
        verbose_name_plural = "病区"
        ordering = ["institution__name", "code"]
        constraints = [models.UniqueConstraint(fields=["institution", "code"], name="unique_ward_code")]

    def __str__(self) -> str:
        return f"{self.institution.display_name} · {self.name}"


class BedStatus(models.TextChoices):
    FREE = "free", _("空闲")
    OCCUPIED = "occupied", _("占用")
    RESERVED = "reserved", _("预留")
    CLOSED = "closed", _("停用")


class Bed(PublicModel):
    """床位 (FHIR Location, physicalType bd) with its live status."""

    ward = models.ForeignKey(Ward, on_delete=models.PROTECT, related_name="beds", verbose_name="病区")
    code = models.CharField("床号", max_length=20)
    status = models.CharField("状态", max_length=12, choices=BedStatus.choices, default=BedStatus.FREE)

    class Meta:
        verbose_name = "床位"
        verbose_name_plural = "床位"
        ordering = ["ward", "code"]
        constraints = [models.UniqueConstraint(fields=["ward", "code"], name="unique_bed_code")]

    def __str__(self) -> str:
        return f"{self.ward} · {self.code}床"


class ReservationStatus(models.TextChoices):
    ACTIVE = "active", _("预留中")
    ADMITTED = "admitted", _("已入住")
    RELEASED = "released", _("已释放")
    EXPIRED = "expired", _("已过期")


class BedReservation(PublicModel):
    """床位预留: a bed held for a patient until `expires_at`; at most one active per bed."""

    bed = models.ForeignKey(Bed, on_delete=models.PROTECT, related_name="reservations", verbose_name="床位")
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="bed_reservations", verbose_name="患者")
    for_institution = models.ForeignKey(
        Institution, on_delete=models.PROTECT, related_name="bed_reservations_made", verbose_name="预留机构"
    )
    reserved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", verbose_name="预留人"
    )
    status = models.CharField("状态", max_length=12, choices=ReservationStatus.choices, default=ReservationStatus.ACTIVE)
    expires_at = models.DateTimeField("到期时间")
    ended_at = models.DateTimeField("结束时间", null=True, blank=True)
    note = models.CharField("备注", max_length=200, blank=True)
    # The sending system's own identifier of the reservation (FHIR Appointment.identifier), unique
    # per institution that sent it, so a member HIS that sends the same reservation again gets the
    # same one back.
    source_institution = models.ForeignKey(
        Institution, on_delete=models.PROTECT, null=True, blank=True, related_name="+", verbose_name="发送方机构"
    )
    source_system = models.CharField("发送方标识系统", max_length=200, blank=True)
    source_identifier = models.CharField("发送方床位预留标识", max_length=64, blank=True)

    class Meta:
        verbose_name = "床位预留"
        verbose_name_plural = "床位预留"
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["bed"], condition=Q(status="active"), name="one_active_reservation_per_bed"),
            models.UniqueConstraint(
                fields=["patient"], condition=Q(status="active"), name="one_active_bed_reservation_per_patient"
            ),
            models.UniqueConstraint(
                fields=["source_institution", "source_system", "source_identifier"],
                condition=~Q(source_identifier=""),
                name="one_bed_reservation_per_source_identifier",
            ),
            models.CheckConstraint(
                condition=Q(source_identifier="") | Q(source_institution__isnull=False),
                name="bed_reservation_source_identifier_has_institution",
            ),
        ]
        indexes = [models.Index(fields=["expires_at"], condition=Q(status="active"), name="reservation_pending_expiry")]

    def __str__(self) -> str:
        return f"{self.bed} · {self.patient}"
