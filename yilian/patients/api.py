"""/api/v1 for patients (居民) and the review queue of the master patient index (/mpi).

Every patient goes through yilian.patients.access, which scopes the query to the acting
institution's records and grants (or, for the review queue, to the reviewer's scope) and writes an
access-log row per patient shown. Lists show the ID number masked; details show it whole."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace
from typing import Any, Literal
from uuid import UUID

from django.http import Http404, HttpRequest
from ninja import Query, Router, Schema
from pydantic import Field

from yilian.access.models import AccessAction, GrantSource
from yilian.accounts.roles import Permission
from yilian.core.api import ERRORS, ErrorOut, InputSchema, Page, PageQuery, actor_of, field_error, paginate
from yilian.organizations.api import InstitutionRef
from yilian.patients.access import (
    access_merge,
    access_patient,
    access_review,
    identities_reviewed,
    merge_scope_filter,
    patients_listed,
    review_scope_filter,
)
from yilian.patients.models import (
    IdentityDocumentType,
    LinkMethod,
    MatchReview,
    Patient,
    PatientMerge,
    ReviewDecision,
    ReviewStatus,
    Sex,
    SourceIdentity,
)
from yilian.patients.selectors import (
    ReviewSides,
    merge_history,
    merge_patients,
    patient_search,
    review_queue,
    review_queue_patients,
    review_sides,
)
from yilian.patients.services import MAX_REASON_LENGTH, patient_unmerge, review_decide

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


# --- the review queue of the master patient index (MPI_REVIEW) -------------------------------------
#
# Scoped exactly as the pages (patients.access.review_scope_filter / merge_scope_filter): a system
# admin sees everything, a consortium manager the items touching the members of the consortia their
# institution leads, an institution admin those touching their institution or its village clinics.
# Every patient shown is written to the access log with basis `mpi_review`.

ReviewStatusFilter = Literal["open", "linked", "distinct", "all"]
MergeStatusFilter = Literal["active", "undone", "all"]


class ReviewListQuery(PageQuery):
    status: ReviewStatusFilter = Field("open", description="open（默认，按得分从高到低）| linked | distinct | all（最新在前）")


class MergeListQuery(PageQuery):
    status: MergeStatusFilter = Field("all", description="active（未撤销）| undone（已撤销）| all（默认）")


class PatientRef(Schema):
    """A golden patient in the review queue: the ID number masked (lists)."""

    id: UUID
    name: str
    sex: Sex
    birth_date: dt.date | None
    masked_id_number: str
    home_institution: InstitutionRef

    @staticmethod
    def resolve_id(obj: Patient) -> UUID:
        return obj.uuid


class IdentityRef(Schema):
    """The incoming source identity of a review item as its institution sent it (ID number masked)."""

    id: UUID
    institution: InstitutionRef
    local_id: str
    name: str
    sex: Sex
    birth_date: dt.date | None
    masked_id_number: str = Field(description="证件号码（中间隐去）")

    @staticmethod
    def resolve_id(obj: SourceIdentity) -> UUID:
        return obj.uuid

    @staticmethod
    def resolve_masked_id_number(obj: SourceIdentity) -> str:
        n = obj.id_number
        return f"{n[:4]}**********{n[-4:]}" if len(n) >= 10 else "****"


class ReviewItem(Schema):
    id: UUID
    status: ReviewStatus
    score: float = Field(description="匹配得分（对数似然比）")
    identity: IdentityRef
    incoming_patient: PatientRef = Field(description="新到身份当前所属的主索引患者")
    candidate: PatientRef = Field(description="候选患者")
    created_at: dt.datetime
    decided_at: dt.datetime | None
    decided_by_name: str
    merge_id: UUID | None = Field(description="确认同一人时产生的合并")

    @staticmethod
    def resolve_id(obj: MatchReview) -> UUID:
        return obj.uuid

    @staticmethod
    def resolve_incoming_patient(obj: MatchReview) -> Patient:
        return obj.identity.patient

    @staticmethod
    def resolve_merge_id(obj: MatchReview) -> UUID | None:
        return obj.merge.uuid if obj.merge_id is not None else None  # type: ignore[union-attr]


class Demographics(Schema):
    """One side in full (the review duty sees whole ID numbers; the read is logged)."""

    name: str
    sex: Sex
    birth_date: dt.date | None
    id_type: IdentityDocumentType
    id_number: str
    id_number_valid: bool
    phone: str
    address: str
    town: str


class IdentityOut(Demographics):
    id: UUID
    institution: InstitutionRef
    local_id: str
    link_method: LinkMethod
    link_score: float | None

    @staticmethod
    def resolve_id(obj: SourceIdentity) -> UUID:
        return obj.uuid


class PatientSide(Demographics):
    id: UUID
    home_institution: InstitutionRef
    identities: list[IdentityOut] = Field(description="该患者的全部源身份（最多 20 条）")

    @staticmethod
    def resolve_id(obj: Patient) -> UUID:
        return obj.uuid


class ComparisonRow(Schema):
    field: str
    label: str
    level: int | None = Field(description="比较级别：0 不一致，数值越大越接近；null 未比较")


class Alternative(Schema):
    """Another open item of the same incoming identity: a candidate the reviewer may link to instead."""

    review_id: UUID
    score: float
    candidate: PatientRef


class ReviewDetail(ReviewItem):
    incoming_identity: IdentityOut = Field(description="新到源身份（完整）")
    incoming_side: PatientSide = Field(description="新到身份当前所属患者及其全部源身份")
    candidate_side: PatientSide = Field(description="候选患者及其全部源身份")
    comparison: list[ComparisonRow]
    alternatives: list[Alternative] = Field(description="同一新到身份的其他待审核候选（可改为关联到其中一位）")


class DecisionIn(InputSchema):
    decision: ReviewDecision = Field(description="merge：是同一人，合并 | distinct：不是同一人 | link_other：是另一位候选患者")
    reason: str = Field("", max_length=MAX_REASON_LENGTH, description="说明（合并时记为合并原因）")
    other_review: UUID | None = Field(None, description="link_other 时必填：同一新到身份的另一条待审核匹配")


class MergeItem(Schema):
    id: UUID
    survivor: PatientRef = Field(description="保留患者")
    merged: PatientRef = Field(description="被合并患者")
    reason: str
    actor_name: str
    actor_institution: InstitutionRef | None
    created_at: dt.datetime
    unmerged_at: dt.datetime | None
    unmerged_by_name: str

    @staticmethod
    def resolve_id(obj: PatientMerge) -> UUID:
        return obj.uuid


def _reviews(request: HttpRequest) -> Any:
    actor = actor_of(request)
    actor.require(Permission.MPI_REVIEW)
    return actor, MatchReview.objects.filter(review_scope_filter(actor))


@router.get("/mpi/reviews", response={200: Page[ReviewItem], ERRORS: ErrorOut})
def review_list(request: HttpRequest, query: Query[ReviewListQuery]) -> dict[str, Any]:
    """主索引审核队列：本人审核范围内的可能重复（默认待审核，按得分排序）。列出的患者记入访问日志（依据：主索引审核）。"""
    actor, reviews = _reviews(request)
    page = paginate(review_queue(reviews, status=query.status).select_related("merge"), query)
    identities_reviewed(actor, review_queue_patients(page["items"]), action=AccessAction.LIST, path=request.get_full_path())
    return page


def _detail(sides: ReviewSides) -> SimpleNamespace:
    """The detail in the shape ReviewDetail reads (attributes, so the inherited resolvers apply)."""

    def side(patient: Patient, identities: list[SourceIdentity]) -> SimpleNamespace:
        demographics = {f: getattr(patient, f) for f in Demographics.model_fields}
        return SimpleNamespace(
            **demographics, uuid=patient.uuid, home_institution=patient.home_institution, identities=identities
        )

    review = sides.review
    fields = (
        "uuid",
        "status",
        "score",
        "identity",
        "candidate",
        "created_at",
        "decided_at",
        "decided_by_name",
        "merge_id",
        "merge",
    )
    return SimpleNamespace(
        **{f: getattr(review, f) for f in fields},
        incoming_identity=review.identity,
        incoming_side=side(sides.incoming, sides.incoming_identities),
        candidate_side=side(sides.candidate, sides.candidate_identities),
        comparison=[{"field": r.field, "label": r.label, "level": r.level} for r in sides.rows],
        alternatives=[{"review_id": r.uuid, "score": r.score, "candidate": r.candidate} for r in sides.alternatives],
    )


@router.get("/mpi/reviews/{id}", response={200: ReviewDetail, ERRORS: ErrorOut})
def review_detail(request: HttpRequest, id: UUID) -> SimpleNamespace:
    """一条待审核匹配：新到身份与候选患者并排（完整信息）及比较明细。两位患者均记入访问日志（依据：主索引审核）。"""
    actor, reviews = _reviews(request)
    sides = review_sides(access_review(actor, id), reviews=reviews)
    identities_reviewed(actor, sides.patients, path=request.get_full_path())
    return _detail(sides)


@router.post("/mpi/reviews/{id}/decision", response={200: ReviewItem, ERRORS: ErrorOut})
def review_decision(request: HttpRequest, id: UUID, payload: DecisionIn) -> MatchReview:
    """审核结论：merge 合并为同一人，distinct 保持分开，link_other 关联到同一新到身份的另一位候选患者。已审核的为 422。"""
    actor = actor_of(request)
    actor.require(Permission.MPI_REVIEW)
    review = access_review(actor, id)
    other = None
    if payload.other_review is not None:
        try:
            other = access_review(actor, payload.other_review)
        except Http404 as exc:
            raise field_error("other_review", "未找到，或您无权访问。") from exc
    decided = review_decide(actor=actor, review=review, decision=payload.decision, reason=payload.reason, other=other)
    return _reload_review(decided)


def _reload_review(review: MatchReview) -> MatchReview:
    return MatchReview.objects.select_related(
        "identity__institution", "identity__patient__home_institution", "candidate__home_institution", "merge"
    ).get(pk=review.pk)


def _merges(request: HttpRequest) -> Any:
    actor = actor_of(request)
    actor.require(Permission.MPI_REVIEW)
    return actor, PatientMerge.objects.filter(merge_scope_filter(actor))


@router.get("/mpi/merges", response={200: Page[MergeItem], ERRORS: ErrorOut})
def merge_list(request: HttpRequest, query: Query[MergeListQuery]) -> dict[str, Any]:
    """合并记录：本人审核范围内的患者合并（最新在前）。列出的患者记入访问日志（依据：主索引审核）。"""
    actor, merges = _merges(request)
    page = paginate(merge_history(merges, status=query.status), query)
    identities_reviewed(actor, merge_patients(page["items"]), action=AccessAction.LIST, path=request.get_full_path())
    return page


@router.post("/mpi/merges/{id}/unmerge", response={200: MergeItem, ERRORS: ErrorOut})
def merge_unmerge(request: HttpRequest, id: UUID) -> PatientMerge:
    """撤销合并：源身份恢复到合并前的关联，被合并患者恢复。已撤销或保留患者已被再次合并时为 422。"""
    actor, merges = _merges(request)
    merge = patient_unmerge(actor=actor, merge=access_merge(actor, id))
    return merge_history(merges).get(pk=merge.pk)
