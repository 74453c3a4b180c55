"""Writes of the referral workflow. Every step checks its side (access.is_sender / is_receiver),
locks the referral row, checks the state it comes from, and moves it with a conditional UPDATE, so
two clicks or two clients never take the same step twice. Bookings and bed reservations go through
`scheduling.services` inside the same transaction: a taken slot or a closed bed rolls the whole
step back and nothing changes.

Deadlines: a referral must be accepted by `accept_by` (per urgency, configurable per consortium
in ReferralDeadline, defaults in settings.REFERRAL_DEADLINES); past it the coordinators are
notified once (`referrals_escalate`). An open referral past `expires_at` expires
(`referrals_expire`); once accepted, `expires_at` moves to the appointment (or acceptance) plus
REFERRAL_ARRIVAL_GRACE_DAYS. Both run from `manage.py referrals_tick` and the task worker.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, transaction
from django.db.models import OuterRef, Q, Subquery
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from yilian.access.models import GrantScope, GrantSource
from yilian.access.services import grant_issue, grant_revoke
from yilian.accounts.actors import Actor
from yilian.accounts.models import Membership, User
from yilian.accounts.roles import Permission, Role
from yilian.core.services import save_validated, sender_identifier
from yilian.notifications.models import NotificationKind
from yilian.notifications.services import notification_send
from yilian.notifications.sms import sms_send
from yilian.organizations.models import (
    Capability,
    Consortium,
    ConsortiumMembership,
    Department,
    Institution,
    InstitutionCapability,
    InstitutionKind,
)
from yilian.patients.models import Patient
from yilian.records.icd10 import icd10_lookup
from yilian.records.models import Encounter
from yilian.referrals.access import is_receiver, is_sender
from yilian.referrals.models import (
    CLOSED_STATUSES,
    OPEN_STATUSES,
    Direction,
    DiseaseArea,
    FollowUpStatus,
    FollowUpTask,
    Referral,
    ReferralCriterion,
    ReferralDeadline,
    ReferralEvent,
    ReferralStatus,
    ShareScope,
    Urgency,
)
from yilian.scheduling import services as scheduling
from yilian.scheduling.models import Bed, BedReservation, Booking, BookingStatus, ReservationStatus, Slot

S = ReferralStatus
MAX_FOLLOW_UPS = 12

# 分级: village clinics and stations 0, township and community centres (and rehabilitation or
# nursing institutions, which take patients down) 1, county hospitals 2.
TIERS: dict[str, int] = {
    InstitutionKind.VILLAGE_CLINIC: 0,
    InstitutionKind.COMMUNITY_STATION: 0,
    InstitutionKind.PRIVATE_CLINIC: 0,
    InstitutionKind.TOWNSHIP_CENTRE: 1,
    InstitutionKind.COMMUNITY_CENTRE: 1,
    InstitutionKind.REHABILITATION: 1,
    InstitutionKind.NURSING_HOME: 1,
    InstitutionKind.GENERAL_HOSPITAL: 2,
    InstitutionKind.TCM_HOSPITAL: 2,
    InstitutionKind.SPECIALTY_HOSPITAL: 2,
    InstitutionKind.MATERNAL_CHILD: 2,
}


def tier(institution: Institution) -> int:
    return TIERS.get(institution.kind, 1)


# --- rules that need no actor -------------------------------------------------------------------


def deadlines_for(consortium: Consortium, urgency: str) -> tuple[int, int]:
    """(minutes to accept, minutes until an unanswered referral expires) for one urgency."""
    row = ReferralDeadline.objects.filter(consortium=consortium, urgency=urgency).first()
    if row is not None:
        return row.accept_minutes, row.expire_minutes
    accept, expire = settings.REFERRAL_DEADLINES[urgency]
    return int(accept), int(expire)


def shared_consortia(first: Institution, second: Institution) -> list[Consortium]:
    """The consortia both institutions belong to today (a referral stays inside one)."""
    mine = ConsortiumMembership.objects.current().filter(institution=first).values("consortium_id")
    theirs = ConsortiumMembership.objects.current().filter(institution=second, consortium_id__in=mine)
    return list(Consortium.objects.filter(id__in=theirs.values("consortium_id")).order_by("id"))


def direction_error(direction: str, sender: Institution, destination: Institution) -> str | None:
    """Why `direction` does not fit the two institutions' levels, or None when it does."""
    here, there = tier(sender), tier(destination)
    if direction == Direction.UP and there <= here:
        return _("上转只能转往更高一级的机构（村卫生室 → 乡镇卫生院 → 县级医院）。")
    if direction == Direction.DOWN and there >= here:
        return _("下转只能转往更基层的机构。")
    if direction == Direction.LATERAL and there != here:
        return _("平转只能转往同级机构。")
    return None


def criteria_for(*, consortium: Consortium | None, direction: str | None = None) -> list[ReferralCriterion]:
    """The active catalogue lines offered in a consortium: its own and the county-wide seed."""
    queryset = ReferralCriterion.objects.filter(is_active=True)
    if consortium is not None:
        queryset = queryset.filter(Q(consortium__isnull=True) | Q(consortium=consortium))
    else:
        queryset = queryset.filter(consortium__isnull=True)
    if direction:
        queryset = queryset.filter(direction=direction)
    return list(queryset.order_by("disease", "direction", "position", "id"))


# --- helpers --------------------------------------------------------------------------------------


def _event(referral: Referral, kind: str, actor: Actor | None, note: str = "", at: dt.datetime | None = None) -> None:
    ReferralEvent.objects.create(
        referral=referral,
        at=at or timezone.now(),
        kind=kind,
        user=actor.user if actor is not None and actor.api_key is None else None,
        institution=actor.institution if actor is not None else None,
        note=note[:500],
    )


def _link(referral: Referral) -> str:
    return reverse("referrals:detail", args=[referral.uuid])


def _receivers(referral: Referral) -> list[User]:
    """Who is told of a new referral: clinicians of the receiving department (or institution when
    none is named) and the coordinators of the receiving institution and of the referral centre."""
    clinicians = Q(institution_id=referral.destination_institution_id, role__in=[Role.CLINICIAN, Role.VILLAGE_DOCTOR])
    if referral.destination_department_id is not None:
        clinicians &= Q(department_id=referral.destination_department_id)
    return _users(clinicians | _coordinators_q(referral))


