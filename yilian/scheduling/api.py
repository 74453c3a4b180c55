"""/api/v1 for schedules, slots, bookings and beds (号源 / 床位).

Schedules, slots, wards and beds are structure (no identities): every actor with STRUCTURE_VIEW
sees those of its consortia's members, member systems too. Bookings and bed reservations name a
patient: they are read by the booking institution and the receiving one, and every patient shown is
written to the access log. Booking goes through the patient gatekeeper and `services.slot_book`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal
from uuid import UUID

from django.http import Http404, HttpRequest
from django.utils import timezone
from ninja import Query, Router, Schema, Status
from pydantic import Field

from yilian.accounts.roles import Permission
from yilian.core.api import ERRORS, ApiError, ErrorOut, InputSchema, Page, PageQuery, actor_of, field_error, find, paginate
from yilian.organizations.api import DepartmentRef, InstitutionRef
from yilian.organizations.models import Department, Institution
from yilian.patients.access import access_patient, patients_listed
from yilian.scheduling import services
from yilian.scheduling.access import (
    access_booking,
    access_reservation,
    access_schedule,
    access_ward,
    bookings_visible_to,
    reservations_visible_to,
    schedule_scope_filter,
    slot_for_booking,
)
from yilian.scheduling.models import (
    EQUIPMENT_CAPABILITIES,
    Bed,
    BedReservation,
    BedStatus,
    Booking,
    BookingStatus,
    ReservationStatus,
    Schedule,
    ScheduleKind,
    Slot,
    SlotPool,
    Ward,
)
from yilian.scheduling.selectors import slot_is_full, slot_search, ward_use

router = Router(tags=["scheduling 号源与床位"])

MAX_SEARCH_DAYS = 92
EquipmentCapability = Literal[tuple(c.value for c in EQUIPMENT_CAPABILITIES)]  # type: ignore[valid-type]
PoolName = Literal["general", "reserved", "green_channel"]


def _uuid(obj: Any) -> UUID:
    return obj.uuid  # type: ignore[no-any-return]


# --- schemas ---------------------------------------------------------------------------------


class ScheduleOut(Schema):
    id: UUID
    name: str
    kind: ScheduleKind
    institution: InstitutionRef
    department: DepartmentRef | None
    practitioner_name: str | None = Field(description="专家门诊的医生姓名")
    capability: str = Field(description="设备类别（检查设备排班）：ct、mri、dr、ultrasound、endoscopy、ecg")
    location: str
    is_active: bool

    resolve_id = staticmethod(_uuid)

    @staticmethod
    def resolve_practitioner_name(obj: Schedule) -> str | None:
        return str(obj.practitioner.user) if obj.practitioner is not None else None


class PoolOut(Schema):
    kind: str = Field(description="general 普通号池 | institution 成员单位专享 | consortium 医联体共享 | green_channel 绿色通道")
    label: str
    capacity: int
    booked: int
    free: int
    released: bool = Field(description="预留号源是否已释放到普通号池")

    @staticmethod
    def resolve_kind(obj: SlotPool) -> str:
        return obj.quota.kind if obj.quota is not None else "general"

    @staticmethod
    def resolve_released(obj: SlotPool) -> bool:
        return obj.released_at is not None


class SlotOut(Schema):
    id: UUID
    schedule: ScheduleOut
    start: dt.datetime
    end: dt.datetime
    capacity: int
    booked: int
    pools: list[PoolOut]

    resolve_id = staticmethod(_uuid)

    @staticmethod
    def resolve_capacity(obj: Slot) -> int:
        return obj.total_capacity  # type: ignore[attr-defined,no-any-return]

    @staticmethod
    def resolve_booked(obj: Slot) -> int:
        return obj.total_booked  # type: ignore[attr-defined,no-any-return]

    @staticmethod
    def resolve_pools(obj: Slot) -> list[SlotPool]:
        return list(obj.pools.all())


class SlotRef(Schema):
    id: UUID
    start: dt.datetime
    end: dt.datetime
    schedule: ScheduleOut

    resolve_id = staticmethod(_uuid)


class PatientRef(Schema):
    id: UUID
    name: str

    resolve_id = staticmethod(_uuid)


class BookingOut(Schema):
    id: UUID
    slot: SlotRef
    patient: PatientRef
    pool: str = Field(description="general | institution | consortium | green_channel")
    for_institution: InstitutionRef
    status: BookingStatus
    note: str
    created_at: dt.datetime
    cancelled_at: dt.datetime | None
    cancel_reason: str

    resolve_id = staticmethod(_uuid)

    @staticmethod
    def resolve_pool(obj: Booking) -> str:
        return obj.pool.quota.kind if obj.pool.quota is not None else "general"


class WardOut(Schema):
    id: UUID
    name: str
    code: str
    institution: InstitutionRef
    department: DepartmentRef | None
    beds: int
    free: int
    occupied: int
    reserved: int
    closed: int
    occupancy_percent: int = Field(description="（占用+预留）/ 可用床位")


class BedOut(Schema):
    id: UUID
    code: str
    status: BedStatus
    ward_id: UUID

    resolve_id = staticmethod(_uuid)

    @staticmethod
    def resolve_ward_id(obj: Bed) -> UUID:
        return obj.ward.uuid


class ReservationOut(Schema):
    id: UUID
    bed: BedOut
    patient: PatientRef
    for_institution: InstitutionRef
    status: ReservationStatus
    expires_at: dt.datetime
    note: str

    resolve_id = staticmethod(_uuid)


# --- schedules and slots -----------------------------------------------------------------------


class ScheduleListQuery(PageQuery):
    institution: UUID | None = None
    department: UUID | None = None
    kind: ScheduleKind | None = None
    capability: EquipmentCapability | None = None  # type: ignore[valid-type]


@router.get("/scheduling/schedules", response={200: Page[ScheduleOut], ERRORS: ErrorOut})
def schedule_list(request: HttpRequest, query: Query[ScheduleListQuery]) -> dict[str, Any]:
    """排班列表：本机构所在医联体各成员单位的科室、专家与检查设备排班。"""
    actor = actor_of(request)
    actor.require(Permission.STRUCTURE_VIEW)
    schedules = Schedule.objects.filter(schedule_scope_filter(actor), is_active=True)
    if query.institution:
        schedules = schedules.filter(institution__uuid=query.institution)
    if query.department:
        schedules = schedules.filter(department__uuid=query.department)
    if query.kind:
        schedules = schedules.filter(kind=query.kind)
    if query.capability:
        schedules = schedules.filter(capability=query.capability)
    schedules = schedules.select_related("institution", "department", "practitioner__user").order_by("institution__name", "name")
    return paginate(schedules, query)


@router.get("/scheduling/schedules/{id}", response={200: ScheduleOut, ERRORS: ErrorOut})
def schedule_detail(request: HttpRequest, id: UUID) -> Schedule:
    """排班详情。"""
    return access_schedule(actor_of(request), id)


class SlotSearchQuery(PageQuery):
    institution: UUID | None = None
    department: UUID | None = None
    schedule: UUID | None = None
    capability: EquipmentCapability | None = None  # type: ignore[valid-type]
    date_from: dt.date | None = Field(None, description="默认今天")
    date_to: dt.date | None = Field(None, description=f"默认起始日后 14 天，跨度最多 {MAX_SEARCH_DAYS} 天")
    pool: PoolName | None = Field(None, description="只看该号池仍有余号的号源")
    only_free: bool = Field(False, description="只看仍有余号的号源")


@router.get("/scheduling/slots", response={200: Page[SlotOut], ERRORS: ErrorOut})
def slot_list(request: HttpRequest, query: Query[SlotSearchQuery]) -> dict[str, Any]:
    """号源查询：按机构、科室、设备类别、日期与号池查找未停诊的号源，含各号池余号。"""
    actor = actor_of(request)
    actor.require(Permission.STRUCTURE_VIEW)
    date_from = query.date_from or timezone.localdate()
    date_to = query.date_to or date_from + dt.timedelta(days=14)
    if date_to < date_from or (date_to - date_from).days > MAX_SEARCH_DAYS:
        raise ApiError("validation_error", fields={"date_to": [f"结束日期须在起始日期之后 {MAX_SEARCH_DAYS} 天以内。"]})
    visible = Schedule.objects.filter(schedule_scope_filter(actor))
    institution_id = department_id = schedule_id = None
    if query.institution:
        institution_id = find(Institution.objects.all(), query.institution, field="institution").pk
    if query.department:
        department_id = find(Department.objects.all(), query.department, field="department").pk
    if query.schedule:
        schedule_id = find(visible, query.schedule, field="schedule").pk
    slots = slot_search(
        actor,
        institution_id=institution_id,
        department_id=department_id,
        capability=query.capability or "",
        schedule_id=schedule_id,
        date_from=date_from,
        date_to=date_to,
        pool=query.pool or "",
        only_free=query.only_free,
    )
    return paginate(slots, query)


# --- bookings ----------------------------------------------------------------------------------


class BookingIn(InputSchema):
    slot: UUID
    patient: UUID
    pool: PoolName = "general"
    for_institution: UUID | None = Field(None, description="代哪家成员单位预约（号源所在机构的调度员）；默认本机构")
    note: str = Field("", max_length=200)


class BookingListQuery(PageQuery):
    status: BookingStatus | None = None
    side: Literal["made", "received"] | None = Field(None, description="made 本机构预约的 | received 预约到本机构的")


class CancelIn(InputSchema):
    reason: str = Field("", max_length=200)


def _booking_out(booking: Booking) -> Booking:
    return (
        Booking.objects.select_related(
            "slot__schedule__institution",
            "slot__schedule__department",
            "slot__schedule__practitioner__user",
            "pool__quota",
            "patient",
            "for_institution",
        )
        .filter(pk=booking.pk)
        .get()
    )


@router.post("/scheduling/bookings", response={201: BookingOut, ERRORS: ErrorOut})
def booking_create(request: HttpRequest, payload: BookingIn) -> Status[Booking]:
    """预约号源：为可查看的居民预约一个号源（普通号池、本机构预留或绿色通道）。约满或重复预约返回 409。"""
    actor = actor_of(request)
    actor.require(Permission.PATIENT_VIEW)
    slot = slot_for_booking(actor, payload.slot)
    if slot is None:
        raise field_error("slot", "未找到，或您无权访问。")
    if not slot.is_closed and slot.end > timezone.now() and slot_is_full(slot):
        # 抢号: most requests for a sought-after slot arrive after its last unit went. Say so before
        # reading the patient (no identity is shown, so nothing to log); slot_book decides under the lock.
        raise ApiError("conflict", "该号源已约满，请选择其他时间。")
    try:
        patient = access_patient(actor, payload.patient, path=request.path)
    except Http404 as exc:  # the gatekeeper's 404, as a field error of this body
        raise ApiError("validation_error", fields={"patient": ["未找到，或您无权访问。"]}) from exc
    for_institution = find(Institution.objects.all(), payload.for_institution, field="for_institution")
    booking = services.slot_book(
        actor=actor, slot=slot, patient=patient, pool=payload.pool, for_institution=for_institution, note=payload.note
    )
    # slot_book keeps the slot with its schedule, the patient, the pool with its quota and the
    # institution it was given: the answer needs no second read.
    return Status(201, booking)


@router.get("/scheduling/bookings", response={200: Page[BookingOut], ERRORS: ErrorOut})
def booking_list(request: HttpRequest, query: Query[BookingListQuery]) -> dict[str, Any]:
    """预约列表：本机构预约的与预约到本机构的。列出的居民记入访问日志。"""
    actor = actor_of(request)
    actor.require(Permission.PATIENT_VIEW)
    bookings = bookings_visible_to(actor)
    if query.status:
        bookings = bookings.filter(status=query.status)
    if query.side == "made":
        bookings = bookings.filter(for_institution=actor.institution)
    elif query.side == "received":
        bookings = bookings.filter(slot__schedule__institution=actor.institution)
    bookings = bookings.select_related(
        "slot__schedule__institution",
        "slot__schedule__department",
        "slot__schedule__practitioner__user",
        "pool__quota",
        "patient",
        "for_institution",
    ).order_by("-created_at", "-id")
    page = paginate(bookings, query)
    patients_listed(actor, list({b.patient_id: b.patient for b in page["items"]}.values()), path=request.get_full_path())
    return page


@router.get("/scheduling/bookings/{id}", response={200: BookingOut, ERRORS: ErrorOut})
def booking_detail(request: HttpRequest, id: UUID) -> Booking:
    """预约详情。本次查看记入访问日志。"""
    actor = actor_of(request)
    booking = access_booking(actor, id)
    patients_listed(actor, [booking.patient], path=request.path)
    return _booking_out(booking)


@router.post("/scheduling/bookings/{id}/cancel", response={200: BookingOut, ERRORS: ErrorOut})
def booking_cancel(request: HttpRequest, id: UUID, payload: CancelIn) -> Booking:
    """取消预约：号源退回原号池。"""
    actor = actor_of(request)
    booking = services.booking_cancel(actor=actor, booking=access_booking(actor, id), reason=payload.reason)
    return _booking_out(booking)


@router.post("/scheduling/bookings/{id}/no-show", response={200: BookingOut, ERRORS: ErrorOut})
def booking_no_show(request: HttpRequest, id: UUID) -> Booking:
    """标记爽约（接诊机构，号源开始后）：号源退回原号池。"""
    actor = actor_of(request)
    booking = services.booking_mark_no_show(actor=actor, booking=access_booking(actor, id))
    return _booking_out(booking)


# --- wards and beds ---------------------------------------------------------------------------


class WardListQuery(PageQuery):
    institution: UUID | None = None


@router.get("/scheduling/wards", response={200: Page[WardOut], ERRORS: ErrorOut})
def ward_list(request: HttpRequest, query: Query[WardListQuery]) -> dict[str, Any]:
    """病区列表：各病区床位数与实时占用（空闲 / 占用 / 预留 / 停用）。"""
    actor = actor_of(request)
    actor.require(Permission.STRUCTURE_VIEW)
    wards = Ward.objects.filter(schedule_scope_filter(actor), is_active=True).order_by("institution__name", "code")
    if query.institution:
        wards = wards.filter(institution__uuid=query.institution)
    page = paginate(wards, query)
    uses = ward_use(Ward.objects.filter(pk__in=[w.pk for w in page["items"]]).order_by("institution__name", "code"))
    page["items"] = [
        {
            "id": use.ward.uuid,
            "name": use.ward.name,
            "code": use.ward.code,
            "institution": use.ward.institution,
            "department": use.ward.department,
            "beds": use.bed_count,
            "free": use.counts.get(BedStatus.FREE, 0),
            "occupied": use.counts.get(BedStatus.OCCUPIED, 0),
            "reserved": use.counts.get(BedStatus.RESERVED, 0),
            "closed": use.counts.get(BedStatus.CLOSED, 0),
            "occupancy_percent": use.occupancy_percent,
        }
        for use in uses
    ]
    return page


class BedListQuery(PageQuery):
    status: BedStatus | None = None


@router.get("/scheduling/wards/{id}/beds", response={200: Page[BedOut], ERRORS: ErrorOut})
def bed_list(request: HttpRequest, id: UUID, query: Query[BedListQuery]) -> dict[str, Any]:
    """病区床位及状态。"""
    ward = access_ward(actor_of(request), id)
    beds = ward.beds.select_related("ward").order_by("code")
    if query.status:
        beds = beds.filter(status=query.status)
    return paginate(beds, query)


class BedReserveIn(InputSchema):
    bed: UUID
    patient: UUID
    hours: int = Field(24, ge=1, le=services.MAX_RESERVATION_HOURS)
    for_institution: UUID | None = None
    note: str = Field("", max_length=200)


@router.post("/scheduling/bed-reservations", response={201: ReservationOut, ERRORS: ErrorOut})
def bed_reservation_create(request: HttpRequest, payload: BedReserveIn) -> Status[BedReservation]:
    """预留床位：为可查看的居民预留一张空闲床位，到期未入住自动释放。已被占用返回 409。"""
    actor = actor_of(request)
    actor.require(Permission.PATIENT_VIEW)
    bed = find(
        Bed.objects.select_related("ward__institution").filter(schedule_scope_filter(actor, prefix="ward__")),
        payload.bed,
        field="bed",
    )
    try:
        patient = access_patient(actor, payload.patient, path=request.path)
    except Http404 as exc:
        raise ApiError("validation_error", fields={"patient": ["未找到，或您无权访问。"]}) from exc
    for_institution = find(Institution.objects.all(), payload.for_institution, field="for_institution")
    reservation = services.bed_reserve(
        actor=actor, bed=bed, patient=patient, hours=payload.hours, for_institution=for_institution, note=payload.note
    )
    return Status(201, reservation)


@router.get("/scheduling/bed-reservations", response={200: Page[ReservationOut], ERRORS: ErrorOut})
def bed_reservation_list(request: HttpRequest, query: Query[PageQuery]) -> dict[str, Any]:
    """床位预留列表：本机构预留的与预留到本机构的。列出的居民记入访问日志。"""
    actor = actor_of(request)
    actor.require(Permission.PATIENT_VIEW)
    reservations = reservations_visible_to(actor).select_related("bed__ward", "patient", "for_institution").order_by("-id")
    page = paginate(reservations, query)
    patients_listed(actor, list({r.patient_id: r.patient for r in page["items"]}.values()), path=request.get_full_path())
    return page


@router.post("/scheduling/bed-reservations/{id}/release", response={200: ReservationOut, ERRORS: ErrorOut})
def bed_reservation_release(request: HttpRequest, id: UUID) -> BedReservation:
    """释放床位预留：床位恢复空闲。"""
    actor = actor_of(request)
    return services.bed_release(actor=actor, reservation=access_reservation(actor, id))


# --- set-up (SCHEDULE_MANAGE) -------------------------------------------------------------------


class ScheduleIn(InputSchema):
    institution: UUID
    kind: ScheduleKind
    name: str = Field(..., min_length=1, max_length=60)
    department: UUID | None = None
    practitioner_user: UUID | None = Field(None, description="专家门诊：医生的用户 id")
    capability: EquipmentCapability | None = None  # type: ignore[valid-type]
    location: str = Field("", max_length=100)


def _managed(actor: Any, key: UUID, field: str) -> Institution:
    from yilian.organizations.access import managed_institution_filter

    return find(Institution.objects.filter(managed_institution_filter(actor, Permission.SCHEDULE_MANAGE)), key, field=field)


@router.post("/scheduling/schedules", response={201: ScheduleOut, ERRORS: ErrorOut})
def schedule_create(request: HttpRequest, payload: ScheduleIn) -> Status[Schedule]:
    """新建排班（科室门诊、专家门诊或检查设备），限本人可管理的机构。"""
    from yilian.accounts.models import Practitioner

    actor = actor_of(request)
    actor.require(Permission.SCHEDULE_MANAGE)
    institution = _managed(actor, payload.institution, "institution")
    department = find(Department.objects.filter(institution=institution), payload.department, field="department")
    practitioner = None
    if payload.practitioner_user is not None:
        practitioner = Practitioner.objects.filter(user__uuid=payload.practitioner_user).select_related("user").first()
        if practitioner is None:
            raise ApiError("validation_error", fields={"practitioner_user": ["未找到，或您无权访问。"]})
    schedule = services.schedule_create(
        actor=actor,
        institution=institution,
        kind=payload.kind,
        name=payload.name,
        department=department,
        practitioner=practitioner,
        capability=payload.capability or "",
        location=payload.location,
    )
    return Status(201, schedule)


class TemplateIn(InputSchema):
    weekdays: str = Field(..., min_length=1, max_length=7, pattern=r"^[0-6]+$", description="0=周一 … 6=周日，如 01234")
    start_time: dt.time
    end_time: dt.time
    slot_minutes: int = Field(..., ge=5, le=720)
    capacity: int = Field(..., ge=1, le=500)
    valid_from: dt.date
    valid_until: dt.date | None = None
    on_public_holidays: bool = False
    on_makeup_workdays: bool = True


class TemplateOut(Schema):
    id: UUID
    weekdays: str
    start_time: dt.time
    end_time: dt.time
    slot_minutes: int
    capacity: int
    valid_from: dt.date
    valid_until: dt.date | None
    on_public_holidays: bool
    on_makeup_workdays: bool

    resolve_id = staticmethod(_uuid)


@router.get("/scheduling/schedules/{id}/templates", response={200: list[TemplateOut], ERRORS: ErrorOut})
def template_list(request: HttpRequest, id: UUID) -> list[Any]:
    """排班的出诊规则。"""
    schedule = access_schedule(actor_of(request), id)
    return list(schedule.templates.order_by("valid_from", "start_time"))


@router.post("/scheduling/schedules/{id}/templates", response={201: TemplateOut, ERRORS: ErrorOut})
def template_create(request: HttpRequest, id: UUID, payload: TemplateIn) -> Status[Any]:
    """添加出诊规则（星期、时段、号段长度、每段号源数）；之后用 generate 生成号源。"""
    actor = actor_of(request)
    schedule = access_schedule(actor, id, for_write=True)
    template = services.slot_template_add(actor=actor, schedule=schedule, **payload.model_dump())
    return Status(201, template)


class QuotaIn(InputSchema):
    kind: Literal["institution", "consortium", "green_channel"]
    institution: UUID | None = None
    consortium: UUID | None = None
    units_per_slot: int = Field(..., ge=1, le=500)
    release_hours_before: int = Field(24, ge=0, le=24 * 30)


class QuotaOut(Schema):
    id: UUID
    kind: str
    target: str
    units_per_slot: int
    release_hours_before: int
    is_active: bool

    resolve_id = staticmethod(_uuid)

    @staticmethod
    def resolve_target(obj: Any) -> str:
        return str(obj.target_label)


@router.get("/scheduling/schedules/{id}/quotas", response={200: list[QuotaOut], ERRORS: ErrorOut})
def quota_list(request: HttpRequest, id: UUID) -> list[Any]:
    """排班的预留号源（号源下沉、医联体共享、绿色通道）。"""
    schedule = access_schedule(actor_of(request), id)
    return list(schedule.quotas.select_related("institution", "consortium").order_by("kind", "pk"))


@router.post("/scheduling/schedules/{id}/quotas", response={201: QuotaOut, ERRORS: ErrorOut})
def quota_create(request: HttpRequest, id: UUID, payload: QuotaIn) -> Status[Any]:
    """为成员单位、医联体或绿色通道预留每个号段的号源，到期未用自动释放。"""
    from yilian.organizations.models import Consortium

    actor = actor_of(request)
    schedule = access_schedule(actor, id, for_write=True)
    institution = find(Institution.objects.visible_to(actor), payload.institution, field="institution")
    consortium = find(Consortium.objects.all(), payload.consortium, field="consortium")
    quota = services.quota_set(
        actor=actor,
        schedule=schedule,
        kind=payload.kind,
        units_per_slot=payload.units_per_slot,
        institution=institution,
        consortium=consortium,
        release_hours_before=payload.release_hours_before,
    )
    return Status(201, quota)


class GenerateIn(InputSchema):
    start_date: dt.date
    end_date: dt.date


class GenerateOut(Schema):
    created: int
    closed_by_leave: int


@router.post("/scheduling/schedules/{id}/generate", response={200: GenerateOut, ERRORS: ErrorOut})
def schedule_generate(request: HttpRequest, id: UUID, payload: GenerateIn) -> Any:
    """按出诊规则生成号源（跳过法定节假日、调休上班日出诊、停诊期间关闭）；已有号源不重复。"""
    schedule = access_schedule(actor_of(request), id, for_write=True)
    return services.slots_generate(schedule=schedule, start_date=payload.start_date, end_date=payload.end_date)


class LeaveIn(InputSchema):
    practitioner_user: UUID
    starts_at: dt.datetime
    ends_at: dt.datetime
    reason: str = Field(..., min_length=1, max_length=200)


class LeaveOut(Schema):
    id: UUID
    starts_at: dt.datetime
    ends_at: dt.datetime
    reason: str

    resolve_id = staticmethod(_uuid)


@router.post("/scheduling/leave", response={201: LeaveOut, ERRORS: ErrorOut})
def leave_create(request: HttpRequest, payload: LeaveIn) -> Status[Any]:
    """登记医生停诊/请假：期间的号源关闭，已预约的居民被取消并通知预约机构。"""
    from yilian.accounts.models import Practitioner

    actor = actor_of(request)
    actor.require(Permission.SCHEDULE_MANAGE)
    practitioner = Practitioner.objects.filter(user__uuid=payload.practitioner_user).select_related("user").first()
    if practitioner is None:
        raise ApiError("validation_error", fields={"practitioner_user": ["未找到，或您无权访问。"]})
    leave = services.leave_record(
        actor=actor, practitioner=practitioner, starts_at=payload.starts_at, ends_at=payload.ends_at, reason=payload.reason
    )
    return Status(201, leave)


class WardIn(InputSchema):
    institution: UUID
    name: str = Field(..., min_length=1, max_length=60)
    code: str = Field(..., min_length=1, max_length=20)
    department: UUID | None = None
    beds: int = Field(..., ge=0, le=services.MAX_WARD_BEDS)


class WardCreatedOut(Schema):
    id: UUID
    name: str
    code: str
    beds: int

    resolve_id = staticmethod(_uuid)

    @staticmethod
    def resolve_beds(obj: Ward) -> int:
        return obj.beds.count()


@router.post("/scheduling/wards", response={201: WardCreatedOut, ERRORS: ErrorOut})
def ward_create(request: HttpRequest, payload: WardIn) -> Status[Ward]:
    """新建病区及其床位（01、02 … 编号）。"""
    actor = actor_of(request)
    actor.require(Permission.SCHEDULE_MANAGE)
    institution = _managed(actor, payload.institution, "institution")
    department = find(Department.objects.filter(institution=institution), payload.department, field="department")
    ward = services.ward_create(
        actor=actor, institution=institution, name=payload.name, code=payload.code, beds=payload.beds, department=department
    )
    return Status(201, ward)


class BedActionIn(InputSchema):
    action: Literal["close", "open", "discharge"]


@router.post("/scheduling/beds/{id}/state", response={200: BedOut, ERRORS: ErrorOut})
def bed_state(request: HttpRequest, id: UUID, payload: BedActionIn) -> Bed:
    """床位状态：close 停用空闲床位、open 启用停用床位（管理权限）；discharge 占用床位出院（本院）。"""
    from yilian.scheduling.access import access_bed

    actor = actor_of(request)
    bed = access_bed(actor, id, for_write=payload.action != "discharge")
    if payload.action == "discharge":
        return services.bed_discharge(actor=actor, bed=bed)
    return services.bed_set_closed(actor=actor, bed=bed, closed=payload.action == "close")


@router.post("/scheduling/bed-reservations/{id}/admit", response={200: ReservationOut, ERRORS: ErrorOut})
def bed_reservation_admit(request: HttpRequest, id: UUID) -> BedReservation:
    """预留床位的患者到院：办理入住，床位变为占用（床位所在机构）。"""
    actor = actor_of(request)
    return services.bed_admit(actor=actor, reservation=access_reservation(actor, id))
