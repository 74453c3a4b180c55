"""Pages for consortia, institutions, departments and service grids.

Views only translate: they load objects through the gatekeepers in organizations.access, call the
services, and show a ValidationError as form errors and a PermissionDenied as a 403.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Case, Count, IntegerField, OuterRef, Prefetch, Q, QuerySet, Subquery, Sum, Value, When
from django.db.models.functions import Coalesce
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST

from yilian.accounts.actors import Actor
from yilian.accounts.models import Membership
from yilian.accounts.roles import Permission
from yilian.organizations import services
from yilian.organizations.access import (
    access_consortium,
    access_department,
    access_grid,
    access_institution,
    can_manage_consortium,
    can_manage_institution,
    managed_consortium_filter,
    managed_institution_filter,
)
from yilian.organizations.forms import (
    ConsortiumFilterForm,
    ConsortiumMemberAddForm,
    DepartmentCreateForm,
    DepartmentFilterForm,
    DepartmentForm,
    GridCreateForm,
    GridFilterForm,
    GridForm,
    InstitutionCreateForm,
    InstitutionFilterForm,
    InstitutionForm,
    StyledForm,
    apply_validation_error,
)
from yilian.organizations.models import (
    CentreKind,
    Consortium,
    ConsortiumMembership,
    Department,
    Institution,
    MemberRole,
    ServiceGrid,
)
from yilian.web.pagination import paginate

RESULTS_TARGET = "results"


def actor_of(request: HttpRequest) -> Actor:
    return request.actor  # type: ignore[attr-defined,no-any-return]


def render_list(request: HttpRequest, template: str, partial: str, context: dict[str, Any]) -> HttpResponse:
    """The whole page, or only the results table when htmx asks for it (search as you type)."""
    htmx = getattr(request, "htmx", None)
    wants_partial = bool(htmx) and htmx.target == RESULTS_TARGET  # type: ignore[union-attr]
    response = render(request, partial if wants_partial else template, context)
    patch_vary_headers(response, ["HX-Request", "HX-Target"])
    return response


def cleaned_filters(form: StyledForm) -> dict[str, Any]:
    """The filter values that are valid; invalid ones are ignored rather than failing the page."""
    form.is_valid()
    return {k: v for k, v in getattr(form, "cleaned_data", {}).items() if v not in (None, "")}


def _count(queryset: QuerySet, outer: str) -> Coalesce:
    """A correlated COUNT subquery (no join fan-out, one query for the whole page)."""
    counted = queryset.filter(**{outer: OuterRef("pk")}).order_by().values(outer).annotate(n=Count("*")).values("n")
    return Coalesce(Subquery(counted, output_field=IntegerField()), Value(0))


def _current_staff() -> QuerySet[Membership]:
    return Membership.objects.current()


def _current_members() -> QuerySet[ConsortiumMembership]:
    return ConsortiumMembership.objects.current()


def as_uuid(value: str | None) -> UUID | None:
    try:
        return UUID(str(value)) if value else None
    except ValueError:
        return None


# --- Consortia ------------------------------------------------------------------------------


@login_required
def consortium_list(request: HttpRequest) -> HttpResponse:
    actor = actor_of(request)
    actor.require(Permission.STRUCTURE_VIEW)
    form = ConsortiumFilterForm(request.GET)
    filters = cleaned_filters(form)
    consortia = (
        Consortium.objects.visible_to(actor)
        .select_related("lead_institution", "authority")
        .annotate(
            member_count=_count(_current_members(), "consortium"),
            grid_count=_count(ServiceGrid.objects.filter(is_active=True), "consortium"),
        )
    )
    if q := filters.get("q"):
        consortia = consortia.filter(Q(name__icontains=q) | Q(short_name__icontains=q))
    if kind := filters.get("kind"):
        consortia = consortia.filter(kind=kind)
    page = paginate(request, consortia)
    return render_list(
        request,
        "organizations/consortium_list.html",
        "organizations/_consortium_table.html",
        {"form": form, "page_obj": page},
    )


def _member_order() -> Case:
    return Case(
        When(role=MemberRole.LEAD, then=Value(0)),
        When(role=MemberRole.BACKBONE, then=Value(1)),
        default=Value(2),
        output_field=IntegerField(),
    )


def _member_candidates(consortium: Consortium) -> QuerySet[Institution]:
    """Active institutions of the consortium's bureau that are not members now."""
    return (
        Institution.objects.filter(authority=consortium.authority, is_active=True)
        .exclude(id__in=_current_members().filter(consortium=consortium).values("institution_id"))
        .exclude(id__in=ConsortiumMembership.objects.filter(consortium=consortium, left_on__isnull=True).values("institution_id"))
    )


