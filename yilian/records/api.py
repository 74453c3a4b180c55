"""/api/v1 for records: the patient 360 timeline, recognisable results, orders and recognitions.

Every endpoint loads the patient through `records.access.access_patient_record` (holder or grant,
404 otherwise), which writes the access-log row.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal
from uuid import UUID

from django.conf import settings
from django.http import HttpRequest
from ninja import Query, Router, Schema, Status
from pydantic import Field

from yilian.accounts.roles import Permission
from yilian.core.api import ERRORS, ApiError, ErrorOut, InputSchema, Page, PageQuery, actor_of
from yilian.organizations.api import InstitutionRef
from yilian.records.access import access_patient_record
from yilian.records.catalogue import TESTS_BY_CODE
from yilian.records.models import DiagnosticReport, Observation, ReportCategory, ResultRecognition, ServiceRequest
from yilian.records.selectors import TIMELINE_KINDS, TimelineFilter, TimelineItem, recognisable_results, timeline_page
from yilian.records.services import result_recognise, service_request_create

router = Router(tags=["records 共享健康档案"])

TimelineKindName = Literal["encounter", "condition", "observation", "report", "medication", "procedure", "document", "settlement"]
assert set(TimelineKindName.__args__) == set(TIMELINE_KINDS)  # type: ignore[attr-defined]  # noqa: S101


class TimelineQuery(PageQuery):
    kind: list[TimelineKindName] = Field(default_factory=list, max_length=8, description="记录类型，可重复；不填为全部")
    institution: UUID | None = Field(None, description="来源机构")
    date_from: dt.date | None = Field(None, description="开始日期（含）")
    date_to: dt.date | None = Field(None, description="结束日期（含）")
    q: str | None = Field(None, max_length=50, description="编码前缀或名称包含")


class TimelineItemOut(Schema):
    kind: str = Field(description="encounter | condition | observation | report | medication | procedure | document | settlement")
    kind_label: str
    id: UUID
    occurred_at: dt.datetime
    title: str
    summary: str
    code: str
    flag: str = Field(description="异常标识、主要诊断、县域外等")
    institution: InstitutionRef = Field(description="来源机构")
    source_id: str = Field(description="来源系统记录号")
    recognisable: bool = Field(description="可作结果互认（其他成员单位、有效期内）")

    @staticmethod
    def resolve_id(obj: TimelineItem) -> UUID:
        return obj.record.uuid  # type: ignore[no-any-return]


@router.get("/patients/{id}/timeline", response={200: Page[TimelineItemOut], ERRORS: ErrorOut})
def patient_timeline(request: HttpRequest, id: UUID, query: Query[TimelineQuery]) -> dict[str, Any]:
    """患者360视图时间轴：各成员单位的就诊、诊断、检验、检查报告、处方、手术、文书与医保结算，按时间倒序。本次查看记入访问日志。"""
    actor = actor_of(request)
    limit = settings.API_MAX_PAGE_SIZE
    if query.page_size > limit:
        raise ApiError("bad_request", f"每页最多 {limit} 条。", fields={"page_size": [f"不能大于 {limit}。"]})
    if query.date_from and query.date_to and query.date_to < query.date_from:
        raise ApiError("validation_error", fields={"date_to": ["结束日期不能早于开始日期。"]})
    patient = access_patient_record(actor, id, path=request.get_full_path())
    institution_id = None
    if query.institution is not None:
        institution_id = (
            patient.identities.filter(institution__uuid=query.institution).values_list("institution_id", flat=True).first() or 0
        )
    filters = TimelineFilter(
        kinds=frozenset(query.kind),
        institution_id=institution_id,
        date_from=query.date_from,
        date_to=query.date_to,
        query=(query.q or "").strip(),
    )
    items, count = timeline_page(patient, filters, page=query.page, page_size=query.page_size, actor=actor)
    return {"items": items, "count": count, "page": query.page, "page_size": query.page_size}


class RecognisableQuery(Schema):
    code: str = Field(max_length=32, description="检查/检验项目编码")


class RecognisableOut(Schema):
    kind: Literal["observation", "report"]
    id: UUID
    display: str
    summary: str
    effective_at: dt.datetime
    valid_until: dt.datetime
    institution: InstitutionRef

    @staticmethod
    def resolve_id(obj: Any) -> UUID:
        return obj.record.uuid  # type: ignore[no-any-return]

    @staticmethod
    def resolve_display(obj: Any) -> str:
        return obj.record.display  # type: ignore[no-any-return]

    @staticmethod
    def resolve_effective_at(obj: Any) -> dt.datetime:
        return obj.record.effective_at  # type: ignore[no-any-return]

    @staticmethod
    def resolve_institution(obj: Any) -> Any:
        return obj.record.institution


def _test(code: str) -> Any:
    test = TESTS_BY_CODE.get(code)
    if test is None:
        raise ApiError("validation_error", fields={"code": ["不是可开单的检查/检验项目。"]})
    return test


@router.get("/patients/{id}/recognisable-results", response={200: list[RecognisableOut], ERRORS: ErrorOut})
def patient_recognisable_results(request: HttpRequest, id: UUID, query: Query[RecognisableQuery]) -> list[Any]:
    """可互认结果：其他成员单位在互认有效期内的同项检查/检验结果（开单前查看）。"""
    actor = actor_of(request)
    actor.require(Permission.RESULT_RECOGNISE)
    test = _test(query.code)
    patient = access_patient_record(actor, id, path=request.get_full_path())
    return recognisable_results(actor=actor, patient=patient, test=test)


class ServiceRequestIn(InputSchema):
    code: str = Field(max_length=32, description="检查/检验项目编码")
    reason: str = Field("", max_length=200, description="开单理由")


class ServiceRequestOut(Schema):
    id: UUID
    code: str
    display: str
    category: ReportCategory
    reason: str
    authored_at: dt.datetime

    @staticmethod
    def resolve_id(obj: ServiceRequest) -> UUID:
        return obj.uuid


@router.post("/patients/{id}/service-requests", response={201: ServiceRequestOut, ERRORS: ErrorOut})
def service_request_create_endpoint(request: HttpRequest, id: UUID, payload: ServiceRequestIn) -> Status:
    """开检查/检验。"""
    actor = actor_of(request)
    actor.require(Permission.RESULT_RECOGNISE)
    _test(payload.code)
    patient = access_patient_record(actor, id, path=request.get_full_path())
    return Status(201, service_request_create(actor=actor, patient=patient, code=payload.code, reason=payload.reason))


class RecognitionIn(InputSchema):
    code: str = Field(max_length=32, description="检查/检验项目编码")
    result_kind: Literal["observation", "report"]
    result_id: UUID


class RecognitionOut(Schema):
    id: UUID
    code: str
    display: str
    recognised_at: dt.datetime
    result_institution: InstitutionRef

    @staticmethod
    def resolve_id(obj: ResultRecognition) -> UUID:
        return obj.uuid


@router.post("/patients/{id}/result-recognitions", response={201: RecognitionOut, ERRORS: ErrorOut})
def result_recognition_create(request: HttpRequest, id: UUID, payload: RecognitionIn) -> Status:
    """结果互认：采用其他成员单位的结果，不再重复检查；每次互认均有记录。"""
    actor = actor_of(request)
    actor.require(Permission.RESULT_RECOGNISE)
    test = _test(payload.code)
    patient = access_patient_record(actor, id, path=request.get_full_path())
    model = Observation if payload.result_kind == "observation" else DiagnosticReport
    result = model._default_manager.filter(uuid=payload.result_id, identity__patient=patient).first()
    if result is None:
        raise ApiError("validation_error", fields={"result_id": ["未找到该患者的这项结果。"]})
    return Status(201, result_recognise(actor=actor, patient=patient, result=result, code=test.code))
