"""Referral and booking at /fhir: ServiceRequest + Task (the referral and its workflow state),
Schedule, Slot and Appointment (号源与预约), Location and Appointment for beds (床位预留), so a
member's HIS can refer, book and reserve a bed.

Writes go through the same gatekeepers and services as the pages and /api/v1
(`referrals.services`, `scheduling.services.slot_book`). Who acts (ARCHITECTURE.md, "Member systems
acting for a practitioner"): an institution API key alone may not refer or book — the resource names
the practitioner who does (ServiceRequest.requester; Task.owner for the receiver's steps and
Task.requester for the sender's cancellation; the Practitioner participant of an Appointment), as
`Practitioner/<user id>` or an identifier with system `urn:yilian:practitioner-certificate` (执业证书
编码). That practitioner must hold a current clinical membership at the key's own institution; the
call then runs as that user through that membership, so every side, state and patient rule applies
unchanged and the history names the person. A key of another institution cannot name them.

Reads: a staff session reads what its actor may see; a key reads the referrals its institution (or
its village clinics) sent or received, the bookings made by or at it, and the schedules and slots of
its consortia. Every patient shown is written to the access log.

Ids: the ServiceRequest and the Task of a referral share the referral's UUID; an Appointment's id
is the booking's (or the bed reservation's) UUID, a Slot's, a Schedule's and a Location's their UUIDs.

Bed reservations: R4 has no resource of their own. They are Appointments — the resource R4 gives
for "the time and usage of … locations … reserved for a designated period of time" — whose
participants are the bed as a Location (physicalType `bd`, part of its ward's Location `wa`), the
patient, the bed's institution and the practitioner who reserved; `serviceCategory`
`urn:yilian:appointment-kind|bed-reservation` tells them from slot bookings (which have a `slot`
instead of a Location), `start` is when the bed was reserved and `end` its expiry; status booked
(active), fulfilled (admitted), cancelled (released), noshow (expired). Encounter.location with
status `reserved` was the alternative, but an Encounter here is a visit in the shared record. A
member HIS reserves (`POST Appointment` → `scheduling.services.bed_reserve`, the same bed scope,
patient gatekeeper and grant to the bed's institution as `/api/v1/scheduling/bed-reservations`),
releases or admits (`PUT Appointment/<id>` status cancelled → `bed_release`, fulfilled →
`bed_admit`; for a slot booking cancelled → `booking_cancel`, noshow → `booking_mark_no_show`),
reads and searches them
(`service-category=bed-reservation`, `location`, `actor`, `patient`, `status`); beds and wards
read and search as Location. A referral's bed is reserved by its receiver with an Appointment basedOn its
ServiceRequest (`referral_schedule`), or named in the accepting Task's input (`referral_accept`).

Resending: a ServiceRequest, a follow-up Task or a bed-reservation Appointment that carries the
sender's own `identifier` is created once per sending institution (same content again → 200 with
it, the identifier on other content → 409); `If-None-Exist: identifier=<system>|<value>` on that
identifier is the FHIR conditional create (a match returned as it is). See `_conditional`.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import F, Prefetch, Q, QuerySet
from django.http import Http404, QueryDict
from django.utils import timezone
from django.utils.translation import gettext as _

from yilian.accounts.actors import Actor
from yilian.accounts.models import Membership, Practitioner, User
from yilian.accounts.roles import Permission, Role
from yilian.interop.fhir.schema import validate
from yilian.organizations.models import Department, Institution
from yilian.patients.access import access_patient, patients_listed
from yilian.patients.models import Patient, SourceIdentity
from yilian.referrals import services as referrals
from yilian.referrals.access import (
    access_follow_up,
    access_referral,
    follow_up_scope_filter,
    holding_institution_ids,
    referrals_visible_to,
)
from yilian.referrals.models import Direction, FollowUpStatus, FollowUpTask, Referral, ReferralStatus, Urgency
from yilian.scheduling import services as scheduling
from yilian.scheduling.access import (
    access_booking,
    access_reservation,
    bookings_visible_to,
    reservations_visible_to,
    schedule_scope_filter,
)
from yilian.scheduling.models import (
    Bed,
    BedReservation,
    BedStatus,
    Booking,
    BookingStatus,
    ReservationStatus,
    Schedule,
    Slot,
    Ward,
)
from yilian.scheduling.selectors import slots_with_use

RESOURCES = ("ServiceRequest", "Task", "Schedule", "Slot", "Appointment", "Location")
WRITABLE = {"ServiceRequest": ("create",), "Task": ("create", "update"), "Appointment": ("create", "update")}
# conditionalCreate in the CapabilityStatement (see `_conditional`); for Appointment, bed reservations.
CONDITIONAL = ("ServiceRequest", "Task", "Appointment")
CERTIFICATE_SYSTEM = "urn:yilian:practitioner-certificate"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
DIRECTION_SYSTEM = "urn:yilian:referral-direction"
STATUS_SYSTEM = "urn:yilian:referral-status"
REFERRAL_SYSTEM = "urn:yilian:referral"
TASK_KIND_SYSTEM = "urn:yilian:task-kind"
FOLLOW_UP_STATUS_SYSTEM = "urn:yilian:follow-up-status"
SENDER_EXTENSION = "urn:yilian:fhir:referral-requesting-organization"
OUR_SYSTEMS = "urn:yilian:"  # identifier systems of ours; any other is the sender's own
MAX_COUNT = 100
MAX_PAGE = 1000
# Who may act for a member system: the clinical roles (they hold PATIENT_VIEW).
ACTING_ROLES = (Role.CLINICIAN, Role.VILLAGE_DOCTOR, Role.NURSE, Role.REFERRAL_COORDINATOR)

# CapabilityStatement.rest.resource.documentation (views.metadata).
CONDITIONAL_CREATE = (
    "条件创建：If-None-Exist 只支持 identifier=<system>|<value>，且须是资源中发送方自己的标识；已有该标识的资源则原样返回"
    "（200 + Location，不比较内容，不作任何改动），没有则新建（201）。其他查询条件答 400（不会被忽略）。"
)
DOCUMENTATION = {
    "ServiceRequest": (
        "转诊单。create：ServiceRequest.requester 为本机构在职临床人员。identifier 中发送方自己的标识"
        "（system|value，system 不以 urn:yilian: 开头）在本机构内唯一：同一内容重发返回已建的转诊单"
        "（200 + Location，不作任何改动），同一标识用于不同内容的转诊答 409。" + CONDITIONAL_CREATE
    ),
    "Task": (
        "转诊单的流程状态（id 同 ServiceRequest），以及随访任务（code urn:yilian:task-kind|follow-up，"
        "partOf 为转诊单的 Task，basedOn 其 ServiceRequest，owner 为责任医生，restriction.period.end 为随访日期，"
        "description 为随访内容，完成后 output 为随访结果）。update 转诊 Task：status accepted / rejected / in-progress / "
        "completed / cancelled，执行人为 Task.owner（撤销为 Task.requester）。接收下转单（基层确认）须同时安排至少一项随访任务："
        "在 Task.contained 中放随访任务（Task），并以 input（type follow-up，valueReference #<内含 id>）引用，"
        "与接收在同一事务内完成，任何一项不合格则整体不变。已接收的转诊可再 create 随访任务（POST Task，partOf 转诊 Task，"
        "执行人为 Task.requester）；随访任务 update 为 completed 登记结果（执行人为 Task.owner）。读取转诊 Task 时，"
        "其随访任务列于 output（type follow-up，valueReference Task/<id>）；按 part-of 或 code=follow-up 查询随访任务"
        "（可加 identifier）。新建随访任务时 identifier 中发送方自己的标识在本机构内唯一（内含于接收 Task 的随访任务同样）："
        "同一内容重发返回已建的随访任务（200 + Location，不作任何改动），同一标识用于不同内容（转诊单、责任医生、日期、内容、"
        "执行人）答 409。" + CONDITIONAL_CREATE
    ),
    "Appointment": (
        "号源预约（slot 为 Slot/<id>，create 或 $book）与床位预留。床位预留：serviceCategory 为 "
        "urn:yilian:appointment-kind|bed-reservation，participant 中有床位 Location/<id>（physicalType bd）、患者、"
        "床位所在机构（Organization）与预留的执业人员；start 为预留时间，end 为到期时间（到期未入住自动释放）；"
        "status booked（预留中）、fulfilled（已入住）、cancelled（已释放）、noshow（已过期）；extension "
        "urn:yilian:fhir:reserving-organization 为预留机构。create：Practitioner 参与者为本机构在职临床人员，"
        "床位须在本医联体内且空闲（停用 422，已占用或预留 409），end 可省（24 小时），最多 72 小时；不可同时指明 slot，"
        "basedOn 为 ServiceRequest/<转诊单> 时由接收方为已接收的转诊单预留床位（转诊单转为已预约，患者为转诊单的患者，"
        "不带发送方标识；该转诊单已预留同一床位时重发返回原预留）；接收转诊的 Task 也可在 input 中指明床位 Location/<标识>。"
        "identifier 中发送方自己的标识在本机构内唯一："
        "同一内容重发返回已建的预留（200 + Location），同一标识用于不同内容答 409。" + CONDITIONAL_CREATE + "update：PUT "
        "status cancelled 释放床位（执行人为 Practitioner 参与者，预留机构或床位所在机构），fulfilled 办理入住（床位所在机构）；"
        "号源预约 PUT status cancelled "
        "取消（预约机构或接诊机构，原因写在 cancelationReason.text，号源退回原号池），noshow 标记爽约（接诊机构，号源开始后）；"
        "已是该状态的再发不作改动。查询：service-category=bed-reservation、location（床位）或 actor=Location/<id> 查床位预留，"
        "actor=Organization/<id> 为床位所在机构（接收机构）；否则查号源预约。预留床位使床位所在机构获得该患者的预约授权"
        "（到期或释放时收回），与页面和 /api/v1 相同。"
    ),
    "Location": (
        "床位（physicalType bd，partOf 为病区）与病区（physicalType wa），只读。床位 operationalStatus："
        "v2-0116 U 空闲、O 占用、C 停用，urn:yilian:bed-status|reserved 预留。查询默认为床位，physical-type=wa 查病区；"
        "范围为本机构所在医联体的成员单位。"
    ),
}

SEARCH_PARAMETERS: dict[str, dict[str, str]] = {
    "ServiceRequest": {
        "_id": "token",
        "identifier": "token",
        "patient": "reference",
        "subject": "reference",
        "status": "token",
        "priority": "token",
        "requester": "reference",
        "performer": "reference",
    },
    "Task": {
        "_id": "token",
        "identifier": "token",
        "patient": "reference",
        "status": "token",
        "owner": "reference",
        "requester": "reference",
        "focus": "reference",
        "part-of": "reference",
        "code": "token",
    },
    "Schedule": {"_id": "token", "actor": "reference", "active": "token"},
    "Slot": {"_id": "token", "schedule": "reference", "start": "date", "status": "token"},
    "Appointment": {
        "_id": "token",
        "identifier": "token",
        "patient": "reference",
        "status": "token",
        "date": "date",
        "based-on": "reference",
        "actor": "reference",
        "location": "reference",
        "service-category": "token",
    },
    "Location": {
        "_id": "token",
        "organization": "reference",
        "partof": "reference",
        "physical-type": "token",
        "operational-status": "token",
    },
}


class WorkflowError(Exception):
    """An answer other than success: HTTP status, OperationOutcome issue code, message, where."""

    def __init__(self, status: int, code: str, message: str, where: str = "") -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.where = status, code, message, where


# --- R4 JSON out -------------------------------------------------------------------------------------


def _when(value: dt.datetime | None) -> str | None:
    return timezone.localtime(value).isoformat(timespec="seconds") if value is not None else None


def _drop_empty(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if v not in (None, "", [], {})}


def _organization(institution: Institution) -> dict[str, Any]:
    return {"reference": f"Organization/{institution.uuid}", "type": "Organization", "display": institution.name}


def _patient_ref(patient: Patient) -> dict[str, Any]:
    return {"reference": f"Patient/{patient.uuid}", "display": patient.name}


def _practitioner_ref(user: User | None, name: str = "") -> dict[str, Any] | None:
    if user is None:
        return {"display": name} if name else None
    return {"reference": f"Practitioner/{user.uuid}", "type": "Practitioner", "display": name or user.full_name or user.username}


SERVICE_REQUEST_STATUS = {
    ReferralStatus.SUBMITTED: "active",
    ReferralStatus.ACCEPTED: "active",
    ReferralStatus.SCHEDULED: "active",
    ReferralStatus.ARRIVED: "active",
    ReferralStatus.COMPLETED: "completed",
    ReferralStatus.REJECTED: "revoked",
    ReferralStatus.CANCELLED: "revoked",
    ReferralStatus.EXPIRED: "revoked",
}
PRIORITY = {Urgency.ROUTINE: "routine", Urgency.URGENT: "urgent", Urgency.EMERGENCY: "stat"}
URGENCY_OF_PRIORITY = {"routine": Urgency.ROUTINE, "urgent": Urgency.URGENT, "asap": Urgency.URGENT, "stat": Urgency.EMERGENCY}
TASK_STATUS = {
    ReferralStatus.SUBMITTED: "requested",
    ReferralStatus.ACCEPTED: "accepted",
    ReferralStatus.SCHEDULED: "accepted",
    ReferralStatus.ARRIVED: "in-progress",
    ReferralStatus.COMPLETED: "completed",
    ReferralStatus.REJECTED: "rejected",
    ReferralStatus.CANCELLED: "cancelled",
    ReferralStatus.EXPIRED: "failed",
}


def service_request_json(referral: Referral) -> dict[str, Any]:
    """A referral as an R4 ServiceRequest (category: patient referral)."""
    performer = [_organization(referral.destination_institution)]
    if referral.destination_department is not None:
        performer.append({"display": referral.destination_department.name})
    reason: dict[str, Any] = {"text": referral.diagnosis_name}
    if referral.diagnosis_code:
        reason["coding"] = [{"system": ICD10, "code": referral.diagnosis_code, "display": referral.diagnosis_name}]
    body: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "id": str(referral.uuid),
        "meta": {"lastUpdated": _when(referral.updated_at)},
        "identifier": [
            {"system": REFERRAL_SYSTEM, "value": referral.number},
            *(
                [_drop_empty({"system": referral.source_system, "value": referral.source_identifier})]
                if referral.source_identifier
                else []
            ),
        ],
        "extension": [{"url": SENDER_EXTENSION, "valueReference": _organization(referral.sender_institution)}],
        "status": SERVICE_REQUEST_STATUS[referral.status],  # type: ignore[index]
        "intent": "order",
        "category": [
            {"coding": [{"system": "http://snomed.info/sct", "code": "3457005", "display": "Patient referral"}], "text": "转诊"}
        ],
        "priority": PRIORITY[referral.urgency],  # type: ignore[index]
        "code": {
            "coding": [{"system": DIRECTION_SYSTEM, "code": referral.direction, "display": referral.get_direction_display()}],
            "text": referral.get_direction_display(),
        },
        "subject": _patient_ref(referral.patient),
        "authoredOn": _when(referral.submitted_at),
        "requester": _practitioner_ref(referral.sender_user, referral.sender_name),
        "performer": performer,
        "reasonCode": [reason],
        "note": [{"text": referral.reason}],
    }
    if referral.wanted_from or referral.wanted_to:
        body["occurrencePeriod"] = _drop_empty(
            {
                "start": referral.wanted_from.isoformat() if referral.wanted_from else None,
                "end": referral.wanted_to.isoformat() if referral.wanted_to else None,
            }
        )
    if referral.clinical_summary:
        body["note"].append({"text": referral.clinical_summary})
    return _drop_empty(body)


def task_json(referral: Referral) -> dict[str, Any]:
    """The referral's workflow state as an R4 Task whose focus is the ServiceRequest."""
    owner = _practitioner_ref(referral.accepted_by) if referral.accepted_by is not None else None
    body: dict[str, Any] = {
        "resourceType": "Task",
        "id": str(referral.uuid),
        "meta": {"lastUpdated": _when(referral.updated_at)},
        "identifier": [{"system": REFERRAL_SYSTEM, "value": referral.number}],
        "status": TASK_STATUS[referral.status],  # type: ignore[index]
        "businessStatus": {
            "coding": [{"system": STATUS_SYSTEM, "code": referral.status, "display": referral.get_status_display()}],
            "text": referral.get_status_display(),
        },
        "intent": "order",
        "priority": PRIORITY[referral.urgency],  # type: ignore[index]
        "focus": {"reference": f"ServiceRequest/{referral.uuid}"},
        "for": _patient_ref(referral.patient),
        "authoredOn": _when(referral.submitted_at),
        "lastModified": _when(referral.updated_at),
        "requester": _practitioner_ref(referral.sender_user, referral.sender_name),
        "owner": owner or _organization(referral.destination_institution),
        "restriction": {"period": {"end": _when(referral.accept_by)}},
        "executionPeriod": _drop_empty(
            {"start": _when(referral.accepted_at), "end": _when(referral.completed_at or referral.ended_at)}
        ),
    }
    if referral.end_reason:
        body["statusReason"] = {"text": referral.end_reason}
    if referral.receiver_note or referral.instructions:
        body["note"] = [{"text": t} for t in (referral.receiver_note, referral.instructions) if t]
    if referral.booking is not None:
        body["output"] = [
            {"type": {"text": "appointment"}, "valueReference": {"reference": f"Appointment/{referral.booking.uuid}"}}
        ]
    if referral.result_summary:
        body.setdefault("output", []).append({"type": {"text": "result"}, "valueString": referral.result_summary})
    for task in getattr(referral, "follow_ups_listed", None) or []:
        body.setdefault("output", []).append(
            {
                "type": FOLLOW_UP_TYPE,
                "valueReference": {
                    "reference": f"Task/{task.uuid}",
                    "type": "Task",
                    "display": f"{task.due_date:%Y-%m-%d} {task.what_to_check}"[:200],
                },
            }
        )
    return _drop_empty(body)


