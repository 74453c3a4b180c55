"""Gatekeepers for staff memberships and API keys."""

from __future__ import annotations

from uuid import UUID

from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.db.models import Q, QuerySet
from django.http import Http404
from django.utils.translation import gettext as _

from yilian.accounts.actors import Actor
from yilian.accounts.models import ApiKey, Membership, User
from yilian.accounts.roles import Permission, Role
from yilian.organizations.access import NOTHING, institution_scope_filter, managed_institution_filter

# Roles an institution admin, HR officer or consortium manager may hand out. Authority roles and
# system administration are given only by a system admin.
DELEGABLE_ROLES = frozenset(
    {
        Role.CLINICIAN,
        Role.NURSE,
        Role.VILLAGE_DOCTOR,
        Role.REFERRAL_COORDINATOR,
        Role.QUALITY_OFFICER,
        Role.PHARMACY_OFFICER,
        Role.HR_OFFICER,
        Role.INSTITUTION_ADMIN,
        Role.PRIVACY_OFFICER,
    }
)


def assignable_roles(actor: Actor) -> frozenset[str]:
    if actor.is_system_admin:
        return frozenset(Role.values)
    if not actor.can(Permission.STAFF_MANAGE):
        return frozenset()
    if actor.can(Permission.CONSORTIUM_MANAGE):
        return DELEGABLE_ROLES | {Role.CONSORTIUM_MANAGER}
    return DELEGABLE_ROLES


def staff_scope_filter(actor: Actor) -> Q:
    """Q over Membership for the memberships (staff) an actor may see."""
    if not actor.can(Permission.STAFF_VIEW):
        return NOTHING
    if actor.is_system_admin:
        return Q()
    scope = Q(institution__isnull=False) & institution_scope_filter(actor, prefix="institution__")
    if actor.can(Permission.AUTHORITY_SUPERVISE) and actor.authority is not None:
        scope |= Q(authority=actor.authority)
    return scope


def staff_manage_filter(actor: Actor) -> Q:
    return Q(institution__isnull=False) & managed_institution_filter(actor, Permission.STAFF_MANAGE, prefix="institution__")


def visible_staff(actor: Actor, queryset: QuerySet[Membership]) -> QuerySet[Membership]:
    return queryset.filter(staff_scope_filter(actor))


def access_membership(actor: Actor, key: UUID | str, *, for_write: bool = False) -> Membership:
    scope = staff_manage_filter(actor) if for_write else staff_scope_filter(actor)
    try:
        return Membership.objects.select_related("user", "institution", "authority", "department").filter(scope).get(uuid=key)
    except (ObjectDoesNotExist, ValidationError, ValueError, TypeError) as exc:
        raise Http404(_("未找到，或您无权访问。")) from exc


def access_person(actor: Actor, key: UUID | str) -> User:
    """A person (user) the actor may see as staff: at least one of their memberships is visible."""
    visible = Membership.objects.filter(staff_scope_filter(actor)).values("user_id")
    try:
        return User.objects.select_related("practitioner").filter(id__in=visible).get(uuid=key)  # type: ignore[no-any-return]
    except (ObjectDoesNotExist, ValidationError, ValueError, TypeError) as exc:
        raise Http404(_("未找到，或您无权访问。")) from exc


def api_key_scope_filter(actor: Actor) -> Q:
    return managed_institution_filter(actor, Permission.API_KEY_MANAGE, prefix="institution__")


def access_api_key(actor: Actor, key: UUID | str) -> ApiKey:
    try:
        return ApiKey.objects.select_related("institution").filter(api_key_scope_filter(actor)).get(uuid=key)
    except (ObjectDoesNotExist, ValidationError, ValueError, TypeError) as exc:
        raise Http404(_("未找到，或您无权访问。")) from exc
