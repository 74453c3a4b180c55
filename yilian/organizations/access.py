"""Gatekeepers for structure objects (institutions, consortia, departments, grids).

Scope rules, in one place:
- a system admin sees and manages everything;
- a bureau supervisor sees every institution and consortium of their bureau, read-only;
- anyone else acting for an institution sees the consortia that institution belongs to and
  their member institutions;
- an institution admin manages their institution and its village clinics; a consortium manager
  also manages every member of the consortia their institution leads.
Anything not allowed is "not found" (Http404), so a caller cannot probe for existence.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.db import connection
from django.db.models import Q, QuerySet
from django.http import Http404
from django.utils import timezone
from django.utils.translation import gettext as _

from yilian.accounts.actors import Actor
from yilian.accounts.roles import Permission, Role
from yilian.core.rows import statement_cursor
from yilian.organizations.models import (
    Consortium,
    ConsortiumMembership,
    Department,
    Institution,
    ServiceGrid,
)

NOTHING = Q(pk__in=[])


def _not_found() -> Http404:
    return Http404(_("未找到，或您无权访问。"))


def member_consortium_ids(institution: Institution) -> QuerySet[ConsortiumMembership, Any]:
    return ConsortiumMembership.objects.current().filter(institution=institution).values("consortium_id")


def led_consortium_ids(institution: Institution) -> QuerySet[Consortium, Any]:
    today = timezone.localdate()
    return (
        Consortium.objects.filter(lead_institution=institution)
        .filter(Q(dissolved_on__isnull=True) | Q(dissolved_on__gt=today))
        .values("id")
    )


def consortium_scope_filter(actor: Actor, prefix: str = "") -> Q:
    """Q over Consortium (through `prefix`) for the consortia an actor may see."""
    if not actor.can(Permission.STRUCTURE_VIEW):
        return NOTHING
    if actor.is_system_admin:
        return Q()
    if actor.can(Permission.AUTHORITY_SUPERVISE) and actor.authority is not None:
        return Q(**{f"{prefix}authority": actor.authority})
    if actor.institution is not None:
        return Q(**{f"{prefix}id__in": member_consortium_ids(actor.institution)})
    return NOTHING


def institution_scope_filter(actor: Actor, prefix: str = "") -> Q:
    """Q over Institution (through `prefix`) for the institutions an actor may see."""
    if not actor.can(Permission.STRUCTURE_VIEW):
        return NOTHING
    if actor.is_system_admin:
        return Q()
    if actor.can(Permission.AUTHORITY_SUPERVISE) and actor.authority is not None:
        return Q(**{f"{prefix}authority": actor.authority})
    if actor.institution is not None:
        fellow_members = ConsortiumMembership.objects.current().filter(consortium_id__in=member_consortium_ids(actor.institution))
        return Q(**{f"{prefix}id": actor.institution.id}) | Q(**{f"{prefix}id__in": fellow_members.values("institution_id")})
    return NOTHING


def institution_visible(actor: Actor, institution: Institution) -> bool:
    """Whether `actor` sees `institution`: `institution_scope_filter`'s rule decided in Python, the
    fellow members read once per Actor (a gatekeeper checking one loaded object needs no query)."""
    if not actor.can(Permission.STRUCTURE_VIEW):
        return False
    if actor.is_system_admin:
        return True
    if actor.can(Permission.AUTHORITY_SUPERVISE) and actor.authority is not None:
        return institution.authority_id == actor.authority.pk
    own = actor.institution
    if own is None:
        return False
    if institution.pk == own.pk:
        return True
    fellows = actor.remember("organizations.fellow_members", lambda: _fellow_member_ids(own))
    return institution.pk in fellows


def _fellow_member_ids(institution: Institution) -> frozenset[int]:
    """The current members of the consortia `institution` currently belongs to: the rule of
    `institution_scope_filter` (ConsortiumMembership.current twice) in plain SQL, since compiling
    it through the ORM costs more than running it; tests hold the two to the same answers."""
    today = timezone.localdate()
    with statement_cursor(connection) as cursor:
        cursor.execute(
            "SELECT m.institution_id FROM organizations_consortiummembership m"
            " WHERE m.joined_on <= %s AND (m.left_on IS NULL OR m.left_on > %s) AND m.consortium_id IN ("
            " SELECT o.consortium_id FROM organizations_consortiummembership o"
            " WHERE o.institution_id = %s AND o.joined_on <= %s AND (o.left_on IS NULL OR o.left_on > %s))",
            [today, today, institution.pk, today, today],
        )
        return frozenset(row[0] for row in cursor.fetchall())


def managed_institution_filter(actor: Actor, permission: Permission, prefix: str = "") -> Q:
    """Q over Institution for the institutions where `actor` may use a managing permission.

    `permission` is INSTITUTION_MANAGE (edit an institution and its departments) or STAFF_MANAGE.
    """
    if not actor.can(permission):
        return NOTHING
    if actor.is_system_admin:
        return Q()
    institution = actor.institution
    if institution is None or actor.api_key is not None:
        return NOTHING
    scope = Q(**{f"{prefix}id": institution.id}) | Q(**{f"{prefix}parent_id": institution.id})
    consortium_wide = actor.can(Permission.CONSORTIUM_MANAGE) or (
        permission == Permission.STAFF_MANAGE and actor.role == Role.HR_OFFICER
    )
    if consortium_wide:
        members = ConsortiumMembership.objects.current().filter(consortium_id__in=led_consortium_ids(institution))
        scope |= Q(**{f"{prefix}id__in": members.values("institution_id")})
    return scope


def managed_consortium_filter(actor: Actor, prefix: str = "") -> Q:
    """Q over Consortium for the consortia an actor manages (members, grids, centres)."""
    if not actor.can(Permission.CONSORTIUM_MANAGE):
        return NOTHING
    if actor.is_system_admin:
        return Q()
    if actor.institution is None:
        return NOTHING
    return Q(**{f"{prefix}id__in": led_consortium_ids(actor.institution)})


def _get(queryset: QuerySet, scope: Q, key: UUID | str):  # type: ignore[no-untyped-def]
    try:
        return queryset.filter(scope).get(uuid=key)
    except (ObjectDoesNotExist, ValidationError, ValueError, TypeError) as exc:
        raise _not_found() from exc


def access_institution(actor: Actor, key: UUID | str, *, for_write: bool = False) -> Institution:
    scope = managed_institution_filter(actor, Permission.INSTITUTION_MANAGE) if for_write else institution_scope_filter(actor)
    return _get(Institution.objects.select_related("authority", "parent"), scope, key)  # type: ignore[no-any-return]


def access_consortium(actor: Actor, key: UUID | str, *, for_write: bool = False) -> Consortium:
    scope = managed_consortium_filter(actor) if for_write else consortium_scope_filter(actor)
    return _get(Consortium.objects.select_related("authority", "lead_institution"), scope, key)  # type: ignore[no-any-return]


def access_department(actor: Actor, key: UUID | str, *, for_write: bool = False) -> Department:
    scope = (
        managed_institution_filter(actor, Permission.INSTITUTION_MANAGE, prefix="institution__")
        if for_write
        else institution_scope_filter(actor, prefix="institution__")
    )
    return _get(Department.objects.select_related("institution"), scope, key)  # type: ignore[no-any-return]


def access_grid(actor: Actor, key: UUID | str, *, for_write: bool = False) -> ServiceGrid:
    scope = (
        managed_consortium_filter(actor, prefix="consortium__")
        if for_write
        else consortium_scope_filter(actor, prefix="consortium__")
    )
    return _get(ServiceGrid.objects.select_related("consortium", "responsible_institution"), scope, key)  # type: ignore[no-any-return]


def can_manage_institution(
    actor: Actor, institution: Institution, permission: Permission = Permission.INSTITUTION_MANAGE
) -> bool:
    """Whether `actor` may use a managing permission (institution, staff, API keys) at `institution`."""
    return Institution.objects.filter(managed_institution_filter(actor, permission), pk=institution.pk).exists()


def can_manage_consortium(actor: Actor, consortium: Consortium) -> bool:
    return Consortium.objects.filter(managed_consortium_filter(actor), pk=consortium.pk).exists()
