"""Writes on the consortium structure. Callers load objects through organizations.access first;
creating inside a scope (a consortium, an institution) is authorised here."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from yilian.accounts.actors import Actor
from yilian.core.services import save_validated, set_fields
from yilian.organizations.access import can_manage_consortium, can_manage_institution
from yilian.organizations.models import (
    CentreKind,
    Consortium,
    ConsortiumCentre,
    ConsortiumMembership,
    Department,
    HealthAuthority,
    Institution,
    InstitutionCapability,
    InstitutionKind,
    MemberRole,
    ServiceGrid,
)

INSTITUTION_FIELDS = {
    "name",
    "short_name",
    "credit_code",
    "license_number",
    "level",
    "kind",
    "parent",
    "town",
    "address",
    "phone",
}
DEPARTMENT_FIELDS = {"name", "code", "is_clinical", "beds"}
GRID_FIELDS = {"name", "kind", "town", "population", "responsible_institution"}
CONSORTIUM_FIELDS = {"name", "short_name", "kind", "established_on", "dissolved_on"}


def _denied() -> PermissionDenied:
    return PermissionDenied(_("您当前的角色无权在此范围内执行此操作。"))


def _blank_to_none(value: str | None) -> str | None:
    value = (value or "").strip().upper()
    return value or None


def _set_capabilities(institution: Institution, capabilities: Iterable[str]) -> None:
    wanted = set(capabilities)
    institution.capabilities.exclude(capability__in=wanted).delete()
    existing = set(institution.capabilities.values_list("capability", flat=True))
    InstitutionCapability.objects.bulk_create(
        [InstitutionCapability(institution=institution, capability=c) for c in sorted(wanted - existing)]
    )


def _check_parent(institution: Institution) -> None:
    parent = institution.parent
    if institution.kind == InstitutionKind.VILLAGE_CLINIC and parent is None:
        raise ValidationError({"parent": _("村卫生室须指定所属的乡镇卫生院或社区卫生服务中心。")})
    if parent is not None and parent.kind not in {InstitutionKind.TOWNSHIP_CENTRE, InstitutionKind.COMMUNITY_CENTRE}:
        raise ValidationError({"parent": _("上级机构应为乡镇卫生院或社区卫生服务中心。")})


@transaction.atomic
def institution_create(
    *,
    actor: Actor,
    authority: HealthAuthority,
    consortium: Consortium | None = None,
    member_role: str = MemberRole.MEMBER,
    capabilities: Iterable[str] = (),
    **fields: object,
) -> Institution:
    """Register an institution; a consortium manager registers it straight into their consortium."""
    if consortium is not None:
        if not can_manage_consortium(actor, consortium):
            raise _denied()
        if consortium.authority_id != authority.id:
            raise ValidationError({"authority": _("机构的主管卫健部门须与医联体一致。")})
    elif not actor.is_system_admin:
        raise _denied()
    institution = Institution(authority=authority)
    set_fields(institution, fields, INSTITUTION_FIELDS)
    institution.credit_code = _blank_to_none(institution.credit_code)
    institution.license_number = _blank_to_none(institution.license_number)
    _check_parent(institution)
    save_validated(institution)
    _set_capabilities(institution, capabilities)
    if consortium is not None:
        consortium_member_add(actor=actor, consortium=consortium, institution=institution, role=member_role)
    return institution


@transaction.atomic
def institution_update(*, institution: Institution, capabilities: Iterable[str] | None = None, **fields: object) -> Institution:
    """Edit an institution the caller loaded with access_institution(for_write=True)."""
    set_fields(institution, fields, INSTITUTION_FIELDS)
    institution.credit_code = _blank_to_none(institution.credit_code)
    institution.license_number = _blank_to_none(institution.license_number)
    _check_parent(institution)
    save_validated(institution)
    if capabilities is not None:
        _set_capabilities(institution, capabilities)
    return institution


def institution_set_active(*, actor: Actor, institution: Institution, is_active: bool) -> Institution:
    """Deactivate (or reactivate) an institution. Institutions are never deleted: they hold data.

    Nobody deactivates the institution they act for: an institution admin would lock out their own
    staff (and themselves); that call belongs to the consortium manager or a system admin."""
    if not is_active and actor.institution is not None and actor.institution.pk == institution.pk:
        raise ValidationError(_("不能停用您当前所代表的机构，请由医联体管理员或系统管理员操作。"))
    institution.is_active = is_active
    institution.save(update_fields=["is_active", "updated_at"])
    return institution


@transaction.atomic
def consortium_create(
    *,
    actor: Actor,
    authority: HealthAuthority,
    lead_institution: Institution,
    name: str,
    established_on: dt.date,
    kind: str,
    short_name: str = "",
) -> Consortium:
    """Found a consortium: the lead joins as lead member and hosts the six management centres."""
    if not actor.is_system_admin:
        raise _denied()
    consortium = save_validated(
        Consortium(
            authority=authority,
            lead_institution=lead_institution,
            name=name,
            short_name=short_name,
            kind=kind,
            established_on=established_on,
        )
    )
    ConsortiumMembership.objects.create(
        consortium=consortium, institution=lead_institution, role=MemberRole.LEAD, joined_on=established_on
    )
    ConsortiumCentre.objects.bulk_create(
        [ConsortiumCentre(consortium=consortium, kind=kind, host_institution=lead_institution) for kind in CentreKind.values]
    )
    return consortium


def consortium_update(*, consortium: Consortium, **fields: object) -> Consortium:
    set_fields(consortium, fields, CONSORTIUM_FIELDS)
    return save_validated(consortium)


def consortium_member_add(
    *,
    actor: Actor,
    consortium: Consortium,
    institution: Institution,
    role: str = MemberRole.MEMBER,
    joined_on: dt.date | None = None,
) -> ConsortiumMembership:
    """Admit an institution to a consortium (it may belong to others too)."""
    if not can_manage_consortium(actor, consortium):
        raise _denied()
    if role == MemberRole.LEAD:
        raise ValidationError({"role": _("牵头单位在成立医联体时确定，不能另行添加。")})
    if not institution.is_active:
        raise ValidationError({"institution": _("该机构已停用。")})
    if ConsortiumMembership.objects.filter(consortium=consortium, institution=institution, left_on__isnull=True).exists():
        raise ValidationError({"institution": _("该机构已是本医联体成员。")})
    return save_validated(
        ConsortiumMembership(
            consortium=consortium, institution=institution, role=role, joined_on=joined_on or timezone.localdate()
        )
    )


def consortium_member_end(
    *, actor: Actor, membership: ConsortiumMembership, left_on: dt.date | None = None
) -> ConsortiumMembership:
    if not can_manage_consortium(actor, membership.consortium):
        raise _denied()
    if membership.role == MemberRole.LEAD:
        raise ValidationError(_("牵头单位不能退出自己牵头的医联体。"))
    membership.left_on = left_on or timezone.localdate()
    return save_validated(membership)


def department_create(*, actor: Actor, institution: Institution, **fields: object) -> Department:
    if not can_manage_institution(actor, institution):
        raise _denied()
    department = Department(institution=institution)
    set_fields(department, fields, DEPARTMENT_FIELDS)
    return save_validated(department)


def department_update(*, department: Department, **fields: object) -> Department:
    set_fields(department, fields, DEPARTMENT_FIELDS | {"is_active"})
    return save_validated(department)


def _check_grid_institution(grid: ServiceGrid) -> None:
    is_member = ConsortiumMembership.objects.current().filter(
        consortium_id=grid.consortium_id, institution_id=grid.responsible_institution_id
    )
    if grid.responsible_institution_id and not is_member.exists():
        raise ValidationError({"responsible_institution": _("责任机构须为本医联体的在册成员单位。")})


def grid_create(*, actor: Actor, consortium: Consortium, **fields: object) -> ServiceGrid:
    if not can_manage_consortium(actor, consortium):
        raise _denied()
    grid = ServiceGrid(consortium=consortium)
    set_fields(grid, fields, GRID_FIELDS)
    _check_grid_institution(grid)
    return save_validated(grid)


def grid_update(*, grid: ServiceGrid, **fields: object) -> ServiceGrid:
    set_fields(grid, fields, GRID_FIELDS | {"is_active"})
    _check_grid_institution(grid)
    return save_validated(grid)