FOLLOW_UP_TYPE = {"coding": [{"system": TASK_KIND_SYSTEM, "code": "follow-up", "display": "随访任务"}], "text": "随访任务"}
FOLLOW_UP_STATUS = {FollowUpStatus.OPEN: "requested", FollowUpStatus.DONE: "completed", FollowUpStatus.CANCELLED: "cancelled"}


def follow_up_json(task: FollowUpTask) -> dict[str, Any]:
    """A follow-up task (随访任务) as an R4 Task: a part of the referral's Task, based on its
    ServiceRequest; owner the responsible doctor, restriction.period.end the due date, description
    what to check, output the result once done."""
    body: dict[str, Any] = {
        "resourceType": "Task",
        "id": str(task.uuid),
        "meta": {"lastUpdated": _when(task.updated_at)},
        "identifier": (
            [_drop_empty({"system": task.source_system, "value": task.source_identifier})] if task.source_identifier else None
        ),
        "basedOn": [{"reference": f"ServiceRequest/{task.referral.uuid}"}],
        "partOf": [{"reference": f"Task/{task.referral.uuid}"}],
        "status": FOLLOW_UP_STATUS[task.status],  # type: ignore[index]
        "businessStatus": {
            "coding": [{"system": FOLLOW_UP_STATUS_SYSTEM, "code": task.status, "display": task.get_status_display()}],
            "text": task.get_status_display(),
        },
        "intent": "plan",
        "code": FOLLOW_UP_TYPE,
        "description": task.what_to_check,
        "for": _patient_ref(task.patient),
        "authoredOn": _when(task.created_at),
        "lastModified": _when(task.updated_at),
        "requester": _practitioner_ref(task.created_by),
        "owner": _practitioner_ref(task.responsible),
        "restriction": {"period": {"end": task.due_date.isoformat()}},
        "executionPeriod": {"end": _when(task.done_at)} if task.done_at else None,
        "output": [{"type": {"text": "result"}, "valueString": task.result}] if task.result else None,
    }
    return _drop_empty(body)


def schedule_json(schedule: Schedule) -> dict[str, Any]:
    actors: list[dict[str, Any]] = [_organization(schedule.institution)]
    if schedule.practitioner is not None:
        actors.append(_practitioner_ref(schedule.practitioner.user) or {})
    if schedule.department is not None:
        actors.append({"display": schedule.department.name})
    body = {
        "resourceType": "Schedule",
        "id": str(schedule.uuid),
        "active": schedule.is_active,
        "serviceType": [{"coding": [{"system": "urn:yilian:schedule-kind", "code": schedule.kind}], "text": schedule.name}],
        "actor": actors,
        "comment": " ".join(part for part in (schedule.name, schedule.location) if part),
    }
    if schedule.capability:
        body["serviceCategory"] = [{"coding": [{"system": "urn:yilian:capability", "code": schedule.capability}]}]
    return body


def slot_json(slot: Slot) -> dict[str, Any]:
    capacity = int(getattr(slot, "total_capacity", 0) or 0)
    booked = int(getattr(slot, "total_booked", 0) or 0)
    status = "busy-unavailable" if slot.is_closed else "free" if booked < capacity else "busy"
    return _drop_empty(
        {
            "resourceType": "Slot",
            "id": str(slot.uuid),
            "schedule": {"reference": f"Schedule/{slot.schedule.uuid}", "display": slot.schedule.name},
            "status": status,
            "start": _when(slot.start),
            "end": _when(slot.end),
            "comment": _("余号 %(free)d / %(capacity)d") % {"free": max(capacity - booked, 0), "capacity": capacity},
        }
    )