def _consortium_detail(
    request: HttpRequest, consortium: Consortium, member_form: ConsortiumMemberAddForm | None = None, status: int = 200
) -> HttpResponse:
    actor = actor_of(request)
    today = timezone.localdate()
    memberships = list(
        consortium.memberships.select_related("institution")
        .annotate(order=_member_order())
        .order_by("order", "joined_on", "institution__name")
    )
    for membership in memberships:
        membership.is_current = membership.joined_on <= today and (  # type: ignore[attr-defined]
            membership.left_on is None or membership.left_on > today
        )
    grids = ServiceGrid.objects.filter(consortium=consortium, is_active=True)
    grid_towns = grids.order_by("town").values("town").annotate(grids=Count("id"), population=Sum("population"))
    grid_totals = grids.aggregate(grids=Count("id"), population=Coalesce(Sum("population"), 0))
    can_manage = can_manage_consortium(actor, consortium)
    if can_manage and member_form is None:
        member_form = ConsortiumMemberAddForm(candidates=_member_candidates(consortium))
    context = {
        "consortium": consortium,
        "memberships": memberships,
        "current_count": sum(1 for m in memberships if m.is_current),  # type: ignore[attr-defined,misc]
        "centres": sorted(consortium.centres.select_related("host_institution"), key=lambda c: CentreKind.values.index(c.kind)),
        "grid_towns": grid_towns,
        "grid_totals": grid_totals,
        "can_manage": can_manage,
        "member_form": member_form if can_manage else None,
    }
    return render(request, "organizations/consortium_detail.html", context, status=status)


@login_required
def consortium_detail(request: HttpRequest, uuid: UUID) -> HttpResponse:
    return _consortium_detail(request, access_consortium(actor_of(request), uuid))


@login_required
@require_POST
def consortium_member_add(request: HttpRequest, uuid: UUID) -> HttpResponse:
    actor = actor_of(request)
    consortium = access_consortium(actor, uuid, for_write=True)
    form = ConsortiumMemberAddForm(request.POST, candidates=_member_candidates(consortium))
    if form.is_valid():
        try:
            services.consortium_member_add(
                actor=actor,
                consortium=consortium,
                institution=form.cleaned_data["institution"],
                role=form.cleaned_data["role"],
                joined_on=form.cleaned_data.get("joined_on"),
            )
        except ValidationError as exc:
            apply_validation_error(form, exc)
        else:
            messages.success(request, _("已将 %(name)s 加入本医联体。") % {"name": form.cleaned_data["institution"].name})
            return redirect("organizations:consortium_detail", uuid=consortium.uuid)
    return _consortium_detail(request, consortium, member_form=form, status=400)


@login_required
@require_POST
def consortium_member_end(request: HttpRequest, uuid: UUID, institution_uuid: UUID) -> HttpResponse:
    actor = actor_of(request)
    consortium = access_consortium(actor, uuid, for_write=True)
    membership = (
        ConsortiumMembership.objects.select_related("consortium", "institution")
        .filter(consortium=consortium, institution__uuid=institution_uuid, left_on__isnull=True)
        .first()
    )
    if membership is None:
        raise Http404(_("未找到，或您无权访问。"))
    try:
        services.consortium_member_end(actor=actor, membership=membership)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, _("%(name)s 已退出本医联体。") % {"name": membership.institution.name})
    return redirect("organizations:consortium_detail", uuid=consortium.uuid)


# --- Institutions ---------------------------------------------------------------------------


def _managed_consortia(actor: Actor) -> QuerySet[Consortium]:
    return Consortium.objects.filter(managed_consortium_filter(actor)).order_by("name")


def _can_create_institution(actor: Actor) -> bool:
    return actor.is_system_admin or _managed_consortia(actor).exists()