def _coordinators_q(referral: Referral) -> Q:
    lead = referral.consortium.lead_institution_id
    return Q(role=Role.REFERRAL_COORDINATOR, institution_id__in=[referral.destination_institution_id, lead])


def _users(condition: Q) -> list[User]:
    memberships = Membership.objects.current().filter(condition).select_related("user")
    return [m.user for m in memberships if m.user.is_active]


def _senders(referral: Referral) -> list[User]:
    if referral.sender_user is not None:
        return [referral.sender_user]
    return _users(Q(institution_id=referral.sender_institution_id, role=Role.CLINICIAN))


def _notify(users: Iterable[User], referral: Referral, title: str, body: str = "") -> None:
    notification_send(recipients=users, kind=NotificationKind.REFERRAL, title=title, link=_link(referral), body=body)


def _sms(referral: Referral, text: str) -> None:
    phone = referral.patient.phone
    if phone:
        transaction.on_commit(lambda: sms_send(phone=phone, text=text[:500]))


def _lock(referral: Referral) -> Referral:
    return Referral.objects.select_for_update().select_related("patient", "consortium").get(pk=referral.pk)


def _require_state(referral: Referral, *allowed: str) -> None:
    if referral.status not in allowed:
        raise ValidationError(
            _("转诊单当前状态为“%(status)s”，不能执行此操作。") % {"status": referral.get_status_display()}, code="state"
        )


def _require_sender(actor: Actor, referral: Referral) -> None:
    if not is_sender(actor, referral):
        raise PermissionDenied(_("只有转出机构可以执行此操作。"))


def _require_receiver(actor: Actor, referral: Referral) -> None:
    if not is_receiver(actor, referral):
        raise PermissionDenied(_("只有接收机构（接收科室或转诊中心调度员）可以执行此操作。"))


def _text(value: str, field: str, limit: int, *, required: bool = False, label: str = "") -> str:
    value = (value or "").strip()
    if required and not value:
        raise ValidationError({field: _("请填写%(label)s。") % {"label": label}})
    if len(value) > limit:
        raise ValidationError({field: _("%(label)s最多 %(limit)d 个字。") % {"label": label, "limit": limit}})
    if "\x00" in value:
        raise ValidationError({field: _("含有无效字符。")})
    return value


def _end_grant(referral: Referral, user: User | None) -> None:
    if referral.grant is not None:
        grant_revoke(grant=referral.grant, revoked_by=user)


# --- submit and cancel (the sender) --------------------------------------------------------------


