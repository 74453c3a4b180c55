"""Pages for staff, memberships and API keys.

Memberships are loaded with accounts.access gatekeepers; who may grant which role at which
institution is decided by accounts.services (staff_create, membership_create, membership_update).
"""

from __future__ import annotations

from uuid import UUID

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods, require_POST

from yilian.accounts import services
from yilian.accounts.access import (
    access_api_key,
    access_membership,
    access_person,
    api_key_scope_filter,
    assignable_roles,
    staff_manage_filter,
    visible_staff,
)
from yilian.accounts.actors import Actor
from yilian.accounts.models import ApiKey, Membership
from yilian.accounts.roles import Permission
from yilian.accounts.selectors import staff_queryset
from yilian.accounts.staff_forms import (
    ApiKeyCreateForm,
    ApiKeyFilterForm,
    MembershipCreateForm,
    MembershipEditForm,
    StaffCreateForm,
    StaffFilterForm,
)
from yilian.organizations.access import managed_institution_filter
from yilian.organizations.forms import apply_validation_error
from yilian.organizations.models import Department, Institution
from yilian.organizations.views import actor_of, as_uuid, cleaned_filters, render_list
from yilian.web.pagination import paginate


def _current(queryset: QuerySet[Membership]) -> QuerySet[Membership]:
    today = timezone.localdate()
    return queryset.filter(Q(ended_on__isnull=True) | Q(ended_on__gt=today), started_on__lte=today, is_active=True)


def _staff_institutions(actor: Actor) -> QuerySet[Institution]:
    """Active institutions where the actor may appoint staff."""
    return Institution.objects.filter(managed_institution_filter(actor, Permission.STAFF_MANAGE), is_active=True).order_by("name")


def _can_appoint(actor: Actor) -> bool:
    return bool(assignable_roles(actor)) and (actor.is_system_admin or _staff_institutions(actor).exists())


# --- Staff (memberships) --------------------------------------------------------------------


@login_required
def staff_list(request: HttpRequest) -> HttpResponse:
    actor = actor_of(request)
    actor.require(Permission.STAFF_VIEW)
    memberships = visible_staff(actor, staff_queryset())
    institutions = list(Institution.objects.filter(id__in=memberships.values("institution_id")).order_by("name"))
    form = StaffFilterForm(request.GET, institutions=institutions)
    filters = cleaned_filters(form)
    if q := filters.get("q"):
        memberships = memberships.filter(
            Q(user__full_name__icontains=q) | Q(user__username__icontains=q) | Q(user__phone__icontains=q)
        )
    if institution := as_uuid(filters.get("institution")):
        memberships = memberships.filter(institution__uuid=institution)
    if role := filters.get("role"):
        memberships = memberships.filter(role=role)
    status = filters.get("status")
    if status == "current":
        memberships = _current(memberships)
    elif status == "ended":
        memberships = memberships.exclude(pk__in=_current(Membership.objects.all()).values("pk"))
    memberships = memberships.order_by("institution__name", "user__full_name", "user__username", "started_on")
    page = paginate(request, memberships)
    ids = [m.pk for m in page.object_list]
    manageable = set(Membership.objects.filter(staff_manage_filter(actor), pk__in=ids).values_list("pk", flat=True))
    current = set(_current(Membership.objects.filter(pk__in=ids)).values_list("pk", flat=True))
    return render_list(
        request,
        "accounts/staff/list.html",
        "accounts/staff/_table.html",
        {"form": form, "page_obj": page, "manageable": manageable, "current": current, "can_create": _can_appoint(actor)},
    )


@login_required
def staff_detail(request: HttpRequest, uuid: UUID) -> HttpResponse:
    actor = actor_of(request)
    person = access_person(actor, uuid)
    memberships = list(visible_staff(actor, staff_queryset().filter(user=person)).order_by("-started_on"))
    ids = [m.pk for m in memberships]
    context = {
        "person": person,
        "memberships": memberships,
        "manageable": set(Membership.objects.filter(staff_manage_filter(actor), pk__in=ids).values_list("pk", flat=True)),
        "current": set(_current(Membership.objects.filter(pk__in=ids)).values_list("pk", flat=True)),
        "can_add_membership": _can_appoint(actor),
        "today": timezone.localdate(),
    }
    return render(request, "accounts/staff/detail.html", context)


