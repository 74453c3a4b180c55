"""/api/v1 for people: who am I, staff and their memberships, institution API keys.

Memberships are loaded through accounts.access; who may grant which role where is decided by
accounts.services (staff_create, membership_create, membership_update, api_key_create).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal
from uuid import UUID

from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from ninja import Query, Router, Schema, Status
from pydantic import Field

from yilian.accounts import services
from yilian.accounts.access import access_api_key, access_membership, access_person, api_key_scope_filter, visible_staff
from yilian.accounts.models import ApiKey, Membership, Practitioner, PractitionerTitle, User
from yilian.accounts.roles import Permission, Role
from yilian.accounts.selectors import staff_queryset
from yilian.core.api import (
    ERRORS,
    ErrorOut,
    InputSchema,
    Page,
    PageQuery,
    PatchSchema,
    actor_of,
    aware,
    find,
    max_length_of,
    paginate,
)
from yilian.organizations.api import AuthorityRef, DepartmentRef, InstitutionRef
from yilian.organizations.models import Department, HealthAuthority, Institution

router = Router(tags=["people 人员与接口密钥"])

MAX_PASSWORD_LENGTH = 128


# --- Me ----------------------------------------------------------------------------------------


class UserOut(Schema):
    id: UUID
    username: str
    full_name: str
    phone: str

    @staticmethod
    def resolve_id(obj: User) -> UUID:
        return obj.uuid


class MembershipOut(Schema):
    id: UUID
    role: Role
    role_label: str
    institution: InstitutionRef | None
    authority: AuthorityRef | None
    department: DepartmentRef | None
    started_on: dt.date
    ended_on: dt.date | None

    @staticmethod
    def resolve_id(obj: Membership) -> UUID:
        return obj.uuid

    @staticmethod
    def resolve_role_label(obj: Membership) -> str:
        return str(obj.get_role_display())


class ApiKeyRef(Schema):
    id: UUID
    name: str
    prefix: str
    institution: InstitutionRef

    @staticmethod
    def resolve_id(obj: ApiKey) -> UUID:
        return obj.uuid


class MeOut(Schema):
    user: UserOut | None = Field(description="登录用户；接口密钥调用时为 null")
    api_key: ApiKeyRef | None = Field(description="调用所用的接口密钥；会话调用时为 null")
    acting_membership: MembershipOut | None = Field(description="当前所用的任职（页面顶部切换）")
    memberships: list[MembershipOut] = Field(description="当前有效的全部任职")
    permissions: list[str]
    is_system_admin: bool


@router.get("/me", response={200: MeOut, ERRORS: ErrorOut})
def me(request: HttpRequest) -> dict[str, Any]:
    """当前调用者：用户、所用任职、全部任职与权限。"""
    actor = actor_of(request)
    return {
        "user": actor.user,
        "api_key": actor.api_key,
        "acting_membership": actor.membership,
        "memberships": getattr(request, "memberships", []) if actor.api_key is None else [],
        "permissions": sorted(actor.permissions),
        "is_system_admin": actor.is_system_admin,
    }


# --- Staff -------------------------------------------------------------------------------------


class PersonOut(UserOut):
    title: PractitionerTitle | None = Field(description="职称")
    specialty: str

    @staticmethod
    def resolve_title(obj: User) -> str | None:
        practitioner = getattr(obj, "practitioner", None)
        return practitioner.title if practitioner is not None else None

    @staticmethod
    def resolve_specialty(obj: User) -> str:
        practitioner = getattr(obj, "practitioner", None)
        return practitioner.specialty if practitioner is not None else ""


class StaffOut(MembershipOut):
    user: PersonOut
    is_active: bool
    is_current: bool = Field(description="今天有效")

    @staticmethod
    def resolve_is_current(obj: Membership) -> bool:
        today = timezone.localdate()
        return obj.is_active and obj.started_on <= today and (obj.ended_on is None or obj.ended_on > today)


class StaffListQuery(PageQuery):
    q: str | None = Field(None, max_length=100, description="姓名、用户名或手机号包含")
    institution: UUID | None = None
    role: Role | None = None
    status: Literal["current", "ended"] | None = Field(None, description="current 在岗；ended 已结束")


class StaffCreateIn(InputSchema):
    username: str = Field(max_length=max_length_of(User, "username"))
    full_name: str = Field(max_length=max_length_of(User, "full_name"))
    password: str = Field(max_length=MAX_PASSWORD_LENGTH)
    role: Role
    institution: UUID | None = Field(None, description="任职机构（卫健局角色不填）")
    authority: UUID | None = Field(None, description="任职的卫健部门（仅卫健局角色，系统管理员设置）")
    department: UUID | None = None
    phone: str = Field("", max_length=max_length_of(User, "phone"))
    title: PractitionerTitle | None = Field(None, description="职称；填写时建立执业人员档案")
    specialty: str = Field("", max_length=max_length_of(Practitioner, "specialty"))
    certificate_number: str | None = Field(None, max_length=max_length_of(Practitioner, "certificate_number"))
    started_on: dt.date | None = None


class MembershipCreateIn(InputSchema):
    role: Role
    institution: UUID | None = None
    authority: UUID | None = None
    department: UUID | None = None
    started_on: dt.date | None = None
    ended_on: dt.date | None = None


class StaffPatchIn(PatchSchema):
    nullable_fields = frozenset({"department", "ended_on"})

    role: Role | None = None
    department: UUID | None = None
    ended_on: dt.date | None = None


def _current(queryset: QuerySet[Membership]) -> QuerySet[Membership]:
    today = timezone.localdate()
    return queryset.filter(Q(ended_on__isnull=True) | Q(ended_on__gt=today), started_on__lte=today, is_active=True)


def _staff(membership: Membership) -> Membership:
    return staff_queryset().get(pk=membership.pk)


def _place(request: HttpRequest, institution: UUID | None, authority: UUID | None, department: UUID | None) -> dict[str, Any]:
    """The institution, authority and department a request names; services decide whether they may be used."""
    found_institution = find(Institution.objects.visible_to(actor_of(request)), institution, field="institution")
    return {
        "institution": found_institution,
        "authority": find(HealthAuthority.objects.all(), authority, field="authority"),
        "department": find(Department.objects.filter(institution=found_institution), department, field="department"),
    }


@router.get("/staff", response={200: Page[StaffOut], ERRORS: ErrorOut})
def staff_list(request: HttpRequest, query: Query[StaffListQuery]) -> dict[str, Any]:
    """人员（任职）列表：您可见范围内的任职。"""
    actor = actor_of(request)
    actor.require(Permission.STAFF_VIEW)
    memberships = visible_staff(actor, staff_queryset())
    if query.q:
        memberships = memberships.filter(
            Q(user__full_name__icontains=query.q) | Q(user__username__icontains=query.q) | Q(user__phone__icontains=query.q)
        )
    if query.institution:
        memberships = memberships.filter(institution__uuid=query.institution)
    if query.role:
        memberships = memberships.filter(role=query.role)
    if query.status == "current":
        memberships = _current(memberships)
    elif query.status == "ended":
        memberships = memberships.exclude(pk__in=_current(Membership.objects.all()).values("pk"))
    return paginate(memberships.order_by("institution__name", "user__full_name", "user__username", "started_on", "id"), query)


@router.post("/staff", response={201: StaffOut, ERRORS: ErrorOut})
def staff_create(request: HttpRequest, payload: StaffCreateIn) -> Status[Membership]:
    """新增人员：建立账号、执业人员档案（填写职称时）与首个任职。"""
    actor = actor_of(request)
    actor.require(Permission.STAFF_MANAGE)
    membership = services.staff_create(
        actor=actor,
        username=payload.username,
        full_name=payload.full_name,
        password=payload.password,
        role=payload.role,
        phone=payload.phone,
        title=payload.title or "",
        specialty=payload.specialty,
        certificate_number=payload.certificate_number or None,
        started_on=payload.started_on,
        **_place(request, payload.institution, payload.authority, payload.department),
    )
    return Status(201, _staff(membership))


@router.get("/staff/{membership_id}", response={200: StaffOut, ERRORS: ErrorOut})
def staff_detail(request: HttpRequest, membership_id: UUID) -> Membership:
    """一条任职。"""
    return _staff(access_membership(actor_of(request), membership_id))


@router.patch("/staff/{membership_id}", response={200: StaffOut, ERRORS: ErrorOut})
def staff_patch(request: HttpRequest, membership_id: UUID, payload: StaffPatchIn) -> Membership:
    """修改任职：角色、科室，或设置结束日期。"""
    actor = actor_of(request)
    membership = access_membership(actor, membership_id, for_write=True)
    sent = payload.model_fields_set
    department = membership.department
    if "department" in sent:
        department = find(Department.objects.filter(institution=membership.institution), payload.department, field="department")
    services.membership_update(
        actor=actor,
        membership=membership,
        role=payload.role if payload.role is not None else membership.role,
        department=department,
        ended_on=payload.ended_on if "ended_on" in sent else membership.ended_on,
    )
    return _staff(membership)


@router.post("/users/{user_id}/memberships", response={201: StaffOut, ERRORS: ErrorOut})
def membership_create(request: HttpRequest, user_id: UUID, payload: MembershipCreateIn) -> Status[Membership]:
    """为已有人员新增任职（多点执业、派驻下沉）。"""
    actor = actor_of(request)
    person = access_person(actor, user_id)
    actor.require(Permission.STAFF_MANAGE)
    membership = services.membership_create(
        actor=actor,
        user=person,
        role=payload.role,
        started_on=payload.started_on,
        ended_on=payload.ended_on,
        **_place(request, payload.institution, payload.authority, payload.department),
    )
    return Status(201, _staff(membership))


# --- API keys ----------------------------------------------------------------------------------


class ApiKeyListQuery(PageQuery):
    q: str | None = Field(None, max_length=100, description="名称或前缀包含")
    institution: UUID | None = None
    status: Literal["usable", "revoked"] | None = None


class ApiKeyOut(ApiKeyRef):
    created_at: dt.datetime
    created_by: str | None
    expires_at: dt.datetime | None
    revoked_at: dt.datetime | None
    last_used_at: dt.datetime | None
    is_usable: bool

    @staticmethod
    def resolve_created_by(obj: ApiKey) -> str | None:
        return str(obj.created_by) if obj.created_by is not None else None


class ApiKeyCreatedOut(ApiKeyOut):
    key: str = Field(description="密钥原文：只在此响应中出现一次，系统只保存其摘要")


class ApiKeyCreateIn(InputSchema):
    institution: UUID
    name: str = Field(max_length=max_length_of(ApiKey, "name"))
    expires_at: dt.datetime | None = Field(None, description="过期时间；不带时区时按北京时间")


def _api_keys(queryset: QuerySet[ApiKey]) -> QuerySet[ApiKey]:
    return queryset.select_related("institution", "created_by")


@router.get("/api-keys", response={200: Page[ApiKeyOut], ERRORS: ErrorOut})
def api_key_list(request: HttpRequest, query: Query[ApiKeyListQuery]) -> dict[str, Any]:
    """接口密钥列表：您可管理的机构的密钥。"""
    actor = actor_of(request)
    actor.require(Permission.API_KEY_MANAGE)
    keys = _api_keys(ApiKey.objects.filter(api_key_scope_filter(actor)))
    if query.q:
        keys = keys.filter(Q(name__icontains=query.q) | Q(prefix__icontains=query.q))
    if query.institution:
        keys = keys.filter(institution__uuid=query.institution)
    if query.status == "usable":
        keys = keys.filter(Q(revoked_at__isnull=True) & (Q(expires_at__isnull=True) | Q(expires_at__gt=timezone.now())))
    elif query.status == "revoked":
        keys = keys.filter(revoked_at__isnull=False)
    return paginate(keys.order_by("institution__name", "-created_at", "id"), query)


@router.post("/api-keys", response={201: ApiKeyCreatedOut, ERRORS: ErrorOut})
def api_key_create(request: HttpRequest, response: HttpResponse, payload: ApiKeyCreateIn) -> Status[ApiKey]:
    """签发接口密钥。密钥原文只返回这一次。"""
    actor = actor_of(request)
    actor.require(Permission.API_KEY_MANAGE)
    institution = find(Institution.objects.visible_to(actor), payload.institution, field="institution")
    key, raw = services.api_key_create(
        actor=actor,
        institution=institution,
        name=payload.name,
        expires_at=aware(payload.expires_at),
    )
    response["Cache-Control"] = "no-store"
    key = _api_keys(ApiKey.objects.filter(pk=key.pk)).get()
    key.key = raw  # type: ignore[attr-defined]
    return Status(201, key)


@router.post("/api-keys/{id}/revoke", response={200: ApiKeyOut, ERRORS: ErrorOut})
def api_key_revoke(request: HttpRequest, id: UUID) -> ApiKey:
    """吊销接口密钥：使用它的系统立即无法访问。已吊销的密钥保持原样。"""
    key = access_api_key(actor_of(request), id)
    if key.revoked_at is None:
        services.api_key_revoke(api_key=key)
    return _api_keys(ApiKey.objects.filter(pk=key.pk)).get()