def referral_submit(
    *,
    actor: Actor,
    patient: Patient,
    direction: str,
    destination_institution: Institution,
    reason: str,
    diagnosis_name: str,
    urgency: str = Urgency.ROUTINE,
    destination_department: Department | None = None,
    diagnosis_code: str = "",
    clinical_summary: str = "",
    criteria_ids: Sequence[int] = (),
    required_capability: str = "",
    wanted_from: dt.date | None = None,
    wanted_to: dt.date | None = None,
    share_scope: str = ShareScope.RECORD,
    sender_phone: str = "",
    sender_department: Department | None = None,
    source_system: str = "",
    source_identifier: str = "",
) -> Referral:
    """Refer `patient` from the acting institution to `destination_institution` (in the same
    consortium, at the level the direction needs). Creates the receiver's expiring grant to the
    shared record, tells the receivers and texts the resident. At most one open referral per
    patient and direction. `source_system` / `source_identifier`: the sending system's own
    identifier of the order, unique per sending institution (see `referral_submit_once`)."""
    if not actor.can(Permission.PATIENT_VIEW) or actor.institution is None or actor.api_key is not None:
        raise PermissionDenied(_("您当前的角色无权发起转诊。"))
    sender = actor.institution
    if not Patient.objects.visible_to(actor).filter(pk=patient.pk).exists():
        raise ValidationError({"patient": _("您无权为该居民发起转诊。")})
    if direction not in Direction.values:
        raise ValidationError({"direction": _("转诊方向无效。")})
    if urgency not in Urgency.values:
        raise ValidationError({"urgency": _("紧急程度无效。")})
    if share_scope not in ShareScope.values:
        raise ValidationError({"share_scope": _("共享范围无效。")})
    if destination_institution.pk == sender.pk:
        raise ValidationError({"destination_institution": _("不能转诊到本机构。")})
    if not destination_institution.is_active:
        raise ValidationError({"destination_institution": _("接收机构已停用。")})
    consortia = shared_consortia(sender, destination_institution)
    if not consortia:
        raise ValidationError({"destination_institution": _("接收机构不在本医联体内，不能转诊。")})
    mismatch = direction_error(direction, sender, destination_institution)
    if mismatch:
        raise ValidationError({"direction": mismatch})
    if destination_department is not None and (
        destination_department.institution_id != destination_institution.pk or not destination_department.is_active
    ):
        raise ValidationError({"destination_department": _("接收科室不属于接收机构或已停用。")})
    if sender_department is not None and sender_department.institution_id != sender.pk:
        raise ValidationError({"sender_department": _("转出科室不属于本机构。")})
    reason = _text(reason, "reason", 1000, required=True, label=_("转诊原因"))
    diagnosis_name = _text(diagnosis_name, "diagnosis_name", 100, required=True, label=_("初步诊断"))
    clinical_summary = _text(clinical_summary, "clinical_summary", 4000, label=_("病情摘要"))
    sender_phone = _text(sender_phone, "sender_phone", 30, label=_("联系电话"))
    diagnosis_code = _text(diagnosis_code, "diagnosis_code", 16, label=_("诊断编码")).upper()
    if diagnosis_code and icd10_lookup(diagnosis_code) is None:
        raise ValidationError({"diagnosis_code": _("ICD-10 编码 %(code)s 无效。") % {"code": diagnosis_code}})
    if wanted_from and wanted_to and wanted_to < wanted_from:
        raise ValidationError({"wanted_to": _("期望就诊截止日期不能早于开始日期。")})
    source_system = _text(source_system, "source_system", 200, label=_("发送方标识系统"))
    source_identifier = _text(source_identifier, "source_identifier", 64, label=_("发送方转诊单标识"))
    if source_system and not source_identifier:
        raise ValidationError({"source_identifier": _("请填写%(label)s。") % {"label": _("发送方转诊单标识")}})
    consortium = consortia[0]
    offered = {c.pk: c for c in criteria_for(consortium=consortium)}
    if len(set(criteria_ids)) > 50 or any(pk not in offered for pk in criteria_ids):
        raise ValidationError({"criteria": _("所选转诊标准无效。")})
    criteria = [
        {"id": offered[pk].pk, "disease": offered[pk].disease, "text": offered[pk].text} for pk in dict.fromkeys(criteria_ids)
    ]
    if required_capability:
        capabilities = InstitutionCapability.objects.filter(institution=destination_institution, capability=required_capability)
        if not capabilities.exists():
            raise ValidationError(
                {"required_capability": _("接收机构不具备所需能力（%(capability)s）。") % {"capability": required_capability}}
            )
    now = timezone.now()
    accept_minutes, expire_minutes = deadlines_for(consortium, urgency)
    user = actor.user
    if user is None:  # pragma: no cover - an actor with PATIENT_VIEW and no API key has a user
        raise PermissionDenied(_("您当前的角色无权发起转诊。"))
    with transaction.atomic():
        referral = Referral(
            number=f"T{uuid.uuid4().hex[:20]}",
            patient=patient,
            consortium=consortium,
            direction=direction,
            urgency=urgency,
            sender_institution=sender,
            sender_department=sender_department or (actor.membership.department if actor.membership is not None else None),
            sender_user=user,
            sender_name=user.full_name or user.username,
            sender_phone=sender_phone,
            destination_institution=destination_institution,
            destination_department=destination_department,
            reason=reason,
            diagnosis_code=diagnosis_code,
            diagnosis_name=diagnosis_name,
            clinical_summary=clinical_summary,
            criteria=criteria,
            required_capability=required_capability,
            wanted_from=wanted_from,
            wanted_to=wanted_to,
            share_scope=share_scope,
            source_system=source_system,
            source_identifier=source_identifier,
            submitted_at=now,
            accept_by=now + dt.timedelta(minutes=accept_minutes),
            expires_at=now + dt.timedelta(minutes=expire_minutes),
        )
        try:
            with transaction.atomic():
                referral.save()
        except IntegrityError as exc:
            if source_identifier and _by_source(sender, source_system, source_identifier) is not None:
                raise ValidationError(_("发送方转诊单标识已被使用。"), code="source_identifier") from exc
            raise ValidationError(
                _("该居民已有一张未结束的%(direction)s单，请先处理或撤销。") % {"direction": referral.get_direction_display()},
                code="conflict",
            ) from exc
        referral.number = f"ZZ{timezone.localtime(now):%Y%m%d}{referral.pk:06d}"
        referral.grant = grant_issue(
            patient=patient,
            source=GrantSource.REFERRAL,
            grantee_institution=destination_institution,
            scope=GrantScope.RECORD if share_scope == ShareScope.RECORD else GrantScope.SUMMARY,
            source_reference=referral.number,
            reason=reason[:1000],
            granted_by=user,
            acting_institution=sender,
            expires_at=now + dt.timedelta(days=settings.REFERRAL_GRANT_DAYS),
        )
        referral.save(update_fields=["number", "grant", "updated_at"])
        _event(referral, ReferralEvent.Kind.SUBMITTED, actor, reason)
        _notify(
            _receivers(referral),
            referral,
            _("新的%(urgency)s%(direction)s：%(institution)s")
            % {
                "urgency": referral.get_urgency_display(),
                "direction": referral.get_direction_display(),
                "institution": sender.display_name,
            },
            body=diagnosis_name,
        )
        _sms(
            referral,
            _("【医联体转诊】您已由%(sender)s转诊至%(destination)s，转诊单号%(number)s，接收后将短信通知就诊时间和地点。")
            % {"sender": sender.display_name, "destination": destination_institution.display_name, "number": referral.number},
        )
    return referral


def _by_source(sender: Institution, system: str, identifier: str) -> Referral | None:
    return Referral.objects.filter(sender_institution=sender, source_system=system, source_identifier=identifier).first()


def _submission_differences(referral: Referral, actor: Actor, fields: dict[str, Any]) -> list[str]:
    """The fields in which a resent submission differs from the referral it names (labels)."""
    wanted: dict[str, Any] = {"sender_user": actor.user, **fields}
    differences = []
    for name, value in wanted.items():
        if name == "criteria_ids":
            same = sorted(set(value)) == sorted(c["id"] for c in referral.criteria)
        elif name == "sender_department" and value is None:
            continue  # the service fills in the acting membership's department
        elif isinstance(value, str):
            current = str(getattr(referral, name) or "")
            same = (value.strip().upper() if name == "diagnosis_code" else value.strip()) == current
        else:
            same = value == getattr(referral, name)
        if not same:
            field = Referral._meta.get_field(name.removesuffix("_ids"))
            differences.append(str(getattr(field, "verbose_name", name)))
    return differences


def referral_submit_once(
    *, actor: Actor, source_system: str, source_identifier: str, conditional: bool = False, **fields: Any
) -> tuple[Referral, bool]:
    """`referral_submit` for a member system that names its own identifier of the order
    (FHIR ServiceRequest.identifier): sending the same submission again returns the referral it
    made, unchanged (created False); the identifier on a different submission (another patient,
    destination, reason… or another practitioner) is a conflict. Identifiers are per sending
    institution; the database's unique constraint settles two sends that race. `conditional`
    (FHIR If-None-Exist) returns the referral the identifier names whatever the content, as a
    conditional create does."""
    if actor.institution is None or not source_identifier.strip():
        raise ValidationError({"source_identifier": _("请填写%(label)s。") % {"label": _("发送方转诊单标识")}})
    source_system, source_identifier = source_system.strip(), source_identifier.strip()
    existing = _by_source(actor.institution, source_system, source_identifier)
    if existing is None:
        try:
            referral = referral_submit(actor=actor, source_system=source_system, source_identifier=source_identifier, **fields)
        except ValidationError as exc:
            if getattr(exc, "code", None) != "source_identifier":
                raise
            existing = _by_source(actor.institution, source_system, source_identifier)
            if existing is None:  # pragma: no cover - the constraint named a row that is gone
                raise
        else:
            return referral, True
    differences = [] if conditional else _submission_differences(existing, actor, fields)
    if differences:
        raise ValidationError(
            _("发送方转诊单标识 %(identifier)s 已用于转诊单 %(number)s，本次内容不同（%(fields)s）；新的转诊请使用新的标识。")
            % {
                "identifier": sender_identifier(source_system, source_identifier),
                "number": existing.number,
                "fields": "、".join(differences),
            },
            code="conflict",
        )
    return existing, False