APPOINTMENT_STATUS = {
    BookingStatus.BOOKED: "booked",
    BookingStatus.CANCELLED: "cancelled",
    BookingStatus.NO_SHOW: "noshow",
    BookingStatus.FULFILLED: "fulfilled",
}


def appointment_json(booking: Booking) -> dict[str, Any]:
    participants = [
        {"actor": _patient_ref(booking.patient), "status": "accepted"},
        {"actor": _organization(booking.slot.schedule.institution), "status": "accepted"},
    ]
    if booking.booked_by is not None:
        participants.append({"actor": _practitioner_ref(booking.booked_by) or {}, "status": "accepted"})
    body: dict[str, Any] = {
        "resourceType": "Appointment",
        "id": str(booking.uuid),
        "status": APPOINTMENT_STATUS[booking.status],  # type: ignore[index]
        "description": booking.slot.schedule.name,
        "start": _when(booking.slot.start),
        "end": _when(booking.slot.end),
        "created": _when(booking.created_at),
        "slot": [{"reference": f"Slot/{booking.slot.uuid}"}],
        "participant": participants,
        "comment": booking.note,
        "cancelationReason": {"text": booking.cancel_reason} if booking.cancel_reason else None,
    }
    referral = next(iter(booking.referrals.all()), None)
    if referral is not None:
        body["basedOn"] = [{"reference": f"ServiceRequest/{referral.uuid}"}]
    return _drop_empty(body)


# Bed reservations (床位预留) are Appointments too: R4 has no resource of their own, and an Appointment
# is "the reservation of … locations … for a designated period of time". The bed is a participant
# Location (physicalType bd), the period runs from the reservation to its expiry. Encounter.location
# with status `reserved` was the other candidate, but Encounter here is the shared record's visit,
# written by member systems, and a reservation is not a visit.
APPOINTMENT_KIND_SYSTEM = "urn:yilian:appointment-kind"
BED_RESERVATION = "bed-reservation"
BED_RESERVATION_CATEGORY = {
    "coding": [{"system": APPOINTMENT_KIND_SYSTEM, "code": BED_RESERVATION, "display": "床位预留"}],
    "text": "床位预留",
}
RESERVING_EXTENSION = "urn:yilian:fhir:reserving-organization"
RESERVATION_STATUS = {
    ReservationStatus.ACTIVE: "booked",
    ReservationStatus.ADMITTED: "fulfilled",
    ReservationStatus.RELEASED: "cancelled",
    ReservationStatus.EXPIRED: "noshow",
}
PHYSICAL_TYPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/location-physical-type"
BED_STATUS_SYSTEM = "http://terminology.hl7.org/CodeSystem/v2-0116"
OUR_BED_STATUS_SYSTEM = "urn:yilian:bed-status"
# Bed status as Location.operationalStatus: v2 table 0116 where it has a code, ours for "reserved".
BED_OPERATIONAL_STATUS = {
    BedStatus.FREE: (BED_STATUS_SYSTEM, "U", "Unoccupied"),
    BedStatus.OCCUPIED: (BED_STATUS_SYSTEM, "O", "Occupied"),
    BedStatus.CLOSED: (BED_STATUS_SYSTEM, "C", "Closed"),
    BedStatus.RESERVED: (OUR_BED_STATUS_SYSTEM, "reserved", "Reserved"),
}


def _bed_ref(bed: Bed) -> dict[str, Any]:
    return {"reference": f"Location/{bed.uuid}", "type": "Location", "display": f"{bed.ward.name} {bed.code}床"}


def reservation_json(reservation: BedReservation) -> dict[str, Any]:
    """A bed reservation as an R4 Appointment: the bed a participant Location, start the time it was
    reserved, end its expiry."""
    bed = reservation.bed
    participants = [
        {"actor": _patient_ref(reservation.patient), "status": "accepted"},
        {"actor": _bed_ref(bed), "status": "accepted"},
        {"actor": _organization(bed.ward.institution), "status": "accepted"},
    ]
    if reservation.reserved_by is not None:
        participants.append({"actor": _practitioner_ref(reservation.reserved_by) or {}, "status": "accepted"})
    body: dict[str, Any] = {
        "resourceType": "Appointment",
        "id": str(reservation.uuid),
        "meta": {"lastUpdated": _when(reservation.updated_at)},
        "identifier": (
            [_drop_empty({"system": reservation.source_system, "value": reservation.source_identifier})]
            if reservation.source_identifier
            else None
        ),
        "extension": [{"url": RESERVING_EXTENSION, "valueReference": _organization(reservation.for_institution)}],
        "status": RESERVATION_STATUS[reservation.status],  # type: ignore[index]
        "serviceCategory": [BED_RESERVATION_CATEGORY],
        "description": f"{bed.ward.institution.name} {bed.ward.name} {bed.code}床",
        "start": _when(reservation.created_at),
        "end": _when(reservation.expires_at),
        "created": _when(reservation.created_at),
        "participant": participants,
        "comment": reservation.note,
    }
    referral = next(iter(reservation.referrals.all()), None)
    if referral is not None:
        body["basedOn"] = [{"reference": f"ServiceRequest/{referral.uuid}"}]
    return _drop_empty(body)


def bed_location_json(bed: Bed) -> dict[str, Any]:
    """A bed as an R4 Location (physicalType bd), part of its ward's Location."""
    system, code, display = BED_OPERATIONAL_STATUS[bed.status]  # type: ignore[index]
    return {
        "resourceType": "Location",
        "id": str(bed.uuid),
        "status": "active" if bed.ward.is_active else "inactive",
        "operationalStatus": {"system": system, "code": code, "display": display},
        "name": f"{bed.ward.name} {bed.code}床",
        "mode": "instance",
        "physicalType": {"coding": [{"system": PHYSICAL_TYPE_SYSTEM, "code": "bd", "display": "Bed"}]},
        "managingOrganization": _organization(bed.ward.institution),
        "partOf": {"reference": f"Location/{bed.ward.uuid}", "display": bed.ward.name},
    }


def ward_location_json(ward: Ward) -> dict[str, Any]:
    """A ward (病区) as an R4 Location (physicalType wa)."""
    body: dict[str, Any] = {
        "resourceType": "Location",
        "id": str(ward.uuid),
        "identifier": [{"system": f"urn:yilian:ward:{ward.institution.uuid}", "value": ward.code}],
        "status": "active" if ward.is_active else "inactive",
        "name": ward.name,
        "mode": "instance",
        "physicalType": {"coding": [{"system": PHYSICAL_TYPE_SYSTEM, "code": "wa", "display": "Ward"}]},
        "managingOrganization": _organization(ward.institution),
    }
    if ward.department is not None:
        body["description"] = ward.department.name
    return body


# --- scope ---------------------------------------------------------------------------------------------

REFERRAL_RELATED = (
    "patient",
    "sender_institution",
    "sender_user",
    "destination_institution",
    "destination_department",
    "accepted_by",
    "booking",
)
BOOKING_RELATED = ("slot__schedule__institution", "patient", "booked_by", "for_institution")
RESERVATION_RELATED = ("bed__ward__institution", "patient", "reserved_by", "for_institution")


def _referrals(actor: Actor) -> QuerySet[Referral]:
    queryset: QuerySet[Referral]
    if actor.api_key is not None:
        held = holding_institution_ids(actor.api_key.institution)
        queryset = Referral.objects.filter(Q(sender_institution__in=held) | Q(destination_institution__in=held))
    else:
        queryset = referrals_visible_to(actor)
    follow_ups = Prefetch("follow_ups", FollowUpTask.objects.order_by("due_date", "id"), to_attr="follow_ups_listed")
    return queryset.select_related(*REFERRAL_RELATED).prefetch_related(follow_ups)


def _follow_ups(actor: Actor) -> QuerySet[FollowUpTask]:
    """Follow-up tasks of the referrals the actor may read; also, for a key, those whose
    responsible doctor works at its institution (a village clinic's HIS sees its doctors' tasks),
    and for a session, those of its own follow-up list (`referrals.access.follow_up_scope_filter`)."""
    of_referrals = Q(referral__in=_referrals(actor).values("pk"))
    if actor.api_key is not None:
        staff = Membership.objects.current().filter(institution=actor.api_key.institution).values("user")
        scope = of_referrals | Q(responsible__in=staff)
    else:
        scope = of_referrals | follow_up_scope_filter(actor)
    return FollowUpTask.objects.filter(scope).select_related("referral", "patient", "responsible", "created_by")


def _bookings(actor: Actor) -> QuerySet[Booking]:
    """Bookings made by or at the actor's institution, and those of the referrals it may see (the
    sender sees the appointment the receiver booked for its patient)."""
    of_referrals = Q(pk__in=_referrals(actor).filter(booking__isnull=False).values("booking_id"))
    if actor.api_key is not None:
        institution = actor.api_key.institution
        queryset = Booking.objects.filter(
            Q(for_institution=institution) | Q(slot__schedule__institution=institution) | of_referrals
        )
    else:
        visible = bookings_visible_to(actor)
        queryset = Booking.objects.filter(Q(pk__in=visible.values("pk")) | of_referrals)
    return queryset.select_related(*BOOKING_RELATED).prefetch_related("referrals")


def _reservations(actor: Actor) -> QuerySet[BedReservation]:
    """Bed reservations made by or at the actor's institution — for a session, those
    `scheduling.access.reservations_visible_to` lets it see (the receiving side only for patients it
    may see) — and those of the referrals it may see, as for bookings."""
    of_referrals = Q(pk__in=_referrals(actor).filter(bed_reservation__isnull=False).values("bed_reservation_id"))
    if actor.api_key is not None:
        institution = actor.api_key.institution
        queryset = BedReservation.objects.filter(
            Q(for_institution=institution) | Q(bed__ward__institution=institution) | of_referrals
        )
    else:
        queryset = BedReservation.objects.filter(Q(pk__in=reservations_visible_to(actor).values("pk")) | of_referrals)
    return queryset.select_related(*RESERVATION_RELATED).prefetch_related("referrals")


def _beds(actor: Actor) -> QuerySet[Bed]:
    return Bed.objects.filter(schedule_scope_filter(actor, prefix="ward__")).select_related("ward__institution")


def _wards(actor: Actor) -> QuerySet[Ward]:
    return Ward.objects.filter(schedule_scope_filter(actor)).select_related("institution", "department")


def _schedules(actor: Actor) -> QuerySet[Schedule]:
    return Schedule.objects.filter(schedule_scope_filter(actor)).select_related("institution", "department", "practitioner__user")