@sensitive_post_parameters("password", "password_confirm")
@login_required
@require_http_methods(["GET", "POST"])
def staff_create(request: HttpRequest) -> HttpResponse:
    actor = actor_of(request)
    if not _can_appoint(actor):
        raise PermissionDenied(_("您当前的角色无权新增人员。"))
    institutions = _staff_institutions(actor)
    form = StaffCreateForm(request.POST if request.method == "POST" else None)
    form.setup_place(institutions=institutions, roles=assignable_roles(actor), is_system_admin=actor.is_system_admin)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            membership = services.staff_create(
                actor=actor,
                username=data["username"],
                full_name=data["full_name"],
                password=data["password"],
                role=data["role"],
                institution=data.get("institution"),
                authority=data.get("authority"),
                department=data.get("department"),
                phone=data["phone"],
                title=data["title"],
                specialty=data["specialty"],
                certificate_number=data["certificate_number"] or None,
                started_on=data.get("started_on"),
            )
        except ValidationError as exc:
            apply_validation_error(form, exc)
        except PermissionDenied as exc:
            form.add_error("institution", str(exc))
            form.mark_invalid()
        else:
            messages.success(request, _("已新增人员：%(name)s。") % {"name": membership.user})
            return redirect("accounts:staff_detail", uuid=membership.user.uuid)
    return render(request, "accounts/staff/create.html", {"form": form})


@login_required
@require_http_methods(["GET", "POST"])
def membership_create(request: HttpRequest, uuid: UUID) -> HttpResponse:
    actor = actor_of(request)
    person = access_person(actor, uuid)
    if not _can_appoint(actor):
        raise PermissionDenied(_("您当前的角色无权设置任职。"))
    form = MembershipCreateForm(request.POST if request.method == "POST" else None, person=person)
    form.setup_place(
        institutions=_staff_institutions(actor), roles=assignable_roles(actor), is_system_admin=actor.is_system_admin
    )
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            services.membership_create(
                actor=actor,
                user=person,
                role=data["role"],
                institution=data.get("institution"),
                authority=data.get("authority"),
                department=data.get("department"),
                started_on=data.get("started_on"),
                ended_on=data.get("ended_on"),
            )
        except ValidationError as exc:
            apply_validation_error(form, exc)
        except PermissionDenied as exc:
            form.add_error("institution", str(exc))
            form.mark_invalid()
        else:
            messages.success(request, _("已为 %(name)s 新增任职。") % {"name": person})
            return redirect("accounts:staff_detail", uuid=person.uuid)
    return render(request, "accounts/staff/membership_form.html", {"form": form, "person": person, "creating": True})


@login_required
@require_http_methods(["GET", "POST"])
def membership_edit(request: HttpRequest, uuid: UUID) -> HttpResponse:
    actor = actor_of(request)
    membership = access_membership(actor, uuid, for_write=True)
    departments = Department.objects.filter(institution=membership.institution, is_active=True).order_by("code")
    if membership.department is not None:
        departments = departments | Department.objects.filter(pk=membership.department.pk)
    roles = assignable_roles(actor) | {membership.role}  # the current role stays selectable; the service decides
    form = MembershipEditForm(
        request.POST if request.method == "POST" else None,
        membership=membership,
        roles=roles,
        departments=departments.select_related("institution"),
    )
    if request.method == "POST" and form.is_valid():
        try:
            services.membership_update(
                actor=actor,
                membership=membership,
                role=form.cleaned_data["role"],
                department=form.cleaned_data["department"],
                ended_on=form.cleaned_data["ended_on"],
            )
        except ValidationError as exc:
            apply_validation_error(form, exc)
        except PermissionDenied as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, _("已保存任职信息。"))
            return redirect("accounts:staff_detail", uuid=membership.user.uuid)
    return render(
        request, "accounts/staff/membership_form.html", {"form": form, "person": membership.user, "membership": membership}
    )