def referral_cancel(*, actor: Actor, referral: Referral, reason: str) -> Referral:
    """The sender withdraws an open referral before the patient arrives; its booking or bed is given
    back and the receiver's grant ends."""
    _require_sender(actor, referral)
    reason = _text(reason, "reason", 500, required=True, label=_("撤销原因"))
    with transaction.atomic():
        locked = _lock(referral)
        _require_state(locked, S.SUBMITTED, S.ACCEPTED, S.SCHEDULED)
        _give_back_booking(locked, reason)
        _close(locked, S.CANCELLED, reason)
        _end_grant(locked, actor.user)
        _event(locked, ReferralEvent.Kind.CANCELLED, actor, reason)
        _notify(
            _receivers(locked),
            locked,
            _("转诊单 %(number)s 已被转出机构撤销") % {"number": locked.number},
            body=reason,
        )
    return locked


def _close(referral: Referral, status: str, reason: str) -> None:
    now = timezone.now()
    updated = Referral.objects.filter(pk=referral.pk, status__in=OPEN_STATUSES).update(
        status=status, ended_at=now, end_reason=reason[:500], updated_at=now
    )
    if not updated:
        raise ValidationError(_("转诊单已结束。"), code="state")
    referral.status, referral.ended_at, referral.end_reason = status, now, reason[:500]


def _give_back_booking(referral: Referral, reason: str) -> None:
    """Release the referral's future booking and active bed reservation."""
    if referral.booking_id is not None:
        scheduling.booking_release_for(booking=Booking.objects.get(pk=referral.booking_id), reason=reason[:200])
    if referral.bed_reservation_id is not None:
        scheduling.reservation_release_for(reservation=BedReservation.objects.get(pk=referral.bed_reservation_id))


# --- the receiver ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class FollowUpSpec:
    """One follow-up task to create: who, when, what to check; and the sending system's own
    identifier of it, when a member HIS names one (see `follow_up_add_once`)."""

    responsible: User
    due_date: dt.date
    what_to_check: str
    source_system: str = ""
    source_identifier: str = ""


def _book(
    actor: Actor, referral: Referral, *, slot: Slot | None, bed: Bed | None, bed_hours: int, note: str
) -> tuple[Booking | None, BedReservation | None]:
    """Book the slot (from the sender's reserved units first — 号源下沉 —, the green channel for an
    emergency, else the general pool) and/or reserve the bed, for the sending institution."""
    destination = referral.destination_institution_id
    booking = reservation = None
    if slot is not None:
        if slot.schedule.institution_id != destination:
            raise ValidationError({"slot": _("号源不属于接收机构。")})
        pools = ["reserved", "general"]
        if referral.urgency == Urgency.EMERGENCY:
            pools.insert(0, "green_channel")
        for_institution = _for_institution(actor, referral, slot.schedule.institution)
        last_error: ValidationError | None = None
        for pool in pools:
            try:
                booking = scheduling.slot_book(
                    actor=actor,
                    slot=slot,
                    patient=referral.patient,
                    pool=pool,  # type: ignore[arg-type]
                    for_institution=for_institution,
                    note=(_("转诊单 %(number)s") % {"number": referral.number} + " " + note)[:200],
                )
                break
            except ValidationError as exc:
                last_error = exc
                if getattr(exc, "code", None) not in ("pool", "conflict"):
                    raise
        if booking is None and last_error is not None:
            raise last_error
    if bed is not None:
        if bed.ward.institution_id != destination:
            raise ValidationError({"bed": _("床位不属于接收机构。")})
        reservation = scheduling.bed_reserve(
            actor=actor,
            bed=bed,
            patient=referral.patient,
            hours=bed_hours,
            for_institution=_for_institution(actor, referral, bed.ward.institution),
            note=(_("转诊单 %(number)s") % {"number": referral.number})[:200],
        )
    return booking, reservation


def _for_institution(actor: Actor, referral: Referral, host: Institution) -> Institution | None:
    """Book on the sender's behalf (its reserved units) when the actor may: a coordinator of the host."""
    from yilian.organizations.access import can_manage_institution

    if can_manage_institution(actor, host, Permission.SCHEDULE_MANAGE):
        return referral.sender_institution
    return None


def _appointment_of(booking: Booking | None, reservation: BedReservation | None, now: dt.datetime) -> dt.datetime | None:
    if booking is not None:
        return booking.slot.start
    if reservation is not None:
        return now
    return None


def referral_accept(
    *,
    actor: Actor,
    referral: Referral,
    note: str = "",
    slot: Slot | None = None,
    bed: Bed | None = None,
    bed_hours: int = 24,
    instructions: str = "",
    follow_ups: Sequence[FollowUpSpec] = (),
) -> Referral:
    """The receiver accepts (a down referral: the primary institution acknowledges it, with at least
    one follow-up task). Booking a slot or a bed here takes the referral straight to `scheduled`;
    a taken slot or closed bed refuses the whole step."""
    _require_receiver(actor, referral)
    note = _text(note, "note", 500, label=_("接收意见"))
    instructions = _text(instructions, "instructions", 500, label=_("就诊须知"))
    if referral.direction == Direction.DOWN and not follow_ups:
        raise ValidationError({"follow_ups": _("下转接收需同时安排至少一项随访任务（日期、随访内容、责任医生）。")})
    if len(follow_ups) > MAX_FOLLOW_UPS:
        raise ValidationError({"follow_ups": _("随访任务最多 %(max)d 项。") % {"max": MAX_FOLLOW_UPS}})
    with transaction.atomic():
        locked = _lock(referral)
        _require_state(locked, S.SUBMITTED)
        now = timezone.now()
        locked.accepted_at, locked.accepted_by, locked.receiver_note = now, actor.user, note
        locked.status = S.ACCEPTED
        _event(locked, ReferralEvent.Kind.ACCEPTED, actor, note)
        for spec in follow_ups:
            _follow_up_create(actor, locked, spec)
        booking, reservation = _book(actor, locked, slot=slot, bed=bed, bed_hours=bed_hours, note=note)
        _schedule(actor, locked, booking, reservation, instructions, now)
        if locked.status == S.ACCEPTED:
            locked.expires_at = now + dt.timedelta(days=settings.REFERRAL_ARRIVAL_GRACE_DAYS)
        locked.save()
        _notify(
            _senders(locked),
            locked,
            _("转诊单 %(number)s 已被%(institution)s接收")
            % {
                "number": locked.number,
                "institution": locked.destination_institution.display_name,
            },
            body=note,
        )
        if locked.status == S.ACCEPTED:
            _sms(
                locked,
                _("【医联体转诊】%(destination)s已接收您的转诊（单号%(number)s），就诊时间将另行通知。")
                % {"destination": locked.destination_institution.display_name, "number": locked.number},
            )
    return locked