def _slots(actor: Actor) -> QuerySet[Slot]:
    return slots_with_use(
        Slot.objects.filter(schedule_scope_filter(actor, prefix="schedule__")).select_related("schedule")
    ).order_by("start", "id")


def _is_uuid(value: str) -> bool:
    try:
        UUID(value)
    except ValueError:
        return False
    return True


# --- read and search -----------------------------------------------------------------------------------


def _log(actor: Actor, patients: list[Patient], path: str) -> None:
    patients_listed(actor, list({p.pk: p for p in patients}.values()), path=path)


def read(actor: Actor, name: str, key: str) -> dict[str, Any] | None:
    """One resource by id (None: missing or not visible). Patients shown are logged."""
    if not _is_uuid(key):
        return None
    path = f"/fhir/{name}/{key}"
    if name in ("ServiceRequest", "Task"):
        referral = _referrals(actor).filter(uuid=key).first()
        if referral is None and name == "Task":
            task = _follow_ups(actor).filter(uuid=key).first()
            if task is None:
                return None
            _log(actor, [task.patient], path)
            return follow_up_json(task)
        if referral is None:
            return None
        _log(actor, [referral.patient], path)
        return service_request_json(referral) if name == "ServiceRequest" else task_json(referral)
    if name == "Appointment":
        booking = _bookings(actor).filter(uuid=key).first()
        if booking is None:
            reservation = _reservations(actor).filter(uuid=key).first()
            if reservation is None:
                return None
            _log(actor, [reservation.patient], path)
            return reservation_json(reservation)
        _log(actor, [booking.patient], path)
        return appointment_json(booking)
    if name == "Location":
        bed = _beds(actor).filter(uuid=key).first()
        if bed is not None:
            return bed_location_json(bed)
        ward = _wards(actor).filter(uuid=key).first()
        return ward_location_json(ward) if ward is not None else None
    if name == "Schedule":
        schedule = _schedules(actor).filter(uuid=key).first()
        return schedule_json(schedule) if schedule is not None else None
    slot = _slots(actor).filter(uuid=key).first()
    return slot_json(slot) if slot is not None else None


def _ids(value: str, prefix: str = "") -> list[str]:
    """UUIDs from a reference search value (`Type/<uuid>` or `<uuid>`, comma-separated)."""
    out = []
    for part in value.split(","):
        part = part.removeprefix(prefix) if prefix else part.rsplit("/", 1)[-1]
        if _is_uuid(part):
            out.append(part)
    return out


def _patient_ids(actor: Actor, value: str) -> list[str]:
    """Patient UUIDs a `patient=` value names; a key may also use its own local patient ids."""
    keys = []
    for part in value.split(","):
        part = part.removeprefix("Patient/")
        if _is_uuid(part):
            keys.append(part)
        elif actor.api_key is not None:
            identity = SourceIdentity.objects.filter(institution=actor.api_key.institution, local_id=part).first()
            if identity is not None and identity.patient is not None:
                keys.append(str(identity.patient.uuid))
    return keys


def _reference_filter(value: str, *, organization: str, practitioner: str = "") -> Q:
    """`Organization/<uuid>` (or a bare UUID) filters on `organization`, `Practitioner/<uuid>` on `practitioner`."""
    term = Q(pk__in=[])
    for part in value.split(","):
        kind, _sep, key = part.rpartition("/")
        if not _is_uuid(key):
            continue
        if kind in ("", "Organization"):
            term |= Q(**{f"{organization}__uuid": key})
        elif kind == "Practitioner" and practitioner:
            term |= Q(**{f"{practitioner}__uuid": key})
    return term


SERVICE_REQUEST_STATUSES = {
    code: [s for s, c in SERVICE_REQUEST_STATUS.items() if c == code] for code in {"active", "completed", "revoked"}
}
TASK_STATUSES = {code: [s for s, c in TASK_STATUS.items() if c == code] for code in set(TASK_STATUS.values())}


def _date_filter(field: str, value: str) -> Q:
    from yilian.interop.fhir.read import _date_filter as date_filter

    return date_filter(field, value)


def _identifier_filter(value: str) -> Q:
    """`identifier=[system|]value`: our number (system urn:yilian:referral) or the sending system's
    own identifier of the order; without a system, either; `|value`, an identifier without a system."""
    term = Q(pk__in=[])
    for part in value.split(","):
        system, bar, key = part.rpartition("|")
        if not key:
            continue
        if not bar:
            term |= Q(number=key) | Q(source_identifier=key)
        elif system == REFERRAL_SYSTEM:
            term |= Q(number=key)
        else:
            term |= Q(source_system=system, source_identifier=key)
    return term


def _source_filter(value: str) -> Q:
    """`identifier=[system|]value` over the sender's own identifier (`source_system`, `source_identifier`)."""
    term = Q(pk__in=[])
    for part in value.split(","):
        system, bar, key = part.rpartition("|")
        if key:
            term |= Q(source_system=system, source_identifier=key) if bar else Q(source_identifier=key)
    return term


def _search_referrals(actor: Actor, name: str, query: QueryDict) -> QuerySet[Referral]:
    referrals_qs = _referrals(actor)
    if value := query.get("_id"):
        referrals_qs = referrals_qs.filter(uuid__in=_ids(value))
    if value := query.get("identifier"):
        referrals_qs = referrals_qs.filter(_identifier_filter(value))
    if value := query.get("patient") or query.get("subject"):
        referrals_qs = referrals_qs.filter(patient__uuid__in=_patient_ids(actor, value))
    if value := query.get("status"):
        table = SERVICE_REQUEST_STATUSES if name == "ServiceRequest" else TASK_STATUSES
        referrals_qs = referrals_qs.filter(status__in=[s for code in value.split(",") for s in table.get(code, [])])
    if value := query.get("priority"):
        urgencies = [URGENCY_OF_PRIORITY[c] for c in value.split(",") if c in URGENCY_OF_PRIORITY]
        referrals_qs = referrals_qs.filter(urgency__in=urgencies)
    if value := query.get("requester"):
        referrals_qs = referrals_qs.filter(
            _reference_filter(value, organization="sender_institution", practitioner="sender_user")
        )
    if value := query.get("performer") or query.get("owner"):
        referrals_qs = referrals_qs.filter(
            _reference_filter(value, organization="destination_institution", practitioner="accepted_by")
        )
    if value := query.get("focus"):
        referrals_qs = referrals_qs.filter(uuid__in=_ids(value, "ServiceRequest/"))
    if query.get("code"):
        referrals_qs = referrals_qs.none()  # a referral's Task has no code (follow-up tasks have)
    return referrals_qs.order_by("-submitted_at", "-id")


def _follow_up_search(query: QueryDict) -> bool:
    """A Task search over follow-up tasks: by `part-of` (the referral's Task) or `code=follow-up`.
    Without them a Task search is over the referrals' Tasks (which have neither)."""
    return bool(query.get("part-of")) or any(
        code.rpartition("|")[2] == "follow-up" for value in query.getlist("code") for code in value.split(",")
    )


def _search_follow_ups(actor: Actor, query: QueryDict) -> QuerySet[FollowUpTask]:
    tasks = _follow_ups(actor)
    if value := query.get("_id"):
        tasks = tasks.filter(uuid__in=_ids(value))
    if value := query.get("identifier"):
        tasks = tasks.filter(_source_filter(value))
    if value := query.get("part-of"):
        tasks = tasks.filter(referral__uuid__in=_ids(value, "Task/"))
    if value := query.get("focus"):
        tasks = tasks.filter(referral__uuid__in=_ids(value, "ServiceRequest/"))
    if value := query.get("patient"):
        tasks = tasks.filter(patient__uuid__in=_patient_ids(actor, value))
    if value := query.get("status"):
        tasks = tasks.filter(status__in=[s for s, code in FOLLOW_UP_STATUS.items() if code in value.split(",")])
    if value := query.get("owner"):
        tasks = tasks.filter(_reference_filter(value, organization="institution", practitioner="responsible"))
    if value := query.get("requester"):
        tasks = tasks.filter(
            _reference_filter(value, organization="referral__destination_institution", practitioner="created_by")
        )
    return tasks.order_by("due_date", "id")


def _reservation_search(query: QueryDict) -> bool:
    """An Appointment search over bed reservations: `service-category=bed-reservation`, a
    `location`, or an `actor` that is a Location. Without them it is over slot bookings."""
    categories = [code.rpartition("|")[2] for value in query.getlist("service-category") for code in value.split(",")]
    actors = [part for value in query.getlist("actor") for part in value.split(",")]
    return BED_RESERVATION in categories or bool(query.get("location")) or any(a.startswith("Location/") for a in actors)


def _appointment_filters(
    actor: Actor, queryset: QuerySet[Any], query: QueryDict, statuses: dict[str, str], when: str
) -> QuerySet[Any]:
    """The search parameters slot bookings and bed reservations share: _id, patient, status (mapped
    through `statuses`), date (on the field `when`) and based-on (the referral)."""
    if value := query.get("_id"):
        queryset = queryset.filter(uuid__in=_ids(value))
    if value := query.get("patient"):
        queryset = queryset.filter(patient__uuid__in=_patient_ids(actor, value))
    if value := query.get("status"):
        queryset = queryset.filter(status__in=[s for s, code in statuses.items() if code in value.split(",")])
    for value in query.getlist("date"):
        queryset = queryset.filter(_date_filter(when, value))
    if value := query.get("based-on"):
        queryset = queryset.filter(referrals__uuid__in=_ids(value, "ServiceRequest/"))
    return queryset


def _search_reservations(actor: Actor, query: QueryDict) -> QuerySet[BedReservation]:
    reservations = _appointment_filters(actor, _reservations(actor), query, RESERVATION_STATUS, "created_at")  # type: ignore[arg-type]
    if value := query.get("identifier"):
        reservations = reservations.filter(_source_filter(value))
    if value := query.get("actor"):
        # The receiving institution (the bed's), the practitioner who reserved, or the bed.
        term = _reference_filter(value, organization="bed__ward__institution", practitioner="reserved_by")
        term |= Q(bed__uuid__in=_ids(",".join(p for p in value.split(",") if p.startswith("Location/")), "Location/"))
        reservations = reservations.filter(term)
    if value := query.get("location"):
        reservations = reservations.filter(bed__uuid__in=_ids(value, "Location/"))
    return reservations.order_by("-created_at", "-id")