@login_required
def institution_list(request: HttpRequest) -> HttpResponse:
    actor = actor_of(request)
    actor.require(Permission.STRUCTURE_VIEW)
    visible = Institution.objects.visible_to(actor)
    towns = list(visible.exclude(town="").order_by("town").values_list("town", flat=True).distinct())
    consortia = list(Consortium.objects.visible_to(actor).order_by("name"))
    form = InstitutionFilterForm(request.GET, towns=towns, consortia=consortia)
    filters = cleaned_filters(form)
    institutions = (
        visible.select_related("parent")
        .annotate(staff_count=_count(_current_staff(), "institution"))
        .prefetch_related(
            Prefetch(
                "consortium_memberships",
                queryset=_current_members().filter(consortium__in=consortia).select_related("consortium"),
                to_attr="current_memberships",
            )
        )
    )
    if q := filters.get("q"):
        institutions = institutions.filter(
            Q(name__icontains=q) | Q(short_name__icontains=q) | Q(credit_code__iexact=q) | Q(license_number__icontains=q)
        )
    for name in ("kind", "level", "town"):
        if value := filters.get(name):
            institutions = institutions.filter(**{name: value})
    if consortium := as_uuid(filters.get("consortium")):
        institutions = institutions.filter(id__in=_current_members().filter(consortium__uuid=consortium).values("institution_id"))
    if (active := filters.get("active")) is not None:
        institutions = institutions.filter(is_active=active == "1")
    page = paginate(request, institutions)
    return render_list(
        request,
        "organizations/institution_list.html",
        "organizations/_institution_table.html",
        {"form": form, "page_obj": page, "can_create": _can_create_institution(actor)},
    )