def _schedule(
    actor: Actor,
    referral: Referral,
    booking: Booking | None,
    reservation: BedReservation | None,
    instructions: str,
    now: dt.datetime,
) -> None:
    """Attach a booking or bed to a locked referral and move it to `scheduled`, texting the resident."""
    if booking is None and reservation is None:
        return
    if booking is not None:
        referral.booking = booking
    if reservation is not None:
        referral.bed_reservation = reservation
    referral.status = S.SCHEDULED
    referral.scheduled_at = now
    referral.appointment_start = _appointment_of(booking, reservation, now)
    if instructions:
        referral.instructions = instructions
    start = referral.appointment_start or now
    referral.expires_at = max(start, now) + dt.timedelta(days=settings.REFERRAL_ARRIVAL_GRACE_DAYS)
    where = referral.destination_institution.display_name
    if booking is not None:
        where = f"{where} {booking.slot.schedule.name} {booking.slot.schedule.location}".strip()
    if reservation is not None:
        where = f"{where} {reservation.bed}"
    _event(referral, ReferralEvent.Kind.SCHEDULED, actor, where)
    when = timezone.localtime(start).strftime("%Y-%m-%d %H:%M")
    _sms(
        referral,
        _("【医联体转诊】请于%(when)s到%(where)s就诊（转诊单号%(number)s）。%(instructions)s")
        % {"when": when, "where": where, "number": referral.number, "instructions": referral.instructions},
    )


def referral_schedule(
    *,
    actor: Actor,
    referral: Referral,
    slot: Slot | None = None,
    bed: Bed | None = None,
    bed_hours: int = 24,
    instructions: str = "",
) -> Referral:
    """The receiver books (or re-books) the slot or bed of an accepted referral. A re-booking gives
    the old unit back only once the new one is held (a bed: in the same transaction, so a refused
    new bed leaves the old one reserved)."""
    _require_receiver(actor, referral)
    if slot is None and bed is None:
        raise ValidationError(_("请选择号源或床位。"))
    instructions = _text(instructions, "instructions", 500, label=_("就诊须知"))
    with transaction.atomic():
        locked = _lock(referral)
        _require_state(locked, S.ACCEPTED, S.SCHEDULED)
        old = Referral(booking_id=locked.booking_id if slot is not None else None)
        if bed is not None and locked.bed_reservation_id is not None:
            # A patient holds one active bed reservation at a time: the old bed goes first, and
            # should the new one be refused, the transaction gives it back.
            _give_back_booking(Referral(bed_reservation_id=locked.bed_reservation_id), _("改约"))
        booking, reservation = _book(actor, locked, slot=slot, bed=bed, bed_hours=bed_hours, note="")
        _give_back_booking(old, _("改约"))
        _schedule(actor, locked, booking, reservation, instructions, timezone.now())
        locked.save()
        _notify(
            _senders(locked),
            locked,
            _("转诊单 %(number)s 已预约：%(when)s")
            % {
                "number": locked.number,
                "when": timezone.localtime(locked.appointment_start or timezone.now()).strftime("%Y-%m-%d %H:%M"),
            },
        )
    return locked


def referral_reject(*, actor: Actor, referral: Referral, reason: str) -> Referral:
    """The receiver declines with a reason; the grant ends and the sender is told."""
    _require_receiver(actor, referral)
    reason = _text(reason, "reason", 500, required=True, label=_("拒绝原因"))
    with transaction.atomic():
        locked = _lock(referral)
        _require_state(locked, S.SUBMITTED)
        _close(locked, S.REJECTED, reason)
        _end_grant(locked, actor.user)
        _event(locked, ReferralEvent.Kind.REJECTED, actor, reason)
        _notify(_senders(locked), locked, _("转诊单 %(number)s 被拒绝") % {"number": locked.number}, body=reason)
    return locked


def _arrive(referral: Referral, at: dt.datetime, source: str, actor: Actor | None) -> bool:
    now = timezone.now()
    arriving = Q(status__in=[S.ACCEPTED, S.SCHEDULED]) | Q(status=S.SUBMITTED, urgency=Urgency.EMERGENCY)
    updated = Referral.objects.filter(arriving, pk=referral.pk).update(
        status=S.ARRIVED, arrived_at=at, arrival_source=source[:80], updated_at=now
    )
    if not updated:
        return False
    # A green-channel patient may be seen before anyone clicked "accept": the arrival accepts it.
    Referral.objects.filter(pk=referral.pk, accepted_at__isnull=True).update(accepted_at=now)
    if referral.booking_id is not None:
        Booking.objects.filter(pk=referral.booking_id, status=BookingStatus.BOOKED).update(
            status=BookingStatus.FULFILLED, updated_at=now
        )
    if referral.bed_reservation_id is not None:
        reservation = BedReservation.objects.get(pk=referral.bed_reservation_id)
        if reservation.status == ReservationStatus.ACTIVE:
            scheduling.reservation_admit_for(reservation=reservation)
    referral.status, referral.arrived_at, referral.arrival_source = S.ARRIVED, at, source[:80]
    _event(referral, ReferralEvent.Kind.ARRIVED, actor, source, at=now)
    _notify(
        _senders(referral),
        referral,
        _("转诊患者已到达%(institution)s") % {"institution": referral.destination_institution.display_name},
    )
    return True