def _search_locations(actor: Actor, query: QueryDict) -> tuple[QuerySet[Any], Callable[[Any], dict[str, Any]]]:
    """Beds (the default) or, with `physical-type=wa`, wards of the consortia the actor sees."""
    kinds = {code.rpartition("|")[2] for value in query.getlist("physical-type") for code in value.split(",")}
    if kinds and not kinds & {"bd", "wa"}:
        return Bed.objects.none(), bed_location_json
    organization = query.get("organization")
    if kinds == {"wa"}:
        wards = _wards(actor)
        if value := query.get("_id"):
            wards = wards.filter(uuid__in=_ids(value))
        if organization:
            wards = wards.filter(institution__uuid__in=_ids(organization, "Organization/"))
        if query.get("partof") or query.get("operational-status"):
            wards = wards.none()  # a ward is part of nothing here and has no bed status
        return wards.order_by("institution__name", "code"), ward_location_json
    beds = _beds(actor)
    if value := query.get("_id"):
        beds = beds.filter(uuid__in=_ids(value))
    if organization:
        beds = beds.filter(ward__institution__uuid__in=_ids(organization, "Organization/"))
    if value := query.get("partof"):
        beds = beds.filter(ward__uuid__in=_ids(value, "Location/"))
    if value := query.get("operational-status"):
        wanted = {code.rpartition("|")[2] for code in value.split(",")}
        beds = beds.filter(status__in=[s for s, (_system, code, _d) in BED_OPERATIONAL_STATUS.items() if code in wanted])
    return beds.order_by("ward__institution__name", "ward__code", "code"), bed_location_json


def _int(query: QueryDict, name: str, default: int, high: int) -> int:
    raw = query.get(name, str(default))
    if not raw.isdigit() or not 1 <= int(raw) <= high:
        raise ValueError(f"{name} 应为 1–{high} 的整数。")
    return int(raw)


def search(actor: Actor, name: str, query: QueryDict, *, base: str) -> dict[str, Any]:
    """A searchset Bundle; ValueError for a search that is not understood."""
    count = _int(query, "_count", 20, MAX_COUNT)
    page = _int(query, "_page", 1, MAX_PAGE)
    for param, values in query.lists():
        if any(len(v) > 200 for v in values):
            raise ValueError(f"{param} 过长。")
    serialize: Callable[[Any], dict[str, Any]]
    patients: Callable[[Any], Patient | None] = lambda row: None  # noqa: E731
    queryset: QuerySet[Any]
    if name == "Task" and _follow_up_search(query):
        queryset = _search_follow_ups(actor, query)
        serialize, patients = follow_up_json, lambda row: row.patient
    elif name in ("ServiceRequest", "Task"):
        queryset = _search_referrals(actor, name, query)
        serialize = service_request_json if name == "ServiceRequest" else task_json
        patients = lambda row: row.patient  # noqa: E731
    elif name == "Appointment" and _reservation_search(query):
        queryset = _search_reservations(actor, query)
        serialize, patients = reservation_json, lambda row: row.patient
    elif name == "Appointment":
        queryset = _appointment_filters(actor, _bookings(actor), query, APPOINTMENT_STATUS, "slot__start")  # type: ignore[arg-type]
        if query.get("identifier") or query.get("service-category"):
            queryset = queryset.none()  # a booking carries neither (bed reservations do)
        if value := query.get("actor"):
            queryset = queryset.filter(
                _reference_filter(value, organization="slot__schedule__institution", practitioner="booked_by")
            )
        queryset = queryset.order_by("-created_at", "-id")
        serialize, patients = appointment_json, lambda row: row.patient
    elif name == "Location":
        queryset, serialize = _search_locations(actor, query)
    elif name == "Schedule":
        queryset = _schedules(actor)
        if value := query.get("_id"):
            queryset = queryset.filter(uuid__in=_ids(value))
        if value := query.get("actor"):
            queryset = queryset.filter(_reference_filter(value, organization="institution", practitioner="practitioner__user"))
        if value := query.get("active"):
            queryset = queryset.filter(is_active=value == "true")
        queryset = queryset.order_by("institution__name", "name")
        serialize = schedule_json
    else:
        queryset = _slots(actor)
        if value := query.get("_id"):
            queryset = queryset.filter(uuid__in=_ids(value))
        if value := query.get("schedule"):
            queryset = queryset.filter(schedule__uuid__in=_ids(value, "Schedule/"))
        starts = query.getlist("start")
        if not (query.get("_id") or query.get("schedule")) and not starts:
            raise ValueError(_("请按 schedule 或 start（日期）查询号源。"))
        for value in starts:
            queryset = queryset.filter(_date_filter("start", value))
        if value := query.get("status"):
            wanted = set(value.split(","))
            open_slot = Q(is_closed=False)
            term = Q(pk__in=[])
            if "free" in wanted:
                term |= open_slot & Q(total_booked__lt=F("total_capacity"))
            if "busy" in wanted:
                term |= open_slot & Q(total_booked__gte=F("total_capacity"))
            if "busy-unavailable" in wanted:
                term |= Q(is_closed=True)
            queryset = queryset.filter(term)
        serialize = slot_json
    total = queryset.count()
    start = (page - 1) * count
    rows = list(queryset[start : start + count]) if start < total else []
    return _bundle(name, rows, total, count, page, query, base, serialize, patients, actor)


def _bundle(
    name: str,
    rows: list[Any],
    total: int,
    count: int,
    page: int,
    query: QueryDict,
    base: str,
    serialize: Callable[[Any], dict[str, Any]],
    patients: Callable[[Any], Patient | None],
    actor: Actor,
) -> dict[str, Any]:
    shown = [p for p in (patients(row) for row in rows) if p is not None]
    if shown:
        _log(actor, shown, f"/fhir/{name}")
    resources = [serialize(row) for row in rows]
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": total,
        "entry": [{"fullUrl": f"{base}{name}/{r['id']}", "resource": r, "search": {"mode": "match"}} for r in resources],
    }
    if page * count < total:
        following = query.copy()
        following["_page"] = str(page + 1)
        bundle["link"] = [{"relation": "next", "url": f"{base}{name}?{following.urlencode()}"}]
    return bundle


# --- writes: who acts ----------------------------------------------------------------------------------


def acting_practitioner(key_actor: Actor, reference: Any, where: str) -> Actor:
    """The Actor of the practitioner a member system names: a current clinical member of the key's
    own institution, acting through that membership. Anyone else is refused (403)."""
    if key_actor.api_key is None:
        raise WorkflowError(401, "login", _("写入须使用机构接口密钥。"))
    user = _practitioner_user(reference, where)
    membership = None
    if user is not None and user.is_active:
        membership = (
            Membership.objects.current()
            .filter(user=user, institution=key_actor.api_key.institution, role__in=ACTING_ROLES)
            .select_related("institution", "department")
            .order_by("started_on", "id")
            .first()
        )
    if membership is None:
        raise WorkflowError(403, "forbidden", _("所指执业人员不是本机构（接口密钥所属机构）在职的临床人员。"), where)
    return Actor(user=user, membership=membership, ip_address=key_actor.ip_address)


def _practitioner_user(reference: Any, where: str) -> User | None:
    """The user a Practitioner reference names (`Practitioner/<user uuid>` or the 执业证书编码),
    None when no one has it; a reference of another form is refused (422)."""
    if not isinstance(reference, dict):
        raise WorkflowError(422, "required", _("须指明执行此操作的执业人员。"), where)
    ref = reference.get("reference")
    identifier = reference.get("identifier")
    if isinstance(ref, str) and ref.startswith("Practitioner/") and _is_uuid(ref.removeprefix("Practitioner/")):
        return User.objects.filter(uuid=ref.removeprefix("Practitioner/")).first()
    if isinstance(identifier, dict) and identifier.get("system") == CERTIFICATE_SYSTEM:
        value = str(identifier.get("value") or "")[:30]
        practitioner = Practitioner.objects.select_related("user").filter(certificate_number=value).first() if value else None
        return practitioner.user if practitioner is not None else None
    raise WorkflowError(
        422,
        "required",
        _("须指明执业人员：Practitioner/<用户标识>，或系统为 %(system)s 的执业证书编码。") % {"system": CERTIFICATE_SYSTEM},
        where,
    )


def _check(resource: Any, name: str) -> dict[str, Any]:
    problems = validate(resource)
    if problems:
        where, message = problems[0]
        raise WorkflowError(400, "structure", message, where)
    if not isinstance(resource, dict) or resource.get("resourceType") != name:
        raise WorkflowError(400, "invalid", _("请求体的 resourceType 应为 %(name)s。") % {"name": name}, "resourceType")
    return resource


def _patient(actor: Actor, key_actor: Actor, reference: Any, where: str) -> Patient:
    """The patient a reference names (our UUID, or the key institution's own patient id), through
    the patient gatekeeper of the acting practitioner."""
    value = ""
    if isinstance(reference, dict):
        if isinstance(reference.get("reference"), str):
            value = reference["reference"].removeprefix("Patient/")
        elif isinstance(reference.get("identifier"), dict):
            value = str(reference["identifier"].get("value") or "")
    value = value[:64]
    if value and not _is_uuid(value) and key_actor.api_key is not None:
        identity = SourceIdentity.objects.filter(institution=key_actor.api_key.institution, local_id=value).first()
        value = str(identity.patient.uuid) if identity is not None and identity.patient is not None else ""
    if not value:
        raise WorkflowError(422, "required", _("须指明患者（Patient/<标识> 或本机构患者号）。"), where)
    try:
        return access_patient(actor, value, path="/fhir/")
    except Http404:
        raise WorkflowError(422, "not-found", _("未找到该患者，或您无权访问。"), where) from None


def _organization_of(reference: Any) -> tuple[str, str]:
    """(uuid, display) of an Organization reference."""
    if not isinstance(reference, dict):
        return "", ""
    ref = reference.get("reference")
    key = ref.removeprefix("Organization/") if isinstance(ref, str) and ref.startswith("Organization/") else ""
    identifier = reference.get("identifier")
    if not key and isinstance(identifier, dict):
        key = str(identifier.get("value") or "")
    return (key if _is_uuid(key) else ""), str(reference.get("display") or "")


def _date(value: Any, where: str) -> dt.date | None:
    if not value:
        return None
    try:
        return dt.date.fromisoformat(str(value)[:10])
    except ValueError:
        raise WorkflowError(422, "invalid", _("日期格式应为 YYYY-MM-DD。"), where) from None


@dataclass
class Written:
    """What a write answers: the resource, and whether it was created (201) or changed (200)."""

    resource: dict[str, Any]
    created: bool
    location: str = ""


def _translate(call: Callable[[], Any]) -> Any:
    """Run a service call; its refusals become OperationOutcome answers."""
    try:
        return call()
    except PermissionDenied as exc:
        raise WorkflowError(403, "forbidden", str(exc) or _("您当前的角色无权执行此操作。")) from None
    except Http404:
        raise WorkflowError(404, "not-found", _("未找到，或您无权访问。")) from None
    except ValidationError as exc:
        messages = []
        where = ""
        if hasattr(exc, "error_dict"):
            for field, errors in exc.message_dict.items():
                where = where or field
                messages += errors
        else:
            messages = exc.messages
        codes = {e.code for e in exc.error_list} if not hasattr(exc, "error_dict") else set()
        status, code = (409, "conflict") if "conflict" in codes else (422, "business-rule")
        raise WorkflowError(status, code, "；".join(messages), where) from None