@login_required
@require_POST
def membership_end(request: HttpRequest, uuid: UUID) -> HttpResponse:
    membership = access_membership(actor_of(request), uuid, for_write=True)
    if membership.ended_on is not None and membership.ended_on <= timezone.localdate():
        messages.info(request, _("该任职已结束。"))
    else:
        try:
            services.membership_end(membership=membership)
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
        else:
            ended = _("已结束 %(name)s 在 %(place)s 的任职。") % {"name": membership.user, "place": membership.place}
            messages.success(request, ended)
    return redirect("accounts:staff_detail", uuid=membership.user.uuid)


# --- API keys -------------------------------------------------------------------------------


def _key_institutions(actor: Actor) -> QuerySet[Institution]:
    scope = managed_institution_filter(actor, Permission.API_KEY_MANAGE)
    return Institution.objects.filter(scope, is_active=True).order_by("name")


@login_required
def api_key_list(request: HttpRequest) -> HttpResponse:
    actor = actor_of(request)
    actor.require(Permission.API_KEY_MANAGE)
    keys = ApiKey.objects.filter(api_key_scope_filter(actor)).select_related("institution", "created_by")
    institutions = list(Institution.objects.filter(id__in=keys.values("institution_id")).order_by("name"))
    form = ApiKeyFilterForm(request.GET, institutions=institutions)
    filters = cleaned_filters(form)
    if q := filters.get("q"):
        keys = keys.filter(Q(name__icontains=q) | Q(prefix__icontains=q))
    if institution := as_uuid(filters.get("institution")):
        keys = keys.filter(institution__uuid=institution)
    now = timezone.now()
    usable = Q(revoked_at__isnull=True) & (Q(expires_at__isnull=True) | Q(expires_at__gt=now))
    if filters.get("status") == "usable":
        keys = keys.filter(usable)
    elif filters.get("status") == "revoked":
        keys = keys.filter(revoked_at__isnull=False)
    page = paginate(request, keys.order_by("institution__name", "-created_at"))
    return render_list(
        request,
        "accounts/api_keys/list.html",
        "accounts/api_keys/_table.html",
        {"form": form, "page_obj": page, "now": now, "can_create": _key_institutions(actor).exists()},
    )


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def api_key_create(request: HttpRequest) -> HttpResponse:
    actor = actor_of(request)
    actor.require(Permission.API_KEY_MANAGE)
    institutions = _key_institutions(actor)
    if not institutions.exists():
        raise PermissionDenied(_("您无权为任何机构签发接口密钥。"))
    form = ApiKeyCreateForm(request.POST if request.method == "POST" else None, institutions=institutions)
    if request.method == "POST" and form.is_valid():
        try:
            key, raw = services.api_key_create(
                actor=actor,
                institution=form.cleaned_data["institution"],
                name=form.cleaned_data["name"],
                expires_at=form.expires_at(),
            )
        except ValidationError as exc:
            apply_validation_error(form, exc)
        else:
            # The raw key is shown on this response only: it is not stored, and the page is not cached.
            return render(request, "accounts/api_keys/created.html", {"key": key, "raw_key": raw})
    return render(request, "accounts/api_keys/create.html", {"form": form})


@login_required
@require_POST
def api_key_revoke(request: HttpRequest, uuid: UUID) -> HttpResponse:
    key = access_api_key(actor_of(request), uuid)
    if key.revoked_at is not None:
        messages.info(request, _("该密钥已吊销。"))
    else:
        services.api_key_revoke(api_key=key)
        messages.warning(request, _("已吊销密钥 %(prefix)s…，使用它的系统将无法再访问接口。") % {"prefix": key.prefix})
    return redirect("accounts:api_key_list")