@login_required
def institution_detail(request: HttpRequest, uuid: UUID) -> HttpResponse:
    actor = actor_of(request)
    institution = access_institution(actor, uuid)
    visible_consortia = Consortium.objects.visible_to(actor)
    context = {
        "institution": institution,
        "capabilities": [c.get_capability_display() for c in institution.capabilities.order_by("capability")],
        "children": Institution.objects.visible_to(actor).filter(parent=institution).order_by("name"),
        "departments": institution.departments.annotate(staff_count=_count(_current_staff(), "department")).order_by("code"),
        "staff_count": _current_staff().filter(institution=institution).count(),
        "consortium_memberships": institution.consortium_memberships.filter(consortium__in=visible_consortia)
        .select_related("consortium")
        .order_by("-joined_on"),
        "grid_count": ServiceGrid.objects.filter(responsible_institution=institution, is_active=True).count(),
        "can_edit": can_manage_institution(actor, institution),
    }
    return render(request, "organizations/institution_detail.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def institution_create(request: HttpRequest) -> HttpResponse:
    actor = actor_of(request)
    if not _can_create_institution(actor):
        raise PermissionDenied(_("只有系统管理员或医联体管理员可以登记医疗机构。"))
    managed = _managed_consortia(actor)
    wanted = as_uuid(request.GET.get("consortium"))
    initial = {"consortium": managed.filter(uuid=wanted).first()} if wanted else {}
    form = InstitutionCreateForm(
        request.POST if request.method == "POST" else None, actor=actor, managed_consortia=managed, initial=initial
    )
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            institution = services.institution_create(
                actor=actor,
                authority=data["authority"],
                consortium=data.get("consortium"),
                member_role=data["member_role"],
                capabilities=data["capabilities"],
                **form.service_fields(),
            )
        except ValidationError as exc:
            apply_validation_error(form, exc)
        else:
            messages.success(request, _("已登记医疗机构：%(name)s。") % {"name": institution.name})
            return redirect("organizations:institution_detail", uuid=institution.uuid)
    return render(request, "organizations/institution_form.html", {"form": form, "creating": True})


@login_required
@require_http_methods(["GET", "POST"])
def institution_edit(request: HttpRequest, uuid: UUID) -> HttpResponse:
    actor = actor_of(request)
    institution = access_institution(actor, uuid, for_write=True)
    form = InstitutionForm(request.POST if request.method == "POST" else None, actor=actor, instance=institution)
    if request.method == "POST" and form.is_valid():
        try:
            services.institution_update(
                institution=institution, capabilities=form.cleaned_data["capabilities"], **form.service_fields()
            )
        except ValidationError as exc:
            apply_validation_error(form, exc)
        else:
            messages.success(request, _("已保存机构信息。"))
            return redirect("organizations:institution_detail", uuid=institution.uuid)
    return render(request, "organizations/institution_form.html", {"form": form, "institution": institution})


def _set_institution_active(request: HttpRequest, uuid: UUID, *, is_active: bool) -> HttpResponse:
    institution = access_institution(actor_of(request), uuid, for_write=True)
    try:
        services.institution_set_active(actor=actor_of(request), institution=institution, is_active=is_active)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        _announce_active(request, institution, is_active=is_active)
    return redirect("organizations:institution_detail", uuid=institution.uuid)


def _announce_active(request: HttpRequest, institution: Institution, *, is_active: bool) -> None:
    if is_active:
        messages.success(request, _("已启用 %(name)s。") % {"name": institution.name})
    else:
        messages.warning(request, _("已停用 %(name)s：其数据保留，但不能再接收转诊或登录接口。") % {"name": institution.name})


@login_required
@require_POST
def institution_deactivate(request: HttpRequest, uuid: UUID) -> HttpResponse:
    return _set_institution_active(request, uuid, is_active=False)


@login_required
@require_POST
def institution_reactivate(request: HttpRequest, uuid: UUID) -> HttpResponse:
    return _set_institution_active(request, uuid, is_active=True)


# --- Departments ----------------------------------------------------------------------------


def _department_institutions(actor: Actor) -> QuerySet[Institution]:
    """Active institutions where the actor may add departments."""
    return Institution.objects.filter(managed_institution_filter(actor, Permission.INSTITUTION_MANAGE), is_active=True)


@login_required
def department_list(request: HttpRequest) -> HttpResponse:
    actor = actor_of(request)
    actor.require(Permission.STRUCTURE_VIEW)
    institutions = list(Institution.objects.visible_to(actor).filter(departments__isnull=False).distinct().order_by("name"))
    form = DepartmentFilterForm(request.GET, institutions=institutions)
    filters = cleaned_filters(form)
    departments = (
        Department.objects.visible_to(actor)
        .select_related("institution")
        .annotate(staff_count=_count(_current_staff(), "department"))
        .order_by("institution__name", "code")
    )
    if q := filters.get("q"):
        departments = departments.filter(Q(name__icontains=q) | Q(code__icontains=q))
    if institution := as_uuid(filters.get("institution")):
        departments = departments.filter(institution__uuid=institution)
    if (active := filters.get("active")) is not None:
        departments = departments.filter(is_active=active == "1")
    page = paginate(request, departments)
    return render_list(
        request,
        "organizations/department_list.html",
        "organizations/_department_table.html",
        {"form": form, "page_obj": page, "can_create": _department_institutions(actor).exists()},
    )


@login_required
def department_detail(request: HttpRequest, uuid: UUID) -> HttpResponse:
    actor = actor_of(request)
    department = access_department(actor, uuid)
    staff = []
    if actor.can(Permission.STAFF_VIEW):
        staff = list(
            _current_staff()
            .filter(department=department)
            .select_related("user", "user__practitioner")
            .order_by("user__full_name")
        )
    context = {
        "department": department,
        "staff": staff,
        "can_view_staff": actor.can(Permission.STAFF_VIEW),
        "can_edit": can_manage_institution(actor, department.institution),
    }
    return render(request, "organizations/department_detail.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def department_create(request: HttpRequest) -> HttpResponse:
    actor = actor_of(request)
    institutions = _department_institutions(actor).order_by("name")
    if not institutions.exists():
        raise PermissionDenied(_("您当前的角色无权新增科室。"))
    wanted = as_uuid(request.GET.get("institution"))
    initial = {"institution": institutions.filter(uuid=wanted).first()} if wanted else {}
    form = DepartmentCreateForm(request.POST if request.method == "POST" else None, institutions=institutions, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            department = services.department_create(
                actor=actor, institution=form.cleaned_data["institution"], **form.service_fields()
            )
        except ValidationError as exc:
            apply_validation_error(form, exc)
        else:
            messages.success(request, _("已新增科室：%(name)s。") % {"name": department.name})
            return redirect("organizations:department_detail", uuid=department.uuid)
    return render(request, "organizations/department_form.html", {"form": form, "creating": True})


@login_required
@require_http_methods(["GET", "POST"])
def department_edit(request: HttpRequest, uuid: UUID) -> HttpResponse:
    department = access_department(actor_of(request), uuid, for_write=True)
    form = DepartmentForm(request.POST if request.method == "POST" else None, instance=department)
    if request.method == "POST" and form.is_valid():
        try:
            services.department_update(department=department, **form.service_fields())
        except ValidationError as exc:
            apply_validation_error(form, exc)
        else:
            messages.success(request, _("已保存科室信息。"))
            return redirect("organizations:department_detail", uuid=department.uuid)
    return render(request, "organizations/department_form.html", {"form": form, "department": department})


def _set_department_active(request: HttpRequest, uuid: UUID, *, is_active: bool) -> HttpResponse:
    department = access_department(actor_of(request), uuid, for_write=True)
    services.department_update(department=department, is_active=is_active)
    if is_active:
        messages.success(request, _("已启用科室 %(name)s。") % {"name": department.name})
    else:
        messages.warning(request, _("已停用科室 %(name)s，历史记录保留。") % {"name": department.name})
    return redirect("organizations:department_detail", uuid=department.uuid)


@login_required
@require_POST
def department_deactivate(request: HttpRequest, uuid: UUID) -> HttpResponse:
    return _set_department_active(request, uuid, is_active=False)


@login_required
@require_POST
def department_reactivate(request: HttpRequest, uuid: UUID) -> HttpResponse:
    return _set_department_active(request, uuid, is_active=True)


# --- Service grids --------------------------------------------------------------------------


def _grid_institutions(consortia: QuerySet[Consortium]) -> QuerySet[Institution]:
    """Active current members of `consortia`: the institutions a grid may be given to."""
    members = _current_members().filter(consortium__in=consortia).values("institution_id")
    return Institution.objects.filter(id__in=members, is_active=True).order_by("name")


@login_required
def grid_list(request: HttpRequest) -> HttpResponse:
    actor = actor_of(request)
    actor.require(Permission.STRUCTURE_VIEW)
    visible = ServiceGrid.objects.visible_to(actor)
    towns = list(visible.order_by("town").values_list("town", flat=True).distinct())
    consortia = list(Consortium.objects.visible_to(actor).order_by("name"))
    form = GridFilterForm(request.GET, towns=towns, consortia=consortia)
    filters = cleaned_filters(form)
    grids = visible.select_related("consortium", "responsible_institution").order_by("town", "name")
    if q := filters.get("q"):
        grids = grids.filter(name__icontains=q)
    if consortium := as_uuid(filters.get("consortium")):
        grids = grids.filter(consortium__uuid=consortium)
    if town := filters.get("town"):
        grids = grids.filter(town=town)
    totals = grids.aggregate(population=Coalesce(Sum("population"), 0))
    page = paginate(request, grids)
    return render_list(
        request,
        "organizations/grid_list.html",
        "organizations/_grid_table.html",
        {"form": form, "page_obj": page, "totals": totals, "can_create": _managed_consortia(actor).exists()},
    )


@login_required
def grid_detail(request: HttpRequest, uuid: UUID) -> HttpResponse:
    actor = actor_of(request)
    grid = access_grid(actor, uuid)
    context = {
        "grid": grid,
        "resident_count": grid.residents.count(),
        "can_edit": can_manage_consortium(actor, grid.consortium),
    }
    return render(request, "organizations/grid_detail.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def grid_create(request: HttpRequest) -> HttpResponse:
    actor = actor_of(request)
    consortia = _managed_consortia(actor)
    if not consortia.exists():
        raise PermissionDenied(_("只有医联体管理员可以划分服务网格。"))
    wanted = as_uuid(request.GET.get("consortium"))
    initial = {"consortium": consortia.filter(uuid=wanted).first()} if wanted else {}
    form = GridCreateForm(
        request.POST if request.method == "POST" else None,
        consortia=consortia,
        institutions=_grid_institutions(consortia),
        initial=initial,
    )
    if request.method == "POST" and form.is_valid():
        try:
            grid = services.grid_create(actor=actor, consortium=form.cleaned_data["consortium"], **form.service_fields())
        except ValidationError as exc:
            apply_validation_error(form, exc)
        else:
            messages.success(request, _("已新增服务网格：%(name)s。") % {"name": grid})
            return redirect("organizations:grid_detail", uuid=grid.uuid)
    return render(request, "organizations/grid_form.html", {"form": form, "creating": True})


@login_required
@require_http_methods(["GET", "POST"])
def grid_edit(request: HttpRequest, uuid: UUID) -> HttpResponse:
    grid = access_grid(actor_of(request), uuid, for_write=True)
    institutions = _grid_institutions(Consortium.objects.filter(pk=grid.consortium_id))
    initial = {name: getattr(grid, name) for name in GridForm.SERVICE_FIELDS}
    form = GridForm(request.POST if request.method == "POST" else None, institutions=institutions, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            services.grid_update(grid=grid, **form.service_fields())
        except ValidationError as exc:
            apply_validation_error(form, exc)
        else:
            messages.success(request, _("已保存服务网格。"))
            return redirect("organizations:grid_detail", uuid=grid.uuid)
    return render(request, "organizations/grid_form.html", {"form": form, "grid": grid})


def _set_grid_active(request: HttpRequest, uuid: UUID, *, is_active: bool) -> HttpResponse:
    grid = access_grid(actor_of(request), uuid, for_write=True)
    try:
        services.grid_update(grid=grid, is_active=is_active)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        template = _("已启用网格 %(name)s。") if is_active else _("已停用网格 %(name)s。")
        messages.success(request, template % {"name": grid})
    return redirect("organizations:grid_detail", uuid=grid.uuid)


@login_required
@require_POST
def grid_deactivate(request: HttpRequest, uuid: UUID) -> HttpResponse:
    return _set_grid_active(request, uuid, is_active=False)


@login_required
@require_POST
def grid_reactivate(request: HttpRequest, uuid: UUID) -> HttpResponse:
    return _set_grid_active(request, uuid, is_active=True)