# --- writes: ServiceRequest (refer) ----------------------------------------------------------------------


def service_request_create(key_actor: Actor, resource: Any, if_none_exist: str = "") -> Written:
    """Refer a patient: the requester practitioner of the key's institution submits the referral.
    With the sender's identifier, a resend is safe (`referrals.services.referral_submit_once`)."""
    resource = _check(resource, "ServiceRequest")
    source = _source_identifier(resource, "ServiceRequest")
    conditional = _conditional(if_none_exist, source, "ServiceRequest")
    actor = acting_practitioner(key_actor, resource.get("requester"), "ServiceRequest.requester")
    if resource.get("intent") not in ("order", "original-order", "proposal", "plan"):
        raise WorkflowError(422, "invalid", _("转诊的 intent 应为 order。"), "ServiceRequest.intent")
    if resource.get("status") not in ("active", "draft"):
        raise WorkflowError(422, "invalid", _("新建转诊的 status 应为 active。"), "ServiceRequest.status")
    patient = _patient(actor, key_actor, resource.get("subject"), "ServiceRequest.subject")
    destination = department = None
    for index, performer in enumerate(resource.get("performer") or []):
        key, _display = _organization_of(performer)
        if not key:
            continue
        institution = Institution.objects.filter(uuid=key).first()
        if institution is not None and destination is None:
            destination = institution
            continue
        found = Department.objects.filter(uuid=key).first()
        if found is None:
            raise WorkflowError(422, "not-found", _("未找到接收机构或科室。"), f"ServiceRequest.performer[{index}]")
        department = found
    if destination is None:
        message = _("须指明接收机构（performer: Organization/<机构标识>）。")
        raise WorkflowError(422, "required", message, "ServiceRequest.performer")
    direction = ""
    for code in (resource.get("code") or {}).get("coding") or []:
        if code.get("system") == DIRECTION_SYSTEM:
            direction = str(code.get("code") or "")
    if not direction:
        here, there = referrals.tier(actor.institution), referrals.tier(destination)  # type: ignore[arg-type]
        direction = Direction.UP if there > here else Direction.DOWN if there < here else Direction.LATERAL
    reason_code: dict[str, Any] = next(iter(resource.get("reasonCode") or []), {})
    coding: dict[str, Any] = next((c for c in reason_code.get("coding") or [] if "icd-10" in str(c.get("system", ""))), {})
    diagnosis_name = str(reason_code.get("text") or coding.get("display") or "")
    notes = [str(n.get("text") or "") for n in resource.get("note") or []]
    period = resource.get("occurrencePeriod") or {}
    fields: dict[str, Any] = {
        "patient": patient,
        "direction": direction,
        "urgency": URGENCY_OF_PRIORITY.get(str(resource.get("priority") or "routine"), "?"),
        "destination_institution": destination,
        "destination_department": department,
        "reason": notes[0] if notes else "",
        "diagnosis_name": diagnosis_name,
        "diagnosis_code": str(coding.get("code") or ""),
        "clinical_summary": "\n".join(notes[1:]),
        "wanted_from": _date(period.get("start"), "ServiceRequest.occurrencePeriod.start"),
        "wanted_to": _date(period.get("end"), "ServiceRequest.occurrencePeriod.end"),
    }
    if source is None:
        referral, created = _translate(lambda: referrals.referral_submit(actor=actor, **fields)), True
    else:
        referral, created = _translate(
            lambda: referrals.referral_submit_once(
                actor=actor, source_system=source[0], source_identifier=source[1], conditional=conditional, **fields
            )
        )
    referral = _referrals(actor).get(pk=referral.pk)
    _log(actor, [referral.patient], "/fhir/ServiceRequest")
    return Written(service_request_json(referral), created, f"ServiceRequest/{referral.uuid}")


def _source_identifier(resource: dict[str, Any], where: str) -> tuple[str, str] | None:
    """(system, value) of the sending system's own identifier of the resource (an order, a
    follow-up task, a bed reservation): the first identifier with a value that is not ours
    (`urn:yilian:…`). None when it sends none."""
    for index, identifier in enumerate(resource.get("identifier") or []):
        if not isinstance(identifier, dict):
            continue
        system, value = str(identifier.get("system") or "").strip(), str(identifier.get("value") or "").strip()
        if system.startswith(OUR_SYSTEMS) or not value:
            continue
        if len(system) > 200 or len(value) > 64:
            message = _("标识过长：system 最多 200 个字符，value 最多 64 个字符。")
            raise WorkflowError(422, "invalid", message, f"{where}.identifier[{index}]")
        return system, value
    return None


def _conditional(header: str, identifier: tuple[str, str] | None, name: str) -> bool:
    """Whether a create is a FHIR conditional create (`If-None-Exist`). Supported for what the
    sender identifies: `If-None-Exist: identifier=<system>|<value>` (or `identifier=<value>`, a
    leading `<type>?` allowed) naming the sender's own identifier in the resource. The match is
    then that identifier's resource (at most one: identifiers are unique per sending institution),
    returned unchanged (200) whatever the content, as FHIR says; no match creates. Any other search
    in the header is refused (400) rather than ignored, so a client never believes it is protected
    when it is not."""
    if not header.strip():
        return False
    query = header.strip()
    kind, question, rest = query.partition("?")
    if question:
        if kind.rsplit("/", 1)[-1] != name:
            message = _("If-None-Exist 的资源类型应为 %(name)s。") % {"name": name}
            raise WorkflowError(400, "invalid", message, "If-None-Exist")
        query = rest
    params = QueryDict(query[:400])
    values = params.getlist("identifier")
    if set(params) != {"identifier"} or len(values) != 1 or "," in values[0]:
        message = _("If-None-Exist 只支持 identifier=<system>|<value>（资源中发送方自己的标识）。")
        raise WorkflowError(400, "not-supported", message, "If-None-Exist")
    system, bar, value = values[0].rpartition("|")
    if identifier is None or value != identifier[1] or (bar and system != identifier[0]):
        message = _("If-None-Exist 中的 identifier 须是资源中发送方自己的标识（%(name)s.identifier）。") % {"name": name}
        raise WorkflowError(400, "invalid", message, "If-None-Exist")
    return True


def _not_conditional(header: str, what: str) -> None:
    """A create that has no sender identifier to match: `If-None-Exist` is refused, not ignored."""
    if header.strip():
        message = _("%(what)s不支持条件创建（If-None-Exist）。") % {"what": what}
        raise WorkflowError(400, "not-supported", message, "If-None-Exist")


# --- writes: Task (the receiver's and sender's steps) ---------------------------------------------------


def task_update(key_actor: Actor, resource: Any, key: str | None, if_none_exist: str = "") -> Written:
    """Move a referral by its Task's status: accepted, rejected (statusReason), in-progress
    (arrived), completed (output or note = result), cancelled (by the requester, statusReason).
    The practitioner is Task.owner for the receiver's steps and Task.requester for cancelling.
    Sending the state the referral is already in changes nothing (a safe retry)."""
    resource = _check(resource, "Task")
    if key is not None and resource.get("id") != key:
        raise WorkflowError(400, "invalid", _("请求体的 id 与地址中的 id 不一致。"), "Task.id")
    named = str(key or resource.get("id") or "")
    if _is_uuid(named) and FollowUpTask.objects.filter(uuid=named).exists():
        _not_conditional(if_none_exist, _("随访任务的更新"))
        return follow_up_update(key_actor, resource, named)
    if key is None and _names_a_follow_up(resource):
        return follow_up_create(key_actor, resource, if_none_exist)
    _not_conditional(if_none_exist, _("转诊 Task 的状态变更"))
    target = _ids(str((resource.get("focus") or {}).get("reference") or ""), "ServiceRequest/")
    referral_key = key or resource.get("id") or (target[0] if target else "")
    if not referral_key or not _is_uuid(str(referral_key)):
        raise WorkflowError(422, "required", _("须指明转诊单：Task 的 id 或 focus（ServiceRequest/<标识>）。"), "Task.focus")
    status = str(resource.get("status") or "")
    steps = {"accepted", "rejected", "in-progress", "completed", "cancelled"}
    if status not in steps:
        raise WorkflowError(
            422, "business-rule", _("可提交的状态：accepted、rejected、in-progress、completed、cancelled。"), "Task.status"
        )
    who = resource.get("requester") if status == "cancelled" else resource.get("owner")
    actor = acting_practitioner(key_actor, who, "Task.requester" if status == "cancelled" else "Task.owner")
    try:
        referral = access_referral(actor, str(referral_key))
    except Http404:
        raise WorkflowError(404, "not-found", _("未找到该转诊单，或您无权访问。"), "Task.id") from None
    if TASK_STATUS[referral.status] == status:  # type: ignore[index]
        _log(actor, [referral.patient], "/fhir/Task")
        return Written(task_json(_referrals(actor).get(pk=referral.pk)), False)
    reason = str((resource.get("statusReason") or {}).get("text") or "")
    notes = [str(n.get("text") or "") for n in resource.get("note") or []]
    outputs = [str(o.get("valueString") or "") for o in resource.get("output") or [] if o.get("valueString")]
    if status == "accepted":
        slot = bed = None
        for index, item in enumerate(resource.get("input") or []):
            reference = str((item.get("valueReference") or {}).get("reference") or "")
            if reference.startswith("Slot/"):
                slot = _slots(actor).filter(uuid=reference.removeprefix("Slot/")).first() if _is_uuid(reference[5:]) else None
                if slot is None:
                    raise WorkflowError(422, "not-found", _("未找到该号源。"), f"Task.input[{index}]")
            elif reference.startswith("Location/"):
                key = reference.removeprefix("Location/")
                bed = _beds(actor).filter(uuid=key).first() if _is_uuid(key) else None
                if bed is None:
                    raise WorkflowError(422, "not-found", _("未找到该床位（须为本医联体内的床位）。"), f"Task.input[{index}]")
        note = notes[0] if notes else ""
        instructions = notes[1] if len(notes) > 1 else ""
        follow_ups = _contained_follow_ups(resource)
        _translate(
            lambda: referrals.referral_accept(
                actor=actor,
                referral=referral,
                note=note,
                slot=slot,
                bed=bed,
                instructions=instructions,
                follow_ups=follow_ups,
            )
        )
    elif status == "rejected":
        _translate(lambda: referrals.referral_reject(actor=actor, referral=referral, reason=reason))
    elif status == "cancelled":
        _translate(lambda: referrals.referral_cancel(actor=actor, referral=referral, reason=reason))
    elif status == "in-progress":
        _translate(lambda: referrals.referral_confirm_arrival(actor=actor, referral=referral))
    else:
        summary = (outputs or notes or [""])[0]
        _translate(lambda: referrals.referral_complete(actor=actor, referral=referral, result_summary=summary))
    referral = _referrals(actor).get(pk=referral.pk)
    _log(actor, [referral.patient], "/fhir/Task")
    return Written(task_json(referral), False)


