"""Roles and their permissions, declared once. Every gatekeeper asks `Actor.can(Permission.X)`.

A role is held through a membership at an institution (or, for bureau supervisors, at a health
authority). Scope comes from where the membership is, never from the role alone: see
organizations/access.py and patients/access.py.
"""

from __future__ import annotations

from enum import StrEnum

from django.db import models
from django.utils.translation import gettext_lazy as _


class Role(models.TextChoices):
    CLINICIAN = "clinician", _("临床医生")
    NURSE = "nurse", _("护士")
    VILLAGE_DOCTOR = "village_doctor", _("乡村医生")
    REFERRAL_COORDINATOR = "referral_coordinator", _("转诊调度员")
    QUALITY_OFFICER = "quality_officer", _("质控专员")
    PHARMACY_OFFICER = "pharmacy_officer", _("药械专员")
    HR_OFFICER = "hr_officer", _("人力资源专员")
    CONSORTIUM_MANAGER = "consortium_manager", _("医联体管理员")
    BUREAU_SUPERVISOR = "bureau_supervisor", _("卫健局监管员")
    INSTITUTION_ADMIN = "institution_admin", _("机构管理员")
    SYSTEM_ADMIN = "system_admin", _("系统管理员")
    PRIVACY_OFFICER = "privacy_officer", _("隐私保护专员")


class Permission(StrEnum):
    STRUCTURE_VIEW = "structure.view"  # institutions, departments, grids of my consortia
    INSTITUTION_MANAGE = "institution.manage"  # my own institution (and its village clinics)
    CONSORTIUM_MANAGE = "consortium.manage"  # members, grids and centres of consortia my institution leads
    STAFF_VIEW = "staff.view"
    STAFF_MANAGE = "staff.manage"
    PATIENT_VIEW = "patient.view"  # identifiable patient data, still subject to the patient gatekeeper
    PATIENT_BREAK_GLASS = "patient.break_glass"
    ACCESS_REVIEW = "access.review"  # break-glass review, access logs of my institution's patients
    AGGREGATES_VIEW = "aggregates.view"  # counts and indicators, never identities
    AUTHORITY_SUPERVISE = "authority.supervise"  # read-only view over every consortium of my bureau
    API_KEY_MANAGE = "api_key.manage"
    RESULT_RECOGNISE = "result.recognise"  # 结果互认: accept another member's result instead of repeating the test
    MPI_REVIEW = "mpi.review"  # the master patient index review queue: link, merge, unmerge
    INTEROP_MANAGE = "interop.manage"  # CSV imports, the dead-letter list (read, fix, replay) of my institution
    SCHEDULE_MANAGE = "schedule.manage"  # 号源 / 床位: schedules, templates, quotas, leave, wards and beds of my institution
    REFERRAL_COORDINATE = "referral.coordinate"  # 转诊中心: accept and book for my institution and the consortia it leads
    SYSTEM_ADMIN = "system.admin"


P = Permission

_CLINICAL = {P.STRUCTURE_VIEW, P.STAFF_VIEW, P.PATIENT_VIEW, P.PATIENT_BREAK_GLASS, P.RESULT_RECOGNISE}

ROLE_PERMISSIONS: dict[str, frozenset[Permission]] = {
    Role.CLINICIAN: frozenset(_CLINICAL),
    Role.NURSE: frozenset({P.STRUCTURE_VIEW, P.STAFF_VIEW, P.PATIENT_VIEW}),
    Role.VILLAGE_DOCTOR: frozenset(_CLINICAL),
    Role.REFERRAL_COORDINATOR: frozenset(
        {P.STRUCTURE_VIEW, P.STAFF_VIEW, P.PATIENT_VIEW, P.AGGREGATES_VIEW, P.SCHEDULE_MANAGE, P.REFERRAL_COORDINATE}
    ),
    Role.QUALITY_OFFICER: frozenset({P.STRUCTURE_VIEW, P.STAFF_VIEW, P.AGGREGATES_VIEW}),
    Role.PHARMACY_OFFICER: frozenset({P.STRUCTURE_VIEW, P.STAFF_VIEW, P.AGGREGATES_VIEW}),
    Role.HR_OFFICER: frozenset({P.STRUCTURE_VIEW, P.STAFF_VIEW, P.STAFF_MANAGE, P.AGGREGATES_VIEW}),
    Role.CONSORTIUM_MANAGER: frozenset(
        {
            P.STRUCTURE_VIEW,
            P.CONSORTIUM_MANAGE,
            P.INSTITUTION_MANAGE,
            P.STAFF_VIEW,
            P.STAFF_MANAGE,
            P.AGGREGATES_VIEW,
            P.API_KEY_MANAGE,
            P.MPI_REVIEW,
            P.INTEROP_MANAGE,
            P.SCHEDULE_MANAGE,
        }
    ),
    Role.BUREAU_SUPERVISOR: frozenset({P.STRUCTURE_VIEW, P.AUTHORITY_SUPERVISE, P.AGGREGATES_VIEW}),
    Role.INSTITUTION_ADMIN: frozenset(
        {
            P.STRUCTURE_VIEW,
            P.INSTITUTION_MANAGE,
            P.STAFF_VIEW,
            P.STAFF_MANAGE,
            P.API_KEY_MANAGE,
            P.MPI_REVIEW,
            P.INTEROP_MANAGE,
            P.SCHEDULE_MANAGE,
        }
    ),
    Role.SYSTEM_ADMIN: frozenset(set(Permission) - {P.PATIENT_VIEW, P.PATIENT_BREAK_GLASS}),
    Role.PRIVACY_OFFICER: frozenset({P.STRUCTURE_VIEW, P.STAFF_VIEW, P.ACCESS_REVIEW}),
}

# Roles whose home page is about patients (the to-do inbox, patient search).
CLINICAL_ROLES = frozenset({Role.CLINICIAN, Role.NURSE, Role.VILLAGE_DOCTOR, Role.REFERRAL_COORDINATOR})

# Roles held at a health authority rather than at an institution.
AUTHORITY_ROLES = frozenset({Role.BUREAU_SUPERVISOR})


def permissions_for(role: str) -> frozenset[Permission]:
    """The permissions of a role; an unknown role has none (fail closed)."""
    return ROLE_PERMISSIONS.get(role, frozenset())