def referral_confirm_arrival(*, actor: Actor, referral: Referral) -> Referral:
    """The receiver records that the patient came (when ingestion has not already shown it)."""
    _require_receiver(actor, referral)
    with transaction.atomic():
        locked = _lock(referral)
        _require_state(locked, S.ACCEPTED, S.SCHEDULED)
        _arrive(locked, timezone.now(), str(_("接收方确认")), actor)
    locked.refresh_from_db()
    return locked


def referrals_mark_arrived(*, patient_ids: Iterable[int] | None = None, institution_id: int | None = None) -> int:
    """Move accepted and scheduled referrals (and emergency ones not yet accepted: the green channel
    does not wait) to `arrived` when the shared record shows the patient seen or admitted at the
    destination since the referral was sent (an Encounter from HL7 ADT,
    FHIR or CSV). Called by ingestion for the patients a message touched, and by the tick for all."""
    first_visit = Encounter.objects.filter(
        institution_id=OuterRef("destination_institution_id"),
        identity__patient_id=OuterRef("patient_id"),
        started_at__gte=OuterRef("submitted_at"),
    ).order_by("started_at")
    candidates = Referral.objects.filter(
        Q(status__in=[S.ACCEPTED, S.SCHEDULED]) | Q(status=S.SUBMITTED, urgency=Urgency.EMERGENCY)
    )
    if institution_id is not None:
        candidates = candidates.filter(destination_institution_id=institution_id)
    if patient_ids is not None:
        ids = list(patient_ids)
        if not ids:
            return 0
        candidates = candidates.filter(patient_id__in=ids)
    candidates = candidates.annotate(
        visit_at=Subquery(first_visit.values("started_at")[:1]), visit_source=Subquery(first_visit.values("source_id")[:1])
    ).filter(visit_at__isnull=False)
    moved = 0
    for referral in candidates.select_related("destination_institution", "sender_user"):
        with transaction.atomic():
            source = str(_("就诊记录 %(source)s")) % {"source": referral.visit_source}  # type: ignore[attr-defined]
            moved += _arrive(referral, referral.visit_at, source, None)  # type: ignore[attr-defined]
    return moved


def referral_complete(*, actor: Actor, referral: Referral, result_summary: str) -> Referral:
    """The receiver closes the referral with the result or discharge summary, which goes back to
    the sender. A down referral needs its follow-up tasks first. The receiver's grant now ends
    after REFERRAL_GRANT_AFTER_COMPLETION_DAYS."""
    _require_receiver(actor, referral)
    result_summary = _text(result_summary, "result_summary", 4000, required=True, label=_("诊疗结果或出院小结"))
    with transaction.atomic():
        locked = _lock(referral)
        _require_state(locked, S.ARRIVED)
        if locked.direction == Direction.DOWN and not locked.follow_ups.exclude(status=FollowUpStatus.CANCELLED).exists():
            raise ValidationError(_("下转单需先安排随访任务才能完成。"), code="follow_up")
        now = timezone.now()
        locked.status, locked.completed_at, locked.completed_by, locked.ended_at = S.COMPLETED, now, actor.user, now
        locked.result_summary = result_summary
        locked.save()
        if locked.grant is not None:
            grant = locked.grant
            grant.expires_at = max(
                grant.starts_at + dt.timedelta(seconds=1),
                min(grant.expires_at, now + dt.timedelta(days=settings.REFERRAL_GRANT_AFTER_COMPLETION_DAYS)),
            )
            grant.save(update_fields=["expires_at", "updated_at"])
        _event(locked, ReferralEvent.Kind.COMPLETED, actor, result_summary[:500])
        _notify(
            _senders(locked),
            locked,
            _("转诊单 %(number)s 已完成，结果已回传") % {"number": locked.number},
            body=result_summary[:300],
        )
    return locked


# --- follow-up tasks ------------------------------------------------------------------------------


def _follow_up_create(actor: Actor, referral: Referral, spec: FollowUpSpec) -> FollowUpTask:
    what = _text(spec.what_to_check, "what_to_check", 300, required=True, label=_("随访内容"))
    source_system = _text(spec.source_system, "source_system", 200, label=_("发送方标识系统"))
    source_identifier = _text(spec.source_identifier, "source_identifier", 64, label=_("发送方随访任务标识"))
    if source_system and not source_identifier:
        raise ValidationError({"source_identifier": _("请填写%(label)s。") % {"label": _("发送方随访任务标识")}})
    if spec.due_date < timezone.localdate():
        raise ValidationError({"due_date": _("随访日期不能早于今天。")})
    institution = referral.destination_institution
    works_here = Membership.objects.current().filter(
        user=spec.responsible,
        institution_id__in=[institution.pk, *Institution.objects.filter(parent=institution).values_list("pk", flat=True)],
        role__in=[Role.CLINICIAN, Role.VILLAGE_DOCTOR, Role.NURSE],
    )
    if not works_here.exists():
        raise ValidationError({"responsible": _("责任医生须为接收机构（或其村卫生室）的医生。")})
    source_institution = actor.institution if source_identifier else None
    try:
        # The identifier's uniqueness is left to the database (one query fewer, and the only
        # answer that holds when two sends race).
        task = save_validated(
            FollowUpTask(
                referral=referral,
                patient=referral.patient,
                institution=institution,
                responsible=spec.responsible,
                due_date=spec.due_date,
                what_to_check=what,
                created_by=actor.user,
                source_institution=source_institution,
                source_system=source_system,
                source_identifier=source_identifier,
            ),
            exclude=["source_institution"],
        )
    except ValidationError as exc:
        if source_institution is None or _follow_up_by_source(source_institution, source_system, source_identifier) is None:
            raise
        raise ValidationError(
            _("发送方随访任务标识 %(identifier)s 已被使用。")
            % {"identifier": sender_identifier(source_system, source_identifier)},
            code="conflict",
        ) from exc
    _event(referral, ReferralEvent.Kind.FOLLOW_UP, actor, f"{spec.due_date:%Y-%m-%d} {what}")
    notification_send(
        recipients=[spec.responsible],
        kind=NotificationKind.FOLLOW_UP,
        title=_("新的随访任务：%(date)s %(what)s") % {"date": f"{spec.due_date:%Y-%m-%d}", "what": what[:60]},
        link=_link(referral),
    )
    return task