# --- writes: follow-up tasks (随访任务) -------------------------------------------------------------------------


def _names_a_follow_up(resource: dict[str, Any]) -> bool:
    """A Task that is a follow-up task: `code` follow-up, or a part of another Task."""
    coded = any(
        c.get("system") == TASK_KIND_SYSTEM and c.get("code") == "follow-up"
        for c in (resource.get("code") or {}).get("coding") or []
    )
    return coded or bool(resource.get("partOf"))


def _follow_up_spec(item: dict[str, Any], where: str) -> referrals.FollowUpSpec:
    """A follow-up task to create from a Task: owner (the responsible doctor), restriction.period.end
    (the due date), description (what to check)."""
    if not item.get("owner"):
        raise WorkflowError(422, "required", _("须指明责任医生（owner: Practitioner）。"), f"{where}.owner")
    responsible = _practitioner_user(item.get("owner"), f"{where}.owner")
    if responsible is None or not responsible.is_active:
        raise WorkflowError(422, "not-found", _("未找到该责任医生。"), f"{where}.owner")
    due = _date(((item.get("restriction") or {}).get("period") or {}).get("end"), f"{where}.restriction.period.end")
    if due is None:
        message = _("须指明随访日期（restriction.period.end）。")
        raise WorkflowError(422, "required", message, f"{where}.restriction.period.end")
    description = str(item.get("description") or "").strip()
    if not description:
        raise WorkflowError(422, "required", _("须写明随访内容（description）。"), f"{where}.description")
    system, identifier = _source_identifier(item, where) or ("", "")
    return referrals.FollowUpSpec(
        responsible=responsible,
        due_date=due,
        what_to_check=description,
        source_system=system,
        source_identifier=identifier,
    )


def _contained_follow_ups(resource: dict[str, Any]) -> list[referrals.FollowUpSpec]:
    """The follow-up tasks an acceptance carries: contained Tasks, each named by an `input` whose
    valueReference is `#<contained id>` (type follow-up). A contained resource nothing names is
    refused, so a follow-up is never dropped silently."""
    contained = {
        str(item.get("id") or ""): (index, item)
        for index, item in enumerate(resource.get("contained") or [])
        if isinstance(item, dict)
    }
    specs = []
    named: set[str] = set()
    for index, item in enumerate(resource.get("input") or []):
        reference = str((item.get("valueReference") or {}).get("reference") or "")
        if not reference.startswith("#"):
            continue
        found = contained.get(reference[1:])
        if found is None or found[1].get("resourceType") != "Task":
            message = _("input 引用的 %(reference)s 不是本 Task 内含的随访任务（contained Task）。") % {
                "reference": reference[:40]
            }
            raise WorkflowError(422, "invalid", message, f"Task.input[{index}]")
        named.add(reference[1:])
        specs.append(_follow_up_spec(found[1], f"Task.contained[{found[0]}]"))
    for key, (index, _item) in contained.items():
        if key not in named:
            message = _("内含资源须由 input（随访任务）引用。")
            raise WorkflowError(422, "invalid", message, f"Task.contained[{index}]")
    return specs


def follow_up_create(key_actor: Actor, resource: dict[str, Any], if_none_exist: str = "") -> Written:
    """`POST /fhir/Task` of a follow-up task for a referral already accepted (partOf its Task or
    basedOn its ServiceRequest): the receiving side's practitioner in Task.requester adds it
    (`referrals.services.follow_up_add`). With the sender's own identifier (Task.identifier) a
    resend is safe: the same task again → 200 with the one it made, the identifier on another task
    → 409 (`follow_up_add_once`); `If-None-Exist` on that identifier → 200 with it, whatever the content."""
    conditional = _conditional(if_none_exist, _source_identifier(resource, "Task"), "Task")
    actor = acting_practitioner(key_actor, resource.get("requester"), "Task.requester")
    if resource.get("status") != "requested":
        raise WorkflowError(422, "invalid", _("新建随访任务的 status 应为 requested。"), "Task.status")
    parents = [
        *(r for p in resource.get("partOf") or [] for r in _ids(str(p.get("reference") or ""), "Task/")),
        *(r for b in resource.get("basedOn") or [] for r in _ids(str(b.get("reference") or ""), "ServiceRequest/")),
    ]
    if not parents:
        message = _("须指明所属转诊单：partOf（Task/<转诊单标识>）或 basedOn（ServiceRequest/<转诊单标识>）。")
        raise WorkflowError(422, "required", message, "Task.partOf")
    if len(set(parents)) > 1:
        raise WorkflowError(422, "invalid", _("partOf 与 basedOn 须指向同一张转诊单。"), "Task.partOf")
    spec = _follow_up_spec(resource, "Task")
    try:
        referral = access_referral(actor, parents[0])
    except Http404:
        raise WorkflowError(404, "not-found", _("未找到该转诊单，或您无权访问。"), "Task.partOf") from None
    if spec.source_identifier:
        task, created = _translate(
            lambda: referrals.follow_up_add_once(actor=actor, referral=referral, spec=spec, conditional=conditional)
        )
    else:
        task, created = _translate(lambda: referrals.follow_up_add(actor=actor, referral=referral, spec=spec)), True
    found = _follow_ups(actor).get(pk=task.pk)
    _log(actor, [found.patient], "/fhir/Task")
    return Written(follow_up_json(found), created, f"Task/{found.uuid}")


def follow_up_update(key_actor: Actor, resource: dict[str, Any], key: str) -> Written:
    """`PUT /fhir/Task/<follow-up id>` with status completed: the practitioner in Task.owner (the
    responsible doctor, or a clinician of the responsible institution) records the result (output
    valueString, else the first note) through `referrals.services.follow_up_done`. The state the
    task is already in again changes nothing."""
    status = str(resource.get("status") or "")
    if status not in ("completed", "requested"):
        raise WorkflowError(422, "business-rule", _("随访任务可提交的状态：completed。"), "Task.status")
    actor = acting_practitioner(key_actor, resource.get("owner"), "Task.owner")
    try:
        task = access_follow_up(actor, key)
    except Http404:
        raise WorkflowError(404, "not-found", _("未找到该随访任务，或您无权访问。"), "Task.id") from None
    if FOLLOW_UP_STATUS[task.status] != status:  # type: ignore[index]
        if status != "completed":
            raise WorkflowError(422, "business-rule", _("该随访任务已处理。"), "Task.status")
        outputs = [str(o.get("valueString") or "") for o in resource.get("output") or [] if o.get("valueString")]
        notes = [str(n.get("text") or "") for n in resource.get("note") or []]
        result = (outputs or notes or [""])[0]
        _translate(lambda: referrals.follow_up_done(actor=actor, task=task, result=result))
    found = _follow_ups(actor).get(pk=task.pk)
    _log(actor, [found.patient], "/fhir/Task")
    return Written(follow_up_json(found), False)


# --- writes: Appointment (book) -----------------------------------------------------------------------------


def appointment_book(key_actor: Actor, resource: Any, if_none_exist: str = "") -> Written:
    """Book a slot for a patient (`POST /fhir/Appointment` or `$book`): the Practitioner participant
    of the key's institution books through `scheduling.services.slot_book` — its institution's
    reserved units first (号源下沉), else the general pool; appointmentType EMERGENCY uses the green
    channel. An Appointment basedOn a ServiceRequest books that referral's slot as its receiver
    (`referrals.services.referral_schedule`)."""
    if isinstance(resource, dict) and resource.get("resourceType") == "Parameters":
        inner = [p.get("resource") for p in resource.get("parameter") or [] if isinstance(p, dict) and p.get("resource")]
        _check(resource, "Parameters")
        resource = inner[0] if inner else None
        if resource is None:
            raise WorkflowError(422, "required", _("$book 的参数中须有一个 Appointment。"), "Parameters.parameter")
    resource = _check(resource, "Appointment")
    if resource.get("status") not in ("booked", "proposed", "pending"):
        raise WorkflowError(422, "invalid", _("新建预约的 status 应为 booked。"), "Appointment.status")
    participants = [p for p in resource.get("participant") or [] if isinstance(p, dict)]
    if any(_participant_reference(p).startswith("Location/") for p in participants):
        return _bed_reserve(key_actor, resource, participants, if_none_exist)
    actor = acting_practitioner(key_actor, _practitioner_participant(participants), "Appointment.participant")
    _not_conditional(if_none_exist, _("号源预约"))
    slots = [str(s.get("reference") or "") for s in resource.get("slot") or []]
    if len(slots) != 1 or not slots[0].startswith("Slot/") or not _is_uuid(slots[0][5:]):
        raise WorkflowError(422, "required", _("须指明一个号源（slot: Slot/<标识>）。"), "Appointment.slot")
    slot = (
        Slot.objects.select_related("schedule__institution")
        .filter(schedule_scope_filter(actor, prefix="schedule__"), uuid=slots[0][5:])
        .first()
    )
    if slot is None:
        raise WorkflowError(422, "not-found", _("未找到该号源。"), "Appointment.slot[0]")
    based_on = [r for b in resource.get("basedOn") or [] for r in _ids(str(b.get("reference") or ""), "ServiceRequest/")]
    if based_on:
        try:
            referral = access_referral(actor, based_on[0])
        except Http404:
            raise WorkflowError(422, "not-found", _("未找到该转诊单，或您无权访问。"), "Appointment.basedOn[0]") from None
        comment = str(resource.get("comment") or "")
        updated = _translate(lambda: referrals.referral_schedule(actor=actor, referral=referral, slot=slot, instructions=comment))
        booking = updated.booking
    else:
        patient_ref = next(
            (p.get("actor") for p in participants if str((p.get("actor") or {}).get("reference", "")).startswith("Patient/")),
            None,
        )
        patient = _patient(actor, key_actor, patient_ref, "Appointment.participant")
        first: dict[str, Any] = next(iter((resource.get("appointmentType") or {}).get("coding") or []), {})
        kind = first.get("code")
        pools = ["green_channel"] if kind == "EMERGENCY" else ["reserved", "general"]
        booking = _book(actor, slot, patient, pools, str(resource.get("comment") or "")[:200])
    found = _bookings(actor).get(pk=booking.pk)
    _log(actor, [found.patient], "/fhir/Appointment")
    return Written(appointment_json(found), True, f"Appointment/{found.uuid}")


def _participant_reference(participant: dict[str, Any]) -> str:
    return str((participant.get("actor") or {}).get("reference") or "")


