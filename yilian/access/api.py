"""/api/v1 for emergency (break-glass) access. The services decide who may open it and for how long;
every use lands in the privacy officers' review list."""

from __future__ import annotations

import datetime as dt
from typing import Any
from uuid import UUID

from django.conf import settings
from django.http import Http404, HttpRequest
from ninja import Router, Schema, Status
from pydantic import Field

from yilian.access.services import MAX_REASON_LENGTH, break_glass_find_patient, break_glass_open
from yilian.core.api import ERRORS, ErrorOut, InputSchema, actor_of
from yilian.patients.models import Patient

router = Router(tags=["access 授权访问"])

ID_NUMBER_LENGTH = Patient._meta.get_field("id_number").max_length


class BreakGlassIn(InputSchema):
    id_number: str = Field(max_length=ID_NUMBER_LENGTH, description="居民的完整证件号码（不提供模糊查找）")
    reason: str = Field(max_length=MAX_REASON_LENGTH, description="紧急访问理由（至少5个字）")
    hours: int = Field(
        min(2, settings.BREAK_GLASS_MAX_HOURS),
        ge=1,
        le=1000,
        description=f"授权时长（小时），最多 {settings.BREAK_GLASS_MAX_HOURS}",
    )


class BreakGlassPatient(Schema):
    id: UUID
    name: str

    @staticmethod
    def resolve_id(obj: Patient) -> UUID:
        return obj.uuid


class BreakGlassGrant(Schema):
    id: UUID
    expires_at: dt.datetime
    reason: str

    @staticmethod
    def resolve_id(obj: Any) -> UUID:
        return obj.uuid  # type: ignore[no-any-return]


class BreakGlassOut(Schema):
    patient: BreakGlassPatient
    grant: BreakGlassGrant | None = Field(description="新开的紧急授权；您本已有权查看时为 null，且不开授权")


@router.post("/access/break-glass", response={200: BreakGlassOut, 201: BreakGlassOut, ERRORS: ErrorOut})
def break_glass(request: HttpRequest, payload: BreakGlassIn) -> Status[dict[str, Any]]:
    """紧急授权（破窗）：凭完整证件号码和理由，获得数小时的个人授权，事后由隐私保护专员审核。"""
    actor = actor_of(request)
    id_number = "".join(payload.id_number.split()).upper()
    patient = break_glass_find_patient(actor=actor, id_number=id_number)
    if patient is None:
        # The same answer for "no such person" and "held outside your consortia".
        raise Http404
    if Patient.objects.visible_to(actor).filter(pk=patient.pk).exists():
        return Status(200, {"patient": patient, "grant": None})
    grant = break_glass_open(actor=actor, patient=patient, reason=payload.reason, hours=payload.hours)
    return Status(201, {"patient": patient, "grant": grant})