def follow_up_add(*, actor: Actor, referral: Referral, spec: FollowUpSpec) -> FollowUpTask:
    """The receiver adds a follow-up task to an accepted referral (any direction; required down)."""
    _require_receiver(actor, referral)
    with transaction.atomic():
        locked = _lock(referral)
        _require_state(locked, S.ACCEPTED, S.SCHEDULED, S.ARRIVED, S.COMPLETED)
        if locked.follow_ups.count() >= MAX_FOLLOW_UPS:
            raise ValidationError(_("随访任务最多 %(max)d 项。") % {"max": MAX_FOLLOW_UPS})
        return _follow_up_create(actor, locked, spec)


def _follow_up_by_source(institution: Institution, system: str, identifier: str) -> FollowUpTask | None:
    return (
        FollowUpTask.objects.select_related("referral")
        .filter(source_institution=institution, source_system=system, source_identifier=identifier)
        .first()
    )


def _follow_up_differences(task: FollowUpTask, actor: Actor, referral: Referral, spec: FollowUpSpec) -> list[str]:
    """The fields in which a resent follow-up task differs from the task its identifier names (labels)."""
    wanted: dict[str, Any] = {
        "referral": referral.pk,
        "responsible": spec.responsible.pk,
        "due_date": spec.due_date,
        "what_to_check": (spec.what_to_check or "").strip(),
        "created_by": actor.user.pk if actor.user is not None else None,
    }
    current: dict[str, Any] = {
        "referral": task.referral_id,
        "responsible": task.responsible_id,
        "due_date": task.due_date,
        "what_to_check": task.what_to_check,
        "created_by": task.created_by_id,
    }
    fields = [FollowUpTask._meta.get_field(name) for name in wanted if wanted[name] != current[name]]
    return [str(getattr(field, "verbose_name", field.name)) for field in fields]


def follow_up_add_once(
    *, actor: Actor, referral: Referral, spec: FollowUpSpec, conditional: bool = False
) -> tuple[FollowUpTask, bool]:
    """`follow_up_add` for a member system that names its own identifier of the task (FHIR
    Task.identifier, in `spec`): sending the same task again returns the task it made, unchanged
    (created False), whatever has happened to it or to the referral since; the identifier on a
    different task (another referral, doctor, date, content, or practitioner) is a conflict.
    Identifiers are per sending institution (the acting one); the database's unique constraint
    settles two sends that race. `conditional` (FHIR If-None-Exist) returns the task the identifier
    names whatever the content, as a conditional create does."""
    _require_receiver(actor, referral)
    institution = actor.institution
    system, identifier = (spec.source_system or "").strip(), (spec.source_identifier or "").strip()
    if institution is None or not identifier:
        raise ValidationError({"source_identifier": _("请填写%(label)s。") % {"label": _("发送方随访任务标识")}})
    existing = _follow_up_by_source(institution, system, identifier)
    if existing is None:
        try:
            return follow_up_add(actor=actor, referral=referral, spec=spec), True
        except ValidationError as exc:
            if getattr(exc, "code", None) != "conflict":
                raise
            existing = _follow_up_by_source(institution, system, identifier)
            if existing is None:
                raise
    differences = [] if conditional else _follow_up_differences(existing, actor, referral, spec)
    if differences:
        raise ValidationError(
            _(
                "发送方随访任务标识 %(identifier)s 已用于转诊单 %(number)s 的随访任务，本次内容不同（%(fields)s）；"
                "新的随访任务请使用新的标识。"
            )
            % {
                "identifier": sender_identifier(system, identifier),
                "number": existing.referral.number,
                "fields": "、".join(differences),
            },
            code="conflict",
        )
    return existing, False


def follow_up_done(*, actor: Actor, task: FollowUpTask, result: str) -> FollowUpTask:
    """The responsible doctor (or a clinician of the institution) records the follow-up's result."""
    result = _text(result, "result", 500, required=True, label=_("随访结果"))
    institution = actor.institution
    allowed = actor.user is not None and actor.user.pk == task.responsible_id
    if institution is not None and actor.can(Permission.PATIENT_VIEW) and actor.api_key is None:
        allowed = allowed or institution.pk == task.institution_id
    if not allowed:
        raise PermissionDenied(_("只有责任医生或负责机构可以登记随访结果。"))
    now = timezone.now()
    updated = FollowUpTask.objects.filter(pk=task.pk, status=FollowUpStatus.OPEN).update(
        status=FollowUpStatus.DONE, done_at=now, result=result, updated_at=now
    )
    if not updated:
        raise ValidationError(_("该随访任务已处理。"), code="state")
    task.refresh_from_db()
    return task


# --- time: escalation and expiry ------------------------------------------------------------------


