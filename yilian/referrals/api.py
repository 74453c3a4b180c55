"""/api/v1 for referrals (双向转诊): lists (outbox, inbox, the coordinator's board), one referral,
submitting and each step of the lifecycle, follow-up tasks, the destination suggestion, the
criteria catalogue and the acceptance deadlines per consortium.

A referral names a patient: lists and reads go through `access.referrals_visible_to` /
`access_referral` and every patient shown is written to the access log. Steps call the services,
which check the side (sender or receiver) and the state; a step from the wrong side is 403, from the
wrong state 422, a taken slot or a duplicate open referral 409. Member systems (API keys) use the
FHIR facade (/fhir ServiceRequest, Task, Appointment), which acts as a named practitioner.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal
from uuid import UUID

from django.db.models import QuerySet
from django.http import Http404, HttpRequest
from django.utils import timezone
from ninja import Query, Router, Schema, Status
from pydantic import Field

from yilian.accounts.actors import Actor
from yilian.accounts.models import Membership, User
from yilian.accounts.roles import Permission
from yilian.core.api import (
    ERRORS,
    ApiError,
    ErrorOut,
    InputSchema,
    Page,
    PageQuery,
    PatchSchema,
    actor_of,
    field_error,
    find,
    max_length_of,
    paginate,
)
from yilian.organizations.access import consortium_scope_filter, institution_scope_filter, managed_consortium_filter
from yilian.organizations.api import ConsortiumRef, DepartmentRef, InstitutionRef
from yilian.organizations.models import Capability, Consortium, Department, Institution
from yilian.patients.access import access_patient, patients_listed
from yilian.referrals import selectors, services
from yilian.referrals.access import (
    access_criterion,
    access_follow_up,
    access_referral,
    criteria_scope_filter,
    holding_institution_ids,
    is_receiver,
    is_sender,
    referrals_visible_to,
)
from yilian.referrals.models import (
    Direction,
    DiseaseArea,
    FollowUpStatus,
    FollowUpTask,
    Referral,
    ReferralCriterion,
    ReferralDeadline,
    ReferralEvent,
    ReferralStatus,
    ShareScope,
    Urgency,
)
from yilian.scheduling.access import schedule_scope_filter
from yilian.scheduling.models import Bed, Slot
from yilian.scheduling.services import MAX_RESERVATION_HOURS

router = Router(tags=["referrals 双向转诊"])

MAX_WINDOW_DAYS = 92
MAX_CRITERIA = 50
MAX_CONSORTIA = 100
R = Referral


def _uuid(obj: Any) -> UUID:
    return obj.uuid  # type: ignore[no-any-return]


# --- schemas out ---------------------------------------------------------------------------------


class PatientRef(Schema):
    id: UUID
    name: str

    resolve_id = staticmethod(_uuid)


class UserRef(Schema):
    id: UUID
    name: str

    resolve_id = staticmethod(_uuid)

    @staticmethod
    def resolve_name(obj: User) -> str:
        return obj.full_name or obj.username


class ReferralOut(Schema):
    id: UUID
    number: str = Field(description="转诊单号")
    patient: PatientRef
    direction: Direction
    urgency: Urgency
    status: ReferralStatus
    sender_institution: InstitutionRef
    sender_department: DepartmentRef | None
    sender_name: str
    destination_institution: InstitutionRef
    destination_department: DepartmentRef | None
    diagnosis_code: str
    diagnosis_name: str
    submitted_at: dt.datetime
    accept_by: dt.datetime = Field(description="接收时限")
    expires_at: dt.datetime
    overdue: bool = Field(description="待接收且已超过接收时限")
    appointment_start: dt.datetime | None

    resolve_id = staticmethod(_uuid)

    @staticmethod
    def resolve_overdue(obj: Referral) -> bool:
        return obj.status == ReferralStatus.SUBMITTED and obj.accept_by < timezone.now()


class EventOut(Schema):
    at: dt.datetime
    kind: str
    label: str
    user: str
    institution: str
    note: str

    @staticmethod
    def resolve_label(obj: ReferralEvent) -> str:
        return obj.get_kind_display()

    @staticmethod
    def resolve_user(obj: ReferralEvent) -> str:
        return (obj.user.full_name or obj.user.username) if obj.user is not None else ""

    @staticmethod
    def resolve_institution(obj: ReferralEvent) -> str:
        return obj.institution.display_name if obj.institution is not None else ""


class FollowUpOut(Schema):
    id: UUID
    referral_id: UUID
    patient: PatientRef
    institution: InstitutionRef
    responsible: UserRef
    due_date: dt.date
    what_to_check: str
    status: FollowUpStatus
    done_at: dt.datetime | None
    result: str

    resolve_id = staticmethod(_uuid)

    @staticmethod
    def resolve_referral_id(obj: FollowUpTask) -> UUID:
        return obj.referral.uuid


class ReferralDetailOut(ReferralOut):
    consortium: ConsortiumRef
    reason: str
    clinical_summary: str
    criteria: list[dict[str, Any]] = Field(description="提交时勾选的转诊标准（副本）")
    required_capability: str
    wanted_from: dt.date | None
    wanted_to: dt.date | None
    share_scope: ShareScope
    escalated_at: dt.datetime | None
    accepted_at: dt.datetime | None
    receiver_note: str
    booking_id: UUID | None = Field(description="预约（/api/v1/scheduling/bookings/{id}）")
    bed_reservation_id: UUID | None
    instructions: str
    arrived_at: dt.datetime | None
    arrival_source: str
    completed_at: dt.datetime | None
    result_summary: str
    ended_at: dt.datetime | None
    end_reason: str
    is_sender: bool = Field(description="当前身份是转出方")
    is_receiver: bool = Field(description="当前身份是接收方")
    events: list[EventOut]
    follow_ups: list[FollowUpOut]

    @staticmethod
    def resolve_booking_id(obj: Referral) -> UUID | None:
        return obj.booking.uuid if obj.booking is not None else None

    @staticmethod
    def resolve_bed_reservation_id(obj: Referral) -> UUID | None:
        return obj.bed_reservation.uuid if obj.bed_reservation is not None else None

    @staticmethod
    def resolve_events(obj: Referral) -> list[ReferralEvent]:
        return list(obj.events.select_related("user", "institution"))

    @staticmethod
    def resolve_follow_ups(obj: Referral) -> list[FollowUpTask]:
        return list(obj.follow_ups.select_related("referral", "patient", "institution", "responsible"))


def _detail(request: HttpRequest, actor: Actor, key: UUID) -> Referral:
    """One referral as the actor may see it, with its history; the patient shown is logged."""
    referral = access_referral(actor, key)
    patients_listed(actor, [referral.patient], path=request.path)
    referral.is_sender = is_sender(actor, referral)  # type: ignore[attr-defined]
    referral.is_receiver = is_receiver(actor, referral)  # type: ignore[attr-defined]
    return referral


# --- lists and one referral ------------------------------------------------------------------------


class ReferralListQuery(PageQuery):
    box: Literal["all", "outbox", "inbox", "board"] = Field(
        "all", description="outbox 本机构转出 | inbox 转入本机构 | board 转诊中心看板（调度员） | all 可见的全部"
    )
    status: ReferralStatus | None = None
    direction: Direction | None = None
    urgency: Urgency | None = None
    overdue: bool | None = Field(None, description="true：只看超过接收时限仍未接收的")


def _require_clinical(actor: Actor) -> None:
    if actor.api_key is not None:
        raise ApiError("permission_denied", "机构接口密钥请使用 /fhir 的 ServiceRequest 与 Task。")
    actor.require(Permission.PATIENT_VIEW)


@router.get("/referrals", response={200: Page[ReferralOut], ERRORS: ErrorOut})
def referral_list(request: HttpRequest, query: Query[ReferralListQuery]) -> dict[str, Any]:
    """转诊单列表：转出（outbox）、转入（inbox）、转诊中心看板（board，调度员，按提交时间先后）。列出的居民记入访问日志。"""
    actor = actor_of(request)
    _require_clinical(actor)
    referrals: QuerySet[Referral]
    if query.box == "outbox":
        referrals = selectors.outbox(actor)
    elif query.box == "inbox":
        referrals = selectors.inbox(actor)
    elif query.box == "board":
        actor.require(Permission.REFERRAL_COORDINATE)
        referrals = selectors.board(actor)
    else:
        referrals = referrals_visible_to(actor)
    referrals = referrals.select_related(*selectors.LIST_RELATED)
    if query.status:
        referrals = referrals.filter(status=query.status)
    if query.direction:
        referrals = referrals.filter(direction=query.direction)
    if query.urgency:
        referrals = referrals.filter(urgency=query.urgency)
    if query.overdue is not None:
        late = {"status": ReferralStatus.SUBMITTED, "accept_by__lt": timezone.now()}
        referrals = referrals.filter(**late) if query.overdue else referrals.exclude(**late)
    page = paginate(referrals, query)
    patients_listed(actor, list({r.patient_id: r.patient for r in page["items"]}.values()), path=request.get_full_path())
    return page


class ReferralIn(InputSchema):
    patient: UUID
    direction: Direction
    urgency: Urgency = Urgency.ROUTINE
    destination_institution: UUID
    destination_department: UUID | None = None
    reason: str = Field(max_length=max_length_of(R, "reason"))
    diagnosis_name: str = Field(max_length=max_length_of(R, "diagnosis_name"))
    diagnosis_code: str = Field("", max_length=max_length_of(R, "diagnosis_code"), description="ICD-10（含国家临床版扩展码）")
    clinical_summary: str = Field("", max_length=max_length_of(R, "clinical_summary"))
    criteria: list[UUID] = Field(default_factory=list, max_length=MAX_CRITERIA, description="勾选的转诊标准")
    required_capability: Capability | None = Field(None, description="需要的能力，如 pci、dialysis")
    wanted_from: dt.date | None = None
    wanted_to: dt.date | None = None
    share_scope: ShareScope = ShareScope.RECORD
    sender_phone: str = Field("", max_length=max_length_of(R, "sender_phone"))


def _patient_field(actor: Actor, key: UUID, request: HttpRequest) -> Any:
    try:
        return access_patient(actor, key, path=request.path)
    except Http404 as exc:  # the gatekeeper's 404, as a field error of this body
        raise field_error("patient", "未找到，或您无权访问。") from exc


@router.post("/referrals", response={201: ReferralDetailOut, ERRORS: ErrorOut})
def referral_create(request: HttpRequest, payload: ReferralIn) -> Status[Referral]:
    """发起转诊：为可查看的居民转往同一医联体内符合分级的机构，并为接收方开通有期限的档案授权。

    同一居民同一方向已有未结束的转诊单返回 409。"""
    actor = actor_of(request)
    _require_clinical(actor)
    patient = _patient_field(actor, payload.patient, request)
    destination = find(Institution.objects.all(), payload.destination_institution, field="destination_institution")
    department = find(
        Department.objects.filter(institution_scope_filter(actor, prefix="institution__")),
        payload.destination_department,
        field="destination_department",
    )
    criteria_ids: list[int] = []
    if payload.criteria:
        found = dict(
            ReferralCriterion.objects.filter(criteria_scope_filter(actor), uuid__in=payload.criteria).values_list("uuid", "pk")
        )
        if len(found) != len(set(payload.criteria)):
            raise field_error("criteria", "所选转诊标准无效。")
        criteria_ids = [found[key] for key in dict.fromkeys(payload.criteria)]
    referral = services.referral_submit(
        actor=actor,
        patient=patient,
        direction=payload.direction,
        urgency=payload.urgency,
        destination_institution=destination,
        destination_department=department,
        reason=payload.reason,
        diagnosis_name=payload.diagnosis_name,
        diagnosis_code=payload.diagnosis_code,
        clinical_summary=payload.clinical_summary,
        criteria_ids=criteria_ids,
        required_capability=payload.required_capability or "",
        wanted_from=payload.wanted_from,
        wanted_to=payload.wanted_to,
        share_scope=payload.share_scope,
        sender_phone=payload.sender_phone,
    )
    return Status(201, _detail(request, actor, referral.uuid))


# --- follow-up tasks (declared before /referrals/{id}) ---------------------------------------------


class FollowUpListQuery(PageQuery):
    status: FollowUpStatus = FollowUpStatus.OPEN


@router.get("/referrals/follow-ups", response={200: Page[FollowUpOut], ERRORS: ErrorOut})
def follow_up_list(request: HttpRequest, query: Query[FollowUpListQuery]) -> dict[str, Any]:
    """我的随访任务：本人负责的与本机构（及所属村卫生室）的，按随访日期先后。列出的居民记入访问日志。"""
    actor = actor_of(request)
    _require_clinical(actor)
    page = paginate(selectors.follow_ups_for(actor, status=query.status), query)
    patients_listed(actor, list({t.patient_id: t.patient for t in page["items"]}.values()), path=request.get_full_path())
    return page


class FollowUpDoneIn(InputSchema):
    result: str = Field(min_length=1, max_length=max_length_of(FollowUpTask, "result"))


@router.post("/referrals/follow-ups/{id}/done", response={200: FollowUpOut, ERRORS: ErrorOut})
def follow_up_mark_done(request: HttpRequest, id: UUID, payload: FollowUpDoneIn) -> FollowUpTask:
    """登记随访结果（责任医生或负责机构）。"""
    actor = actor_of(request)
    _require_clinical(actor)
    task = services.follow_up_done(actor=actor, task=access_follow_up(actor, id), result=payload.result)
    patients_listed(actor, [task.patient], path=request.path)
    return access_follow_up(actor, task.uuid)


# --- destination suggestion --------------------------------------------------------------------------


class SuggestionQuery(InputSchema):
    direction: Direction
    urgency: Urgency = Urgency.ROUTINE
    capability: Capability | None = Field(None, description="需要的能力，如 pci、dialysis")
    date_from: dt.date | None = Field(None, description="期望就诊开始日期，默认今天")
    date_to: dt.date | None = Field(None, description=f"默认开始日后 14 天，跨度最多 {MAX_WINDOW_DAYS} 天")


class SuggestionOut(Schema):
    institution: InstitutionRef
    department: DepartmentRef | None
    score: int
    free_units: int = Field(description="期望时段内本机构可用的余号")
    reserved_units: int = Field(description="其中为本机构预留的（号源下沉）")
    free_beds: int
    reasons: list[str]
    warnings: list[str]


@router.get("/referrals/destinations", response={200: list[SuggestionOut], ERRORS: ErrorOut})
def destination_list(request: HttpRequest, query: Query[SuggestionQuery]) -> list[selectors.Suggestion]:
    """推荐接收科室：按所需能力、期望时段的余号与空床、分级规则排序，并给出理由。"""
    actor = actor_of(request)
    _require_clinical(actor)
    date_from = query.date_from or timezone.localdate()
    date_to = query.date_to or date_from + dt.timedelta(days=14)
    if date_to < date_from or (date_to - date_from).days > MAX_WINDOW_DAYS:
        raise field_error("date_to", f"结束日期须在开始日期之后 {MAX_WINDOW_DAYS} 天以内。")
    return selectors.destination_suggest(
        actor,
        direction=query.direction,
        urgency=query.urgency,
        required_capability=query.capability or "",
        date_from=date_from,
        date_to=date_to,
    )


# --- the criteria catalogue ---------------------------------------------------------------------------


class CriterionOut(Schema):
    id: UUID
    consortium: ConsortiumRef | None = Field(description="为空：全县通用（种子数据）")
    disease: DiseaseArea
    direction: Direction
    urgency: Urgency
    text: str
    required_capability: str
    position: int
    is_active: bool

    resolve_id = staticmethod(_uuid)


class CriterionListQuery(PageQuery):
    consortium: UUID | None = Field(None, description="只看该医联体的（含全县通用）")
    disease: DiseaseArea | None = None
    direction: Direction | None = None
    include_inactive: bool = False


@router.get("/referrals/criteria", response={200: Page[CriterionOut], ERRORS: ErrorOut})
def criterion_list(request: HttpRequest, query: Query[CriterionListQuery]) -> dict[str, Any]:
    """转诊标准目录：全县通用的与本机构所在医联体的，发起转诊时作为勾选清单。"""
    actor = actor_of(request)
    actor.require(Permission.STRUCTURE_VIEW)
    criteria = ReferralCriterion.objects.filter(criteria_scope_filter(actor)).select_related("consortium")
    if query.consortium:
        consortium = find(Consortium.objects.filter(consortium_scope_filter(actor)), query.consortium, field="consortium")
        criteria = criteria.filter(consortium__isnull=True) | criteria.filter(consortium=consortium)
    if query.disease:
        criteria = criteria.filter(disease=query.disease)
    if query.direction:
        criteria = criteria.filter(direction=query.direction)
    if not query.include_inactive:
        criteria = criteria.filter(is_active=True)
    return paginate(criteria.order_by("disease", "direction", "position", "id"), query)


class CriterionIn(InputSchema):
    consortium: UUID = Field(description="由本机构牵头的医联体")
    disease: DiseaseArea
    direction: Direction
    urgency: Urgency = Urgency.ROUTINE
    text: str = Field(min_length=1, max_length=max_length_of(ReferralCriterion, "text"))
    required_capability: Capability | None = None
    position: int = Field(0, ge=0, le=1000)


@router.post("/referrals/criteria", response={201: CriterionOut, ERRORS: ErrorOut})
def criterion_create(request: HttpRequest, payload: CriterionIn) -> Status[ReferralCriterion]:
    """新增转诊标准（牵头医院的医联体管理员）。"""
    actor = actor_of(request)
    actor.require(Permission.CONSORTIUM_MANAGE)
    consortium = find(Consortium.objects.filter(managed_consortium_filter(actor)), payload.consortium, field="consortium")
    criterion = services.criterion_create(
        actor=actor,
        consortium=consortium,
        disease=payload.disease,
        direction=payload.direction,
        urgency=payload.urgency,
        text=payload.text,
        required_capability=payload.required_capability or "",
        position=payload.position,
    )
    return Status(201, criterion)


class CriterionPatch(PatchSchema):
    disease: DiseaseArea | None = None
    direction: Direction | None = None
    urgency: Urgency | None = None
    text: str | None = Field(None, min_length=1, max_length=max_length_of(ReferralCriterion, "text"))
    required_capability: str | None = Field(
        None, max_length=max_length_of(ReferralCriterion, "required_capability"), description="能力代码，如 pci；空字符串：不要求"
    )
    position: int | None = Field(None, ge=0, le=1000)
    is_active: bool | None = None


@router.patch("/referrals/criteria/{id}", response={200: CriterionOut, ERRORS: ErrorOut})
def criterion_edit(request: HttpRequest, id: UUID, payload: CriterionPatch) -> ReferralCriterion:
    """修改转诊标准（只改提交的字段）；is_active=false 即停用。"""
    actor = actor_of(request)
    criterion = access_criterion(actor, id, for_write=True)
    return services.criterion_update(actor=actor, criterion=criterion, **payload.dict(exclude_unset=True))


@router.post("/referrals/criteria/{id}/deactivate", response={200: CriterionOut, ERRORS: ErrorOut})
def criterion_deactivate(request: HttpRequest, id: UUID) -> ReferralCriterion:
    """停用转诊标准：不再出现在勾选清单中，已提交的转诊单保留原勾选内容。"""
    actor = actor_of(request)
    criterion = access_criterion(actor, id, for_write=True)
    return services.criterion_update(actor=actor, criterion=criterion, is_active=False)


# --- deadlines -------------------------------------------------------------------------------------


class DeadlineOut(Schema):
    consortium: ConsortiumRef
    urgency: Urgency
    accept_minutes: int = Field(description="接收时限（分钟）")
    expire_minutes: int = Field(description="未接收自动过期（分钟）")
    is_default: bool = Field(description="未单独设置，使用系统默认值")


class DeadlineListQuery(InputSchema):
    consortium: UUID | None = None


@router.get("/referrals/deadlines", response={200: list[DeadlineOut], ERRORS: ErrorOut})
def deadline_list(request: HttpRequest, query: Query[DeadlineListQuery]) -> list[dict[str, Any]]:
    """各医联体的转诊接收时限与过期时限（按紧急程度）。"""
    actor = actor_of(request)
    actor.require(Permission.STRUCTURE_VIEW)
    consortia = Consortium.objects.filter(consortium_scope_filter(actor)).order_by("name")
    if query.consortium:
        consortia = consortia.filter(pk=find(consortia, query.consortium, field="consortium").pk)
    rows = {(d.consortium_id, d.urgency): d for d in ReferralDeadline.objects.filter(consortium__in=consortia)}
    out = []
    for consortium in consortia[:MAX_CONSORTIA]:
        for urgency in Urgency.values:
            row = rows.get((consortium.pk, urgency))
            accept, expire = (row.accept_minutes, row.expire_minutes) if row else services.deadlines_for(consortium, urgency)
            out.append(
                {
                    "consortium": consortium,
                    "urgency": urgency,
                    "accept_minutes": accept,
                    "expire_minutes": expire,
                    "is_default": row is None,
                }
            )
    return out


class DeadlineIn(InputSchema):
    accept_minutes: int = Field(ge=5, le=30 * 24 * 60)
    expire_minutes: int = Field(ge=5, le=90 * 24 * 60)


@router.put("/referrals/deadlines/{consortium}/{urgency}", response={200: DeadlineOut, ERRORS: ErrorOut})
def deadline_put(request: HttpRequest, consortium: UUID, urgency: Urgency, payload: DeadlineIn) -> dict[str, Any]:
    """设置医联体某一紧急程度的接收时限与过期时限（牵头医院的医联体管理员），对此后提交的转诊单生效。"""
    actor = actor_of(request)
    actor.require(Permission.CONSORTIUM_MANAGE)
    found = Consortium.objects.filter(managed_consortium_filter(actor), uuid=consortium).first()
    if found is None:
        raise Http404
    row = services.deadline_set(
        actor=actor,
        consortium=found,
        urgency=urgency,
        accept_minutes=payload.accept_minutes,
        expire_minutes=payload.expire_minutes,
    )
    return {
        "consortium": found,
        "urgency": row.urgency,
        "accept_minutes": row.accept_minutes,
        "expire_minutes": row.expire_minutes,
        "is_default": False,
    }


# --- one referral and its steps -----------------------------------------------------------------------


@router.get("/referrals/{id}", response={200: ReferralDetailOut, ERRORS: ErrorOut})
def referral_detail(request: HttpRequest, id: UUID) -> Referral:
    """转诊单详情，含流转记录与随访任务。本次查看记入访问日志。"""
    actor = actor_of(request)
    _require_clinical(actor)
    return _detail(request, actor, id)


class FollowUpIn(InputSchema):
    responsible: UUID = Field(description="责任医生（接收机构或其村卫生室的医生）的用户标识")
    due_date: dt.date
    what_to_check: str = Field(min_length=1, max_length=max_length_of(FollowUpTask, "what_to_check"))


def _follow_up_specs(referral: Referral, items: list[FollowUpIn]) -> list[services.FollowUpSpec]:
    """Follow-up tasks named by UUID; the responsible doctor is looked up among the receiving
    institution's (and its village clinics') current staff only."""
    staff = User.objects.filter(
        is_active=True,
        memberships__in=Membership.objects.current().filter(
            institution_id__in=holding_institution_ids(referral.destination_institution)
        ),
    ).distinct()
    specs = []
    for index, item in enumerate(items):
        responsible = staff.filter(uuid=item.responsible).first()
        if responsible is None:
            raise field_error(f"follow_ups.{index}.responsible", "责任医生须为接收机构（或其村卫生室）的医生。")
        specs.append(services.FollowUpSpec(responsible=responsible, due_date=item.due_date, what_to_check=item.what_to_check))
    return specs


class BookingChoice(InputSchema):
    slot: UUID | None = Field(None, description="接收机构的号源")
    bed: UUID | None = Field(None, description="接收机构的床位")
    bed_hours: int = Field(24, ge=1, le=MAX_RESERVATION_HOURS, description="床位保留小时数")
    instructions: str = Field("", max_length=max_length_of(R, "instructions"), description="就诊须知：地点、需携带的资料")


def _units(actor: Actor, payload: BookingChoice) -> tuple[Slot | None, Bed | None]:
    slots = Slot.objects.select_related("schedule__institution").filter(schedule_scope_filter(actor, prefix="schedule__"))
    beds = Bed.objects.select_related("ward__institution").filter(schedule_scope_filter(actor, prefix="ward__"))
    return find(slots, payload.slot, field="slot"), find(beds, payload.bed, field="bed")


class AcceptIn(BookingChoice):
    note: str = Field("", max_length=max_length_of(R, "receiver_note"), description="接收意见")
    follow_ups: list[FollowUpIn] = Field(
        default_factory=list, max_length=services.MAX_FOLLOW_UPS, description="随访任务（下转接收时至少一项）"
    )


@router.post("/referrals/{id}/accept", response={200: ReferralDetailOut, ERRORS: ErrorOut})
def referral_accept(request: HttpRequest, id: UUID, payload: AcceptIn) -> Referral:
    """接收转诊（接收方）：可同时预约号源或床位（即为已预约）、填写就诊须知并安排随访任务。

    号源约满或床位不可用返回 409/422，且不做任何改动。"""
    actor = actor_of(request)
    _require_clinical(actor)
    referral = access_referral(actor, id)
    slot, bed = _units(actor, payload)
    services.referral_accept(
        actor=actor,
        referral=referral,
        note=payload.note,
        slot=slot,
        bed=bed,
        bed_hours=payload.bed_hours,
        instructions=payload.instructions,
        follow_ups=_follow_up_specs(referral, payload.follow_ups),
    )
    return _detail(request, actor, id)


@router.post("/referrals/{id}/schedule", response={200: ReferralDetailOut, ERRORS: ErrorOut})
def referral_schedule(request: HttpRequest, id: UUID, payload: BookingChoice) -> Referral:
    """预约（或改约）已接收转诊单的号源或床位（接收方）。新号源约到后才退回原号源。"""
    actor = actor_of(request)
    _require_clinical(actor)
    referral = access_referral(actor, id)
    slot, bed = _units(actor, payload)
    services.referral_schedule(
        actor=actor, referral=referral, slot=slot, bed=bed, bed_hours=payload.bed_hours, instructions=payload.instructions
    )
    return _detail(request, actor, id)


class ReasonIn(InputSchema):
    reason: str = Field(min_length=1, max_length=max_length_of(R, "end_reason"))


@router.post("/referrals/{id}/reject", response={200: ReferralDetailOut, ERRORS: ErrorOut})
def referral_reject(request: HttpRequest, id: UUID, payload: ReasonIn) -> Referral:
    """拒绝转诊（接收方，须填写原因）：授权随即结束，转出方收到通知。"""
    actor = actor_of(request)
    _require_clinical(actor)
    services.referral_reject(actor=actor, referral=access_referral(actor, id), reason=payload.reason)
    return _detail(request, actor, id)


@router.post("/referrals/{id}/cancel", response={200: ReferralDetailOut, ERRORS: ErrorOut})
def referral_cancel(request: HttpRequest, id: UUID, payload: ReasonIn) -> Referral:
    """撤销转诊（转出方，患者到诊前）：号源或床位退回，授权结束。"""
    actor = actor_of(request)
    _require_clinical(actor)
    services.referral_cancel(actor=actor, referral=access_referral(actor, id), reason=payload.reason)
    return _detail(request, actor, id)


@router.post("/referrals/{id}/arrive", response={200: ReferralDetailOut, ERRORS: ErrorOut})
def referral_arrive(request: HttpRequest, id: UUID) -> Referral:
    """确认患者到诊（接收方；接入数据显示就诊时会自动确认）。"""
    actor = actor_of(request)
    _require_clinical(actor)
    services.referral_confirm_arrival(actor=actor, referral=access_referral(actor, id))
    return _detail(request, actor, id)


class CompleteIn(InputSchema):
    result_summary: str = Field(min_length=1, max_length=max_length_of(R, "result_summary"))


@router.post("/referrals/{id}/complete", response={200: ReferralDetailOut, ERRORS: ErrorOut})
def referral_complete(request: HttpRequest, id: UUID, payload: CompleteIn) -> Referral:
    """完成转诊（接收方）：回传诊疗结果或出院小结；下转单须先有随访任务。"""
    actor = actor_of(request)
    _require_clinical(actor)
    services.referral_complete(actor=actor, referral=access_referral(actor, id), result_summary=payload.result_summary)
    return _detail(request, actor, id)


@router.post("/referrals/{id}/follow-ups", response={201: FollowUpOut, ERRORS: ErrorOut})
def follow_up_create(request: HttpRequest, id: UUID, payload: FollowUpIn) -> Status[FollowUpTask]:
    """为已接收的转诊单增加随访任务（接收方）。"""
    actor = actor_of(request)
    _require_clinical(actor)
    referral = access_referral(actor, id)
    (spec,) = _follow_up_specs(referral, [payload])
    task = services.follow_up_add(actor=actor, referral=referral, spec=spec)
    patients_listed(actor, [referral.patient], path=request.path)
    return Status(201, FollowUpTask.objects.select_related("referral", "patient", "institution", "responsible").get(pk=task.pk))
