"""/api/v1 for patients (居民). Every patient goes through yilian.patients.access, which scopes the
query to the acting institution's records and grants and writes an access-log row per patient shown.
Lists show the ID number masked; the detail shows it whole."""

from __future__ import annotations

import datetime as dt
from typing import Any
from uuid import UUID

from django.http import HttpRequest
from ninja import Query, Router, Schema
from pydantic import Field

from yilian.access.models import GrantSource
from yilian.accounts.roles import Permission
from yilian.core.api import ERRORS, ErrorOut, Page, PageQuery, actor_of, paginate
from yilian.organizations.api import InstitutionRef
from yilian.patients.access import access_patient, patients_listed
from yilian.patients.models import IdentityDocumentType, Patient, Sex
from yilian.patients.selectors import patient_search

router = Router(tags=["patients 居民"])


class GridRef(Schema):
    id: UUID
    name: str
    town: str

    @staticmethod
    def resolve_id(obj: Any) -> UUID:
        return obj.uuid  # type: ignore[no-any-return]


class PatientListQuery(PageQuery):
    q: str | None = Field(None, max_length=50, description="姓名包含，或证件号码/手机号前缀（至少4位）")


class PatientListItem(Schema):
    id: UUID
    name: str
    sex: Sex
    birth_date: dt.date | None
    id_type: IdentityDocumentType
    masked_id_number: str = Field(description="证件号码（中间隐去）")
    town: str
    home_institution: InstitutionRef
    grid: GridRef | None

    @staticmethod
    def resolve_id(obj: Patient) -> UUID:
        return obj.uuid


class GrantOut(Schema):
    id: UUID
    source: GrantSource
    expires_at: dt.datetime

    @staticmethod
    def resolve_id(obj: Any) -> UUID:
        return obj.uuid  # type: ignore[no-any-return]


class PatientDetail(PatientListItem):
    id_number: str
    id_number_valid: bool
    phone: str
    address: str
    grant: GrantOut | None = Field(description="您据以查看的授权；本机构建档时为 null")


@router.get("/patients", response={200: Page[PatientListItem], ERRORS: ErrorOut})
def patient_list(request: HttpRequest, query: Query[PatientListQuery]) -> dict[str, Any]:
    """居民列表：本机构建档（含下属村卫生室）及经授权可见的居民。列出的每位居民都记入访问日志。"""
    actor = actor_of(request)
    actor.require(Permission.PATIENT_VIEW)
    patients = patient_search(Patient.objects.visible_to(actor), query.q or "")
    page = paginate(patients.select_related("home_institution", "grid").order_by("-id"), query)
    patients_listed(actor, page["items"], path=request.get_full_path())
    return page


@router.get("/patients/{id}", response={200: PatientDetail, ERRORS: ErrorOut})
def patient_detail(request: HttpRequest, id: UUID) -> Patient:
    """居民详情（完整证件号码）。本次查看记入访问日志。"""
    actor = actor_of(request)
    patient = access_patient(actor, id, path=request.get_full_path())
    return patient
