"""/api/v1 for the consortium structure: consortia and their members, institutions, departments, grids.

Reads go through `visible_to(actor)` and the `access_*` gatekeepers (404 for missing and
forbidden alike); writes call organizations.services, which decide who may do what.
Institutions are deactivated, never deleted: there is no DELETE route.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from uuid import UUID

from django.db.models import Count, IntegerField, OuterRef, Prefetch, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce
from django.http import Http404, HttpRequest
from django.utils import timezone
from ninja import Query, Router, Schema, Status
from pydantic import Field

from yilian.accounts.models import Membership
from yilian.accounts.roles import Permission
from yilian.core.api import (
    ERRORS,
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
from yilian.organizations import services
from yilian.organizations.access import (
    access_consortium,
    access_department,
    access_grid,
    access_institution,
)
from yilian.organizations.models import (
    MAX_POPULATION,
    Capability,
    CentreKind,
    Consortium,
    ConsortiumKind,
    ConsortiumMembership,
    Department,
    GridKind,
    HealthAuthority,
    Institution,
    InstitutionKind,
    InstitutionLevel,
    MemberRole,
    ServiceGrid,
)

router = Router(tags=["structure 医联体结构"])

MAX_DEPARTMENT_BEDS = 10_000


# --- References shared by every app's API ----------------------------------------------------


class AuthorityRef(Schema):
    id: UUID
    name: str
    division_code: str

    @staticmethod
    def resolve_id(obj: HealthAuthority) -> UUID:
        return obj.uuid


class InstitutionRef(Schema):
    id: UUID
    name: str
    short_name: str
    kind: InstitutionKind
    level: InstitutionLevel

    @staticmethod
    def resolve_id(obj: Institution) -> UUID:
        return obj.uuid


class ConsortiumRef(Schema):
    id: UUID
    name: str
    short_name: str

    @staticmethod
    def resolve_id(obj: Consortium) -> UUID:
        return obj.uuid


class DepartmentRef(Schema):
    id: UUID
    name: str
    code: str

    @staticmethod
    def resolve_id(obj: Department) -> UUID:
        return obj.uuid


def _count(queryset: QuerySet[Any], outer: str) -> Coalesce:
    """A correlated COUNT subquery: one query for a whole page, no join fan-out."""
    counted = queryset.filter(**{outer: OuterRef("pk")}).order_by().values(outer).annotate(n=Count("*")).values("n")
    return Coalesce(Subquery(counted, output_field=IntegerField()), Value(0))


# --- Consortia ---------------------------------------------------------------------------------


class ConsortiumListQuery(PageQuery):
    q: str | None = Field(None, max_length=100, description="名称或简称包含")
    kind: ConsortiumKind | None = None


class ConsortiumListItem(Schema):
    id: UUID
    name: str
    short_name: str
    kind: ConsortiumKind
    authority: AuthorityRef
    lead_institution: InstitutionRef
    established_on: dt.date
    dissolved_on: dt.date | None
    is_active: bool
    member_count: int = Field(description="当前成员单位数（含牵头单位）")

    @staticmethod
    def resolve_id(obj: Consortium) -> UUID:
        return obj.uuid


class ConsortiumMemberOut(Schema):
    institution: InstitutionRef
    role: MemberRole
    joined_on: dt.date
    left_on: dt.date | None
    is_current: bool

    @staticmethod
    def resolve_is_current(obj: ConsortiumMembership) -> bool:
        today = timezone.localdate()
        return obj.joined_on <= today and (obj.left_on is None or obj.left_on > today)


class CentreOut(Schema):
    kind: CentreKind
    name: str
    host_institution: InstitutionRef

    @staticmethod
    def resolve_name(obj: Any) -> str:
        return str(obj.get_kind_display())


class ConsortiumDetail(ConsortiumListItem):
    members: list[ConsortiumMemberOut] = Field(description="成员单位（含已退出），牵头单位在前")
    centres: list[CentreOut] = Field(description="六统一管理中心")
    grid_count: int = Field(description="启用的服务网格数")

    @staticmethod
    def resolve_members(obj: Consortium) -> list[ConsortiumMembership]:
        return obj.member_list  # type: ignore[attr-defined,no-any-return]

    @staticmethod
    def resolve_centres(obj: Consortium) -> list[Any]:
        return obj.centre_list  # type: ignore[attr-defined,no-any-return]


class ConsortiumPatchIn(PatchSchema):
    nullable_fields = frozenset({"dissolved_on"})

    name: str | None = Field(None, max_length=max_length_of(Consortium, "name"))
    short_name: str | None = Field(None, max_length=max_length_of(Consortium, "short_name"))
    kind: ConsortiumKind | None = None
    established_on: dt.date | None = None
    dissolved_on: dt.date | None = None


class ConsortiumMemberAddIn(InputSchema):
    institution: UUID = Field(description="要加入的机构（须属于医联体的主管卫健部门）")
    role: MemberRole = MemberRole.MEMBER
    joined_on: dt.date | None = None


class ConsortiumMemberEndIn(InputSchema):
    left_on: dt.date | None = Field(None, description="退出日期，默认今天")


def _consortia(queryset: QuerySet[Consortium]) -> QuerySet[Consortium]:
    return queryset.select_related("authority", "lead_institution").annotate(
        member_count=_count(ConsortiumMembership.objects.current(), "consortium")
    )


def _consortium_detail(consortium: Consortium) -> Consortium:
    """The consortium with its members, centres and grid count attached, in a fixed number of queries."""
    detailed = _consortia(Consortium.objects.filter(pk=consortium.pk)).get()
    order = {MemberRole.LEAD: 0, MemberRole.BACKBONE: 1}
    detailed.member_list = sorted(  # type: ignore[attr-defined]
        consortium.memberships.select_related("institution"),
        key=lambda m: (order.get(m.role, 2), m.joined_on, m.institution.name),  # type: ignore[call-overload]
    )
    detailed.centre_list = sorted(  # type: ignore[attr-defined]
        consortium.centres.select_related("host_institution"), key=lambda c: CentreKind.values.index(c.kind)
    )
    detailed.grid_count = ServiceGrid.objects.filter(consortium=consortium, is_active=True).count()  # type: ignore[attr-defined]
    return detailed


@router.get("/consortia", response={200: Page[ConsortiumListItem], ERRORS: ErrorOut})
def consortium_list(request: HttpRequest, query: Query[ConsortiumListQuery]) -> dict[str, Any]:
    """医联体列表：本机构所在的医联体；卫健局监管员看到本局全部医联体。"""
    actor = actor_of(request)
    actor.require(Permission.STRUCTURE_VIEW)
    consortia = _consortia(Consortium.objects.visible_to(actor))
    if query.q:
        consortia = consortia.filter(Q(name__icontains=query.q) | Q(short_name__icontains=query.q))
    if query.kind:
        consortia = consortia.filter(kind=query.kind)
    return paginate(consortia.order_by("name"), query)


@router.get("/consortia/{id}", response={200: ConsortiumDetail, ERRORS: ErrorOut})
def consortium_detail(request: HttpRequest, id: UUID) -> Consortium:
    """医联体详情：成员单位（角色、加入与退出日期）与六统一管理中心。"""
    return _consortium_detail(access_consortium(actor_of(request), id))


@router.patch("/consortia/{id}", response={200: ConsortiumDetail, ERRORS: ErrorOut})
def consortium_patch(request: HttpRequest, id: UUID, payload: ConsortiumPatchIn) -> Consortium:
    """修改医联体信息（该医联体的管理员）。"""
    consortium = access_consortium(actor_of(request), id, for_write=True)
    services.consortium_update(consortium=consortium, **payload.model_dump(exclude_unset=True))
    return _consortium_detail(consortium)


@router.post("/consortia/{id}/members", response={201: ConsortiumMemberOut, ERRORS: ErrorOut})
def consortium_member_add(request: HttpRequest, id: UUID, payload: ConsortiumMemberAddIn) -> Status[ConsortiumMembership]:
    """接纳成员单位。"""
    actor = actor_of(request)
    consortium = access_consortium(actor, id, for_write=True)
    institution = find(Institution.objects.filter(authority=consortium.authority), payload.institution, field="institution")
    membership = services.consortium_member_add(
        actor=actor,
        consortium=consortium,
        institution=institution,
        role=payload.role,
        joined_on=payload.joined_on,
    )
    return Status(201, membership)


@router.post("/consortia/{id}/members/{institution_id}/end", response={200: ConsortiumMemberOut, ERRORS: ErrorOut})
def consortium_member_end(
    request: HttpRequest, id: UUID, institution_id: UUID, payload: ConsortiumMemberEndIn | None = None
) -> ConsortiumMembership:
    """成员单位退出医联体。`institution_id` 是成员机构的标识。"""
    actor = actor_of(request)
    consortium = access_consortium(actor, id, for_write=True)
    membership = (
        ConsortiumMembership.objects.select_related("consortium", "institution")
        .filter(consortium=consortium, institution__uuid=institution_id, left_on__isnull=True)
        .first()
    )
    if membership is None:
        raise Http404
    return services.consortium_member_end(actor=actor, membership=membership, left_on=payload.left_on if payload else None)


# --- Institutions ------------------------------------------------------------------------------


class InstitutionListQuery(PageQuery):
    q: str | None = Field(None, max_length=100, description="名称、简称包含，或统一社会信用代码")
    kind: InstitutionKind | None = None
    level: InstitutionLevel | None = None
    town: str | None = Field(None, max_length=max_length_of(Institution, "town"))
    consortium: UUID | None = Field(None, description="当前属于该医联体")
    is_active: bool | None = None


class InstitutionListItem(Schema):
    id: UUID
    name: str
    short_name: str
    kind: InstitutionKind
    level: InstitutionLevel
    town: str
    credit_code: str | None
    is_active: bool
    parent: InstitutionRef | None
    consortia: list[ConsortiumRef] = Field(description="当前所属的医联体（您可见的）")

    @staticmethod
    def resolve_id(obj: Institution) -> UUID:
        return obj.uuid

    @staticmethod
    def resolve_consortia(obj: Institution) -> list[Consortium]:
        return [m.consortium for m in obj.current_memberships]  # type: ignore[attr-defined]


class InstitutionMembershipOut(Schema):
    consortium: ConsortiumRef
    role: MemberRole
    joined_on: dt.date
    left_on: dt.date | None


class InstitutionDetail(InstitutionListItem):
    authority: AuthorityRef
    license_number: str | None
    address: str
    phone: str
    capabilities: list[Capability]
    children: list[InstitutionRef] = Field(description="下属机构（村卫生室）")
    consortium_memberships: list[InstitutionMembershipOut] = Field(description="医联体成员关系（含已退出）")
    created_at: dt.datetime
    updated_at: dt.datetime

    @staticmethod
    def resolve_capabilities(obj: Institution) -> list[str]:
        return sorted(c.capability for c in obj.capabilities.all())

    @staticmethod
    def resolve_consortium_memberships(obj: Institution) -> list[ConsortiumMembership]:
        return obj.visible_memberships  # type: ignore[attr-defined,no-any-return]

    @staticmethod
    def resolve_children(obj: Institution) -> list[Institution]:
        return obj.visible_children  # type: ignore[attr-defined,no-any-return]


class InstitutionFields(InputSchema):
    short_name: str = Field("", max_length=max_length_of(Institution, "short_name"))
    credit_code: str | None = Field(None, max_length=max_length_of(Institution, "credit_code"), description="统一社会信用代码")
    license_number: str | None = Field(None, max_length=max_length_of(Institution, "license_number"))
    parent: UUID | None = Field(None, description="上级机构（村卫生室所属的乡镇卫生院或社区卫生服务中心）")
    town: str = Field("", max_length=max_length_of(Institution, "town"))
    address: str = Field("", max_length=max_length_of(Institution, "address"))
    phone: str = Field("", max_length=max_length_of(Institution, "phone"))
    capabilities: list[Capability] = Field(default_factory=list, max_length=len(Capability))


class InstitutionCreateIn(InstitutionFields):
    name: str = Field(max_length=max_length_of(Institution, "name"))
    kind: InstitutionKind
    level: InstitutionLevel = InstitutionLevel.UNGRADED
    consortium: UUID | None = Field(None, description="登记到该医联体（医联体管理员必填）")
    member_role: MemberRole = MemberRole.MEMBER
    authority: UUID | None = Field(None, description="主管卫健部门；省略时取医联体的")


class InstitutionPatchIn(PatchSchema):
    nullable_fields = frozenset({"credit_code", "license_number", "parent"})

    name: str | None = Field(None, max_length=max_length_of(Institution, "name"))
    kind: InstitutionKind | None = None
    level: InstitutionLevel | None = None
    short_name: str | None = Field(None, max_length=max_length_of(Institution, "short_name"))
    credit_code: str | None = Field(None, max_length=max_length_of(Institution, "credit_code"))
    license_number: str | None = Field(None, max_length=max_length_of(Institution, "license_number"))
    parent: UUID | None = None
    town: str | None = Field(None, max_length=max_length_of(Institution, "town"))
    address: str | None = Field(None, max_length=max_length_of(Institution, "address"))
    phone: str | None = Field(None, max_length=max_length_of(Institution, "phone"))
    capabilities: list[Capability] | None = Field(None, max_length=len(Capability))


def _institutions(actor_consortia: QuerySet[Consortium], queryset: QuerySet[Institution]) -> QuerySet[Institution]:
    return queryset.select_related("parent").prefetch_related(
        Prefetch(
            "consortium_memberships",
            queryset=ConsortiumMembership.objects.current().filter(consortium__in=actor_consortia).select_related("consortium"),
            to_attr="current_memberships",
        )
    )


def _institution_detail(request: HttpRequest, institution: Institution) -> Institution:
    actor = actor_of(request)
    visible_consortia = Consortium.objects.visible_to(actor)
    detailed = (
        _institutions(visible_consortia, Institution.objects.filter(pk=institution.pk))
        .select_related("authority")
        .prefetch_related("capabilities")
        .get()
    )
    detailed.visible_children = list(Institution.objects.visible_to(actor).filter(parent=institution).order_by("name"))  # type: ignore[attr-defined]
    detailed.visible_memberships = list(  # type: ignore[attr-defined]
        institution.consortium_memberships.filter(consortium__in=visible_consortia)
        .select_related("consortium")
        .order_by("-joined_on")
    )
    return detailed


@router.get("/institutions", response={200: Page[InstitutionListItem], ERRORS: ErrorOut})
def institution_list(request: HttpRequest, query: Query[InstitutionListQuery]) -> dict[str, Any]:
    """医疗机构列表：您可见的医联体的成员单位。"""
    actor = actor_of(request)
    actor.require(Permission.STRUCTURE_VIEW)
    institutions = _institutions(Consortium.objects.visible_to(actor), Institution.objects.visible_to(actor))
    if query.q:
        institutions = institutions.filter(
            Q(name__icontains=query.q) | Q(short_name__icontains=query.q) | Q(credit_code__iexact=query.q)
        )
    for name in ("kind", "level", "town", "is_active"):
        if (value := getattr(query, name)) is not None and value != "":
            institutions = institutions.filter(**{name: value})
    if query.consortium:
        members = ConsortiumMembership.objects.current().filter(consortium__uuid=query.consortium)
        institutions = institutions.filter(id__in=members.values("institution_id"))
    return paginate(institutions.order_by("name"), query)


@router.get("/institutions/{id}", response={200: InstitutionDetail, ERRORS: ErrorOut})
def institution_detail(request: HttpRequest, id: UUID) -> Institution:
    """机构详情：服务能力、上级机构、下属机构与医联体成员关系。"""
    return _institution_detail(request, access_institution(actor_of(request), id))


def _parent(request: HttpRequest, key: UUID | None) -> Institution | None:
    return find(Institution.objects.visible_to(actor_of(request)), key, field="parent")


@router.post("/institutions", response={201: InstitutionDetail, ERRORS: ErrorOut})
def institution_create(request: HttpRequest, payload: InstitutionCreateIn) -> Status[Institution]:
    """登记医疗机构：系统管理员，或医联体管理员登记到其管理的医联体（`consortium`）。"""
    actor = actor_of(request)
    actor.require(Permission.CONSORTIUM_MANAGE)  # system admins hold it too; the service decides where
    consortium = find(Consortium.objects.visible_to(actor), payload.consortium, field="consortium")
    authority = find(HealthAuthority.objects.all(), payload.authority, field="authority")
    if authority is None:
        if consortium is None:
            actor.require(Permission.SYSTEM_ADMIN)  # only a system admin registers outside a consortium
            raise field_error("authority", "请指定主管卫健部门，或指定要加入的医联体。")
        authority = consortium.authority
    fields = payload.model_dump(exclude={"consortium", "member_role", "authority", "capabilities", "parent"})
    institution = services.institution_create(
        actor=actor,
        authority=authority,
        consortium=consortium,
        member_role=payload.member_role,
        capabilities=payload.capabilities,
        parent=_parent(request, payload.parent),
        **fields,
    )
    return Status(201, _institution_detail(request, institution))


@router.patch("/institutions/{id}", response={200: InstitutionDetail, ERRORS: ErrorOut})
def institution_patch(request: HttpRequest, id: UUID, payload: InstitutionPatchIn) -> Institution:
    """修改机构信息（机构管理员、其医联体的管理员）。"""
    institution = access_institution(actor_of(request), id, for_write=True)
    fields = payload.model_dump(exclude_unset=True, exclude={"capabilities"})
    if "parent" in fields:
        fields["parent"] = _parent(request, fields["parent"])
    services.institution_update(institution=institution, capabilities=payload.capabilities, **fields)
    return _institution_detail(request, institution)


@router.post("/institutions/{id}/deactivate", response={200: InstitutionDetail, ERRORS: ErrorOut})
def institution_deactivate(request: HttpRequest, id: UUID) -> Institution:
    """停用机构：数据保留，不再接收转诊，接口密钥失效。机构从不删除。"""
    institution = access_institution(actor_of(request), id, for_write=True)
    services.institution_set_active(actor=actor_of(request), institution=institution, is_active=False)
    return _institution_detail(request, institution)


@router.post("/institutions/{id}/activate", response={200: InstitutionDetail, ERRORS: ErrorOut})
def institution_activate(request: HttpRequest, id: UUID) -> Institution:
    """重新启用机构。"""
    institution = access_institution(actor_of(request), id, for_write=True)
    services.institution_set_active(actor=actor_of(request), institution=institution, is_active=True)
    return _institution_detail(request, institution)


# --- Departments -------------------------------------------------------------------------------


class DepartmentListQuery(PageQuery):
    q: str | None = Field(None, max_length=100, description="科室名称或代码包含")
    is_active: bool | None = None


class DepartmentOut(Schema):
    id: UUID
    institution: InstitutionRef
    name: str
    code: str
    is_clinical: bool
    beds: int
    is_active: bool
    staff_count: int = Field(description="当前在岗人员数")

    @staticmethod
    def resolve_id(obj: Department) -> UUID:
        return obj.uuid


class DepartmentCreateIn(InputSchema):
    name: str = Field(max_length=max_length_of(Department, "name"))
    code: str = Field(max_length=max_length_of(Department, "code"))
    is_clinical: bool = True
    beds: int = Field(0, ge=0, le=MAX_DEPARTMENT_BEDS)


class DepartmentPatchIn(PatchSchema):
    name: str | None = Field(None, max_length=max_length_of(Department, "name"))
    code: str | None = Field(None, max_length=max_length_of(Department, "code"))
    is_clinical: bool | None = None
    beds: int | None = Field(None, ge=0, le=MAX_DEPARTMENT_BEDS)
    is_active: bool | None = None


def _departments(queryset: QuerySet[Department]) -> QuerySet[Department]:
    return queryset.select_related("institution").annotate(staff_count=_count(Membership.objects.current(), "department"))


def _department(department: Department) -> Department:
    return _departments(Department.objects.filter(pk=department.pk)).get()


@router.get("/institutions/{id}/departments", response={200: Page[DepartmentOut], ERRORS: ErrorOut})
def department_list(request: HttpRequest, id: UUID, query: Query[DepartmentListQuery]) -> dict[str, Any]:
    """机构的科室列表。"""
    institution = access_institution(actor_of(request), id)
    departments = _departments(Department.objects.filter(institution=institution))
    if query.q:
        departments = departments.filter(Q(name__icontains=query.q) | Q(code__icontains=query.q))
    if query.is_active is not None:
        departments = departments.filter(is_active=query.is_active)
    return paginate(departments.order_by("code"), query)


@router.post("/institutions/{id}/departments", response={201: DepartmentOut, ERRORS: ErrorOut})
def department_create(request: HttpRequest, id: UUID, payload: DepartmentCreateIn) -> Status[Department]:
    """新增科室（机构管理员、其医联体的管理员）。"""
    actor = actor_of(request)
    institution = access_institution(actor, id)
    department = services.department_create(actor=actor, institution=institution, **payload.model_dump())
    return Status(201, _department(department))


@router.get("/departments/{id}", response={200: DepartmentOut, ERRORS: ErrorOut})
def department_detail(request: HttpRequest, id: UUID) -> Department:
    """科室详情。"""
    return _department(access_department(actor_of(request), id))


@router.patch("/departments/{id}", response={200: DepartmentOut, ERRORS: ErrorOut})
def department_patch(request: HttpRequest, id: UUID, payload: DepartmentPatchIn) -> Department:
    """修改科室，或停用（`is_active: false`）。"""
    department = access_department(actor_of(request), id, for_write=True)
    services.department_update(department=department, **payload.model_dump(exclude_unset=True))
    return _department(department)


# --- Service grids -----------------------------------------------------------------------------


class GridListQuery(PageQuery):
    q: str | None = Field(None, max_length=100, description="网格名称包含")
    consortium: UUID | None = None
    town: str | None = Field(None, max_length=max_length_of(ServiceGrid, "town"))
    institution: UUID | None = Field(None, description="责任机构")
    is_active: bool | None = None


class GridOut(Schema):
    id: UUID
    consortium: ConsortiumRef
    responsible_institution: InstitutionRef
    name: str
    kind: GridKind
    town: str
    population: int
    is_active: bool

    @staticmethod
    def resolve_id(obj: ServiceGrid) -> UUID:
        return obj.uuid


class GridCreateIn(InputSchema):
    consortium: UUID
    responsible_institution: UUID = Field(description="责任机构（须为该医联体的在册成员单位）")
    name: str = Field(max_length=max_length_of(ServiceGrid, "name"))
    kind: GridKind = GridKind.VILLAGE
    town: str = Field(max_length=max_length_of(ServiceGrid, "town"))
    population: int = Field(0, ge=0, le=MAX_POPULATION, description="常住人口")


class GridPatchIn(PatchSchema):
    responsible_institution: UUID | None = None
    name: str | None = Field(None, max_length=max_length_of(ServiceGrid, "name"))
    kind: GridKind | None = None
    town: str | None = Field(None, max_length=max_length_of(ServiceGrid, "town"))
    population: int | None = Field(None, ge=0, le=MAX_POPULATION)
    is_active: bool | None = None


def _grids(queryset: QuerySet[ServiceGrid]) -> QuerySet[ServiceGrid]:
    return queryset.select_related("consortium", "responsible_institution")


@router.get("/grids", response={200: Page[GridOut], ERRORS: ErrorOut})
def grid_list(request: HttpRequest, query: Query[GridListQuery]) -> dict[str, Any]:
    """服务网格列表：您可见的医联体的网格。"""
    actor = actor_of(request)
    actor.require(Permission.STRUCTURE_VIEW)
    grids = _grids(ServiceGrid.objects.visible_to(actor))
    if query.q:
        grids = grids.filter(name__icontains=query.q)
    if query.consortium:
        grids = grids.filter(consortium__uuid=query.consortium)
    if query.town:
        grids = grids.filter(town=query.town)
    if query.institution:
        grids = grids.filter(responsible_institution__uuid=query.institution)
    if query.is_active is not None:
        grids = grids.filter(is_active=query.is_active)
    return paginate(grids.order_by("town", "name"), query)


@router.post("/grids", response={201: GridOut, ERRORS: ErrorOut})
def grid_create(request: HttpRequest, payload: GridCreateIn) -> Status[ServiceGrid]:
    """新增服务网格（医联体管理员）。"""
    actor = actor_of(request)
    actor.require(Permission.CONSORTIUM_MANAGE)
    consortium = find(Consortium.objects.visible_to(actor), payload.consortium, field="consortium")
    institution = find(Institution.objects.visible_to(actor), payload.responsible_institution, field="responsible_institution")
    grid = services.grid_create(
        actor=actor,
        consortium=consortium,
        responsible_institution=institution,
        **payload.model_dump(exclude={"consortium", "responsible_institution"}),
    )
    return Status(201, grid)


@router.get("/grids/{id}", response={200: GridOut, ERRORS: ErrorOut})
def grid_detail(request: HttpRequest, id: UUID) -> ServiceGrid:
    """服务网格详情。"""
    return access_grid(actor_of(request), id)


@router.patch("/grids/{id}", response={200: GridOut, ERRORS: ErrorOut})
def grid_patch(request: HttpRequest, id: UUID, payload: GridPatchIn) -> ServiceGrid:
    """修改服务网格，或停用（`is_active: false`）。"""
    actor = actor_of(request)
    grid = access_grid(actor, id, for_write=True)
    fields = payload.model_dump(exclude_unset=True)
    if "responsible_institution" in fields:
        fields["responsible_institution"] = find(
            Institution.objects.visible_to(actor), fields["responsible_institution"], field="responsible_institution"
        )
    return services.grid_update(grid=grid, **fields)