def _practitioner_participant(participants: list[dict[str, Any]]) -> Any:
    """The actor of the Practitioner participant (by reference or 执业证书编码), None when there is none."""
    return next(
        (
            p.get("actor")
            for p in participants
            if _participant_reference(p).startswith("Practitioner/")
            or ((p.get("actor") or {}).get("identifier") or {}).get("system") == CERTIFICATE_SYSTEM
        ),
        None,
    )


def _instant(value: Any, where: str) -> dt.datetime | None:
    if not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(str(value))
    except ValueError:
        raise WorkflowError(422, "invalid", _("时间格式应为 YYYY-MM-DDThh:mm:ss+zz:zz。"), where) from None
    return parsed if parsed.tzinfo is not None else timezone.make_aware(parsed)


def _bed_reserve(key_actor: Actor, resource: dict[str, Any], participants: list[dict[str, Any]], if_none_exist: str) -> Written:
    """Reserve a bed (`POST /fhir/Appointment` with a participant `Location/<bed id>`): the
    Practitioner participant of the key's institution reserves it for the Patient participant
    through `scheduling.services.bed_reserve` — the bed looked up in the actor's consortia, the
    patient through the patient gatekeeper, as `/api/v1/scheduling/bed-reservations` does — until
    `end` (else 24 hours). With the sender's identifier a resend is safe (`bed_reserve_once`)."""
    source = _source_identifier(resource, "Appointment")
    conditional = _conditional(if_none_exist, source, "Appointment")
    actor = acting_practitioner(key_actor, _practitioner_participant(participants), "Appointment.participant")
    if resource.get("slot"):
        message = _("预留床位的 Appointment 不能同时指明号源（slot）。")
        raise WorkflowError(422, "invalid", message, "Appointment.slot")
    beds = [(index, p) for index, p in enumerate(participants) if _participant_reference(p).startswith("Location/")]
    if len(beds) != 1:
        raise WorkflowError(422, "invalid", _("须指明一张床位（participant: Location/<床位标识>）。"), "Appointment.participant")
    index, participant = beds[0]
    key = _participant_reference(participant).removeprefix("Location/")
    bed = _beds(actor).filter(uuid=key).first() if _is_uuid(key) else None
    if bed is None:
        raise WorkflowError(422, "not-found", _("未找到该床位（须为本医联体内的床位）。"), f"Appointment.participant[{index}]")
    patient_ref = next((p.get("actor") for p in participants if _participant_reference(p).startswith("Patient/")), None)
    until = _instant(resource.get("end"), "Appointment.end")
    note = str(resource.get("comment") or "")
    if resource.get("basedOn"):
        return _referral_bed(actor, resource, bed, patient_ref, until, note, source, conditional)
    patient = _patient(actor, key_actor, patient_ref, "Appointment.participant")
    if source is None:
        reservation = _translate(
            lambda: scheduling.bed_reserve(actor=actor, bed=bed, patient=patient, expires_at=until, note=note)
        )
        created = True
    else:
        reservation, created = _translate(
            lambda: scheduling.bed_reserve_once(
                actor=actor,
                bed=bed,
                patient=patient,
                source_system=source[0],
                source_identifier=source[1],
                expires_at=until,
                note=note,
                conditional=conditional,
            )
        )
    found = _reservations(actor).get(pk=reservation.pk)
    _log(actor, [found.patient], "/fhir/Appointment")
    return Written(reservation_json(found), created, f"Appointment/{found.uuid}")


def _referral_bed(
    actor: Actor,
    resource: dict[str, Any],
    bed: Bed,
    patient_ref: Any,
    until: dt.datetime | None,
    note: str,
    source: tuple[str, str] | None,
    conditional: bool,
) -> Written:
    """A bed reservation basedOn a referral's ServiceRequest: the receiver reserves the bed of an
    accepted referral for its patient (`referrals.services.referral_schedule`: the referral becomes
    scheduled, the sender is told, a bed it held before is given back once the new one is held).
    Sending it again while the referral holds this very bed returns that reservation unchanged."""
    if source is not None or conditional:
        message = _("转诊单的床位以转诊单为准：不带发送方标识，也不支持条件创建（If-None-Exist）。")
        raise WorkflowError(422 if source is not None else 400, "not-supported", message, "Appointment.identifier")
    keys = [r for b in resource.get("basedOn") or [] for r in _ids(str(b.get("reference") or ""), "ServiceRequest/")]
    if not keys:
        raise WorkflowError(422, "invalid", _("basedOn 须为 ServiceRequest/<转诊单标识>。"), "Appointment.basedOn[0]")
    try:
        referral = access_referral(actor, keys[0])
    except Http404:
        raise WorkflowError(422, "not-found", _("未找到该转诊单，或您无权访问。"), "Appointment.basedOn[0]") from None
    named = str((patient_ref or {}).get("reference") or "") if isinstance(patient_ref, dict) else ""
    if named and named != f"Patient/{referral.patient.uuid}":
        raise WorkflowError(422, "invalid", _("患者须为转诊单的患者。"), "Appointment.participant")
    held = referral.bed_reservation
    if held is not None and held.bed_id == bed.pk and held.status == ReservationStatus.ACTIVE:
        found = _reservations(actor).get(pk=held.pk)
        _log(actor, [found.patient], "/fhir/Appointment")
        return Written(reservation_json(found), False, f"Appointment/{found.uuid}")
    hours = 24 if until is None else max(1, math.ceil((until - timezone.now()).total_seconds() / 3600))
    updated = _translate(
        lambda: referrals.referral_schedule(actor=actor, referral=referral, bed=bed, bed_hours=hours, instructions=note)
    )
    found = _reservations(actor).get(pk=updated.bed_reservation_id)
    _log(actor, [found.patient], "/fhir/Appointment")
    return Written(reservation_json(found), True, f"Appointment/{found.uuid}")


def appointment_update(key_actor: Actor, resource: Any, key: str, if_none_exist: str = "") -> Written:
    """`PUT /fhir/Appointment/<id>`, done by the Practitioner participant. A bed reservation with
    status cancelled: the reserving or the receiving institution releases the bed through
    `scheduling.services.bed_release`, which revokes the receiving institution's grant; fulfilled:
    the bed's institution admits the patient (`bed_admit`, the bed becomes occupied). A slot
    booking with status cancelled (reason in cancelationReason.text): the booking or the receiving
    institution cancels through `booking_cancel` (the unit goes back to its pool, the grant is
    revoked); noshow: the receiving institution marks it after the start (`booking_mark_no_show`).
    The state it is already in again changes nothing (a safe retry)."""
    resource = _check(resource, "Appointment")
    if resource.get("id") != key:
        raise WorkflowError(400, "invalid", _("请求体的 id 与地址中的 id 不一致。"), "Appointment.id")
    _not_conditional(if_none_exist, _("预约的更新"))
    participants = [p for p in resource.get("participant") or [] if isinstance(p, dict)]
    actor = acting_practitioner(key_actor, _practitioner_participant(participants), "Appointment.participant")
    try:
        reservation = access_reservation(actor, key)
    except Http404:
        try:
            booking = access_booking(actor, key)
        except Http404:
            raise WorkflowError(404, "not-found", _("未找到该预约，或您无权访问。"), "Appointment.id") from None
        return _booking_update(actor, booking, resource)
    steps = {
        "cancelled": lambda: scheduling.bed_release(actor=actor, reservation=reservation),
        "fulfilled": lambda: scheduling.bed_admit(actor=actor, reservation=reservation),
    }
    allowed = _("床位预留可提交的状态：cancelled（释放床位）、fulfilled（入住，床位所在机构）。")
    _appointment_step(RESERVATION_STATUS[reservation.status], resource, steps, allowed)  # type: ignore[index]
    found = _reservations(actor).get(pk=reservation.pk)
    _log(actor, [found.patient], "/fhir/Appointment")
    return Written(reservation_json(found), False)


def _appointment_step(current: str, resource: dict[str, Any], steps: dict[str, Callable[[], Any]], allowed: str) -> None:
    """Take the step to the status the resource asks for, unless the appointment is in it already
    (a resend changes nothing); a status with no step is refused, naming the ones there are."""
    wanted = str(resource.get("status") or "")
    if wanted == current:
        return
    step = steps.get(wanted)
    if step is None:
        raise WorkflowError(422, "business-rule", allowed, "Appointment.status")
    _translate(step)


def _booking_update(actor: Actor, booking: Booking, resource: dict[str, Any]) -> Written:
    def cancel() -> Booking:
        reason = resource.get("cancelationReason") or {}
        if not isinstance(reason, dict) or not isinstance(reason.get("text", ""), str):
            message = _("cancelationReason 须为 CodeableConcept（原因写在 text）。")
            raise WorkflowError(400, "invalid", message, "Appointment.cancelationReason")
        return scheduling.booking_cancel(actor=actor, booking=booking, reason=reason.get("text", ""))

    steps = {"cancelled": cancel, "noshow": lambda: scheduling.booking_mark_no_show(actor=actor, booking=booking)}
    allowed = _("号源预约可提交的状态：cancelled（取消，原因写在 cancelationReason.text）、noshow（爽约）。")
    _appointment_step(APPOINTMENT_STATUS[booking.status], resource, steps, allowed)  # type: ignore[index]
    found = _bookings(actor).get(pk=booking.pk)
    _log(actor, [found.patient], "/fhir/Appointment")
    return Written(appointment_json(found), False)


def _book(actor: Actor, slot: Slot, patient: Patient, pools: list[str], note: str) -> Booking:
    """Book from the first pool of `pools` that has a unit for the actor's institution."""

    def attempt() -> Booking:
        last: ValidationError | None = None
        for pool in pools:
            try:
                return scheduling.slot_book(actor=actor, slot=slot, patient=patient, pool=pool, note=note)  # type: ignore[arg-type]
            except ValidationError as exc:
                last = exc
                if getattr(exc, "code", None) not in ("pool", "conflict"):
                    raise
        raise last or ValidationError(_("该号源已约满，请选择其他时间。"), code="conflict")

    return _translate(attempt)  # type: ignore[no-any-return]


def can_write(name: str, interaction: str) -> bool:
    return interaction in WRITABLE.get(name, ())


def require_view(actor: Actor, name: str) -> None:
    """Sessions read referrals and appointments only with PATIENT_VIEW (their lists would be empty
    anyway); schedules and slots with STRUCTURE_VIEW. Keys read as the docstring says."""
    if actor.api_key is not None:
        return
    needed = Permission.STRUCTURE_VIEW if name in ("Schedule", "Slot", "Location") else Permission.PATIENT_VIEW
    if not actor.can(needed):
        raise WorkflowError(403, "forbidden", _("您当前的角色无权执行此操作。"))