def referrals_escalate(*, now: dt.datetime | None = None) -> int:
    """Tell the coordinators, once, of every referral still waiting past its acceptance deadline."""
    now = now or timezone.now()
    overdue = Referral.objects.filter(status=S.SUBMITTED, accept_by__lte=now, escalated_at__isnull=True)
    count = 0
    for referral in overdue.select_related("consortium", "sender_institution", "destination_institution")[:1000]:
        with transaction.atomic():
            if not Referral.objects.filter(pk=referral.pk, escalated_at__isnull=True).update(escalated_at=now, updated_at=now):
                continue
            minutes = int((now - referral.accept_by).total_seconds() // 60)
            note = _("超过接收时限 %(minutes)d 分钟") % {"minutes": minutes}
            _event(referral, ReferralEvent.Kind.ESCALATED, None, note, at=now)
            coordinators = _users(_coordinators_q(referral))
            _notify(
                coordinators,
                referral,
                _("超时未接收：%(urgency)s转诊单 %(number)s（%(sender)s → %(destination)s）")
                % {
                    "urgency": referral.get_urgency_display(),
                    "number": referral.number,
                    "sender": referral.sender_institution.display_name,
                    "destination": referral.destination_institution.display_name,
                },
                body=note,
            )
            count += 1
    return count


def referrals_expire(*, now: dt.datetime | None = None) -> int:
    """Expire open referrals past `expires_at` that the patient never reached: unanswered ones and
    accepted or scheduled ones whose patient did not come. The grant ends; a booking still in the
    future and a reserved bed are given back."""
    now = now or timezone.now()
    due = Referral.objects.filter(status__in=[S.SUBMITTED, S.ACCEPTED, S.SCHEDULED], expires_at__lte=now)
    count = 0
    for referral in due.select_related("grant", "sender_user", "destination_institution")[:1000]:
        with transaction.atomic():
            updated = Referral.objects.filter(pk=referral.pk, status=referral.status).update(
                status=S.EXPIRED, ended_at=now, end_reason=str(_("超时未处理，自动过期")), updated_at=now
            )
            if not updated:
                continue
            if referral.grant is not None:
                grant_revoke(grant=referral.grant, revoked_by=None)
            _give_back_booking(referral, str(_("转诊单过期")))
            _event(referral, ReferralEvent.Kind.EXPIRED, None, str(_("超时未处理，自动过期")), at=now)
            _notify(_senders(referral), referral, _("转诊单 %(number)s 已过期") % {"number": referral.number})
            count += 1
    return count


def referrals_tick(*, now: dt.datetime | None = None) -> dict[str, int]:
    """What the timer runs every minute: arrivals from the shared record, escalation, expiry."""
    return {
        "arrived": referrals_mark_arrived(),
        "escalated": referrals_escalate(now=now),
        "expired": referrals_expire(now=now),
    }


# --- the criteria catalogue and deadlines (the consortium manager) --------------------------------


def _require_manage_consortium(actor: Actor, consortium: Consortium | None) -> None:
    """A consortium manager changes the catalogue and deadlines of the consortia their institution
    leads; the county-wide seed (no consortium) is the system administrator's."""
    from yilian.organizations.access import can_manage_consortium

    allowed = actor.is_system_admin if consortium is None else can_manage_consortium(actor, consortium)
    if not allowed:
        raise PermissionDenied(_("只有牵头医院的医联体管理员可以修改转诊标准和时限。"))


def _criterion_values(
    *, disease: str, direction: str, urgency: str, text: str, required_capability: str, position: int
) -> dict[str, object]:
    if disease not in DiseaseArea.values:
        raise ValidationError({"disease": _("病种无效。")})
    if direction not in Direction.values:
        raise ValidationError({"direction": _("转诊方向无效。")})
    if urgency not in Urgency.values:
        raise ValidationError({"urgency": _("紧急程度无效。")})
    if required_capability and required_capability not in Capability.values:
        raise ValidationError({"required_capability": _("能力代码无效。")})
    if not 0 <= position <= 1000:
        raise ValidationError({"position": _("排序须在 0–1000 之间。")})
    return {
        "disease": disease,
        "direction": direction,
        "urgency": urgency,
        "text": _text(text, "text", 300, required=True, label=_("标准")),
        "required_capability": required_capability,
        "position": position,
    }


def criterion_create(
    *,
    actor: Actor,
    consortium: Consortium,
    disease: str,
    direction: str,
    text: str,
    urgency: str = Urgency.ROUTINE,
    required_capability: str = "",
    position: int = 0,
) -> ReferralCriterion:
    """Add a line to a consortium's referral-criteria catalogue (offered as a checklist when referring)."""
    _require_manage_consortium(actor, consortium)
    values = _criterion_values(
        disease=disease,
        direction=direction,
        urgency=urgency,
        text=text,
        required_capability=required_capability,
        position=position,
    )
    with transaction.atomic():
        return save_validated(ReferralCriterion(consortium=consortium, **values))


def criterion_update(
    *,
    actor: Actor,
    criterion: ReferralCriterion,
    disease: str | None = None,
    direction: str | None = None,
    text: str | None = None,
    urgency: str | None = None,
    required_capability: str | None = None,
    position: int | None = None,
    is_active: bool | None = None,
) -> ReferralCriterion:
    """Edit a catalogue line (fields left None stay); `is_active=False` withdraws it from the checklist
    without touching the referrals that already ticked it (they keep their own copy)."""
    _require_manage_consortium(actor, criterion.consortium)
    values = _criterion_values(
        disease=criterion.disease if disease is None else disease,
        direction=criterion.direction if direction is None else direction,
        urgency=criterion.urgency if urgency is None else urgency,
        text=criterion.text if text is None else text,
        required_capability=criterion.required_capability if required_capability is None else required_capability,
        position=criterion.position if position is None else position,
    )
    with transaction.atomic():
        for name, value in values.items():
            setattr(criterion, name, value)
        if is_active is not None:
            criterion.is_active = is_active
        return save_validated(criterion)


def deadline_set(
    *, actor: Actor, consortium: Consortium, urgency: str, accept_minutes: int, expire_minutes: int
) -> ReferralDeadline:
    """Set how long receivers in `consortium` have to accept a referral of one urgency, and when an
    unanswered one expires. Applies to referrals submitted from now on."""
    _require_manage_consortium(actor, consortium)
    if urgency not in Urgency.values:
        raise ValidationError({"urgency": _("紧急程度无效。")})
    if expire_minutes <= accept_minutes:
        raise ValidationError({"expire_minutes": _("过期时限须长于接收时限。")})
    with transaction.atomic():
        row = ReferralDeadline.objects.select_for_update().filter(consortium=consortium, urgency=urgency).first()
        row = row or ReferralDeadline(consortium=consortium, urgency=urgency)
        row.accept_minutes, row.expire_minutes = accept_minutes, expire_minutes
        return save_validated(row)


__all__ = [
    "CLOSED_STATUSES",
    "FollowUpSpec",
    "criterion_create",
    "criterion_update",
    "deadline_set",
    "deadlines_for",
    "follow_up_add",
    "follow_up_done",
    "referral_accept",
    "referral_cancel",
    "referral_complete",
    "referral_confirm_arrival",
    "referral_reject",
    "referral_schedule",
    "referral_submit",
    "referrals_escalate",
    "referrals_expire",
    "referrals_mark_arrived",
    "referrals_tick",
]
