"""Referral pages (双向转诊): create from a patient with the destination suggestion, the sender's
outbox, the receiver's inbox, the coordinator's board, the detail page with the steps each side may
take, the follow-up task list and the printable 转诊单 (PDF).

Every page loads its referral through the gatekeeper (`access_referral`) and writes the patients it
shows to the access log; steps go to `services` and only translate their errors: a step from the
wrong side is 403, a missing or hidden referral 404, bad input the form again with its errors (400).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Page, Paginator
from django.db.models import Q, QuerySet
from django.forms import formset_factory
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from yilian.access.models import AccessAction
from yilian.access.services import access_log_record
from yilian.accounts.actors import Actor
from yilian.accounts.models import Membership, User
from yilian.accounts.roles import Permission, Role
from yilian.organizations.models import ConsortiumMembership, Institution
from yilian.patients.access import access_patient, basis_grant, patients_listed
from yilian.referrals import selectors, services
from yilian.referrals.access import (
    access_follow_up,
    access_referral,
    holding_institution_ids,
    is_coordinator_for,
    is_receiver,
    is_sender,
)
from yilian.referrals.forms import (
    AcceptForm,
    CompleteForm,
    FollowUpDoneForm,
    FollowUpForm,
    ReasonForm,
    ReferralForm,
    SuggestForm,
)
from yilian.referrals.models import (
    CLOSED_STATUSES,
    OPEN_STATUSES,
    Direction,
    FollowUpStatus,
    Referral,
    ReferralCriterion,
    ReferralStatus,
    Urgency,
)
from yilian.referrals.pdf import referral_pdf
from yilian.scheduling.models import Bed, BedStatus, Schedule, Slot, Ward
from yilian.scheduling.selectors import schedules_with_use, slot_search, ward_use
from yilian.web.pagination import MAX_PAGE_SIZE, PAGE_SIZE, paginate

S = ReferralStatus
POOL_DAYS = 14
BOARD_SCHEDULES = 30  # the board's slot-use table: at most this many schedules
SLOT_CHOICES = 30
BED_CHOICES = 40
FOLLOW_UP_ROWS = 3
DOCTOR_ROLES = (Role.CLINICIAN, Role.VILLAGE_DOCTOR, Role.NURSE)

# The state tabs of the lists: key -> (label, statuses or None for all).
STATE_TABS: dict[str, tuple[Any, tuple[str, ...] | None]] = {
    "open": (gettext_lazy("未结束"), tuple(OPEN_STATUSES)),
    "submitted": (S.SUBMITTED.label, (S.SUBMITTED,)),
    "accepted": (S.ACCEPTED.label, (S.ACCEPTED,)),
    "scheduled": (S.SCHEDULED.label, (S.SCHEDULED,)),
    "arrived": (S.ARRIVED.label, (S.ARRIVED,)),
    "closed": (gettext_lazy("已结束"), tuple(CLOSED_STATUSES)),
    "all": (gettext_lazy("全部"), None),
}


def _actor(request: HttpRequest) -> Actor:
    return request.actor  # type: ignore[attr-defined, no-any-return]


def _require_clinical(actor: Actor) -> None:
    actor.require(Permission.PATIENT_VIEW)
    if actor.institution is None:
        raise PermissionDenied(_("您当前的角色无权执行此操作。"))


def _add_errors(form: forms.Form, exc: ValidationError) -> None:
    """Put a service's ValidationError on the form: on its field when the form has one."""
    if hasattr(exc, "error_dict"):
        for name, errors in exc.error_dict.items():
            form.add_error(name if name in form.fields else None, errors)
    else:
        form.add_error(None, exc.messages)


def _consortium_ids(institution: Institution) -> QuerySet[ConsortiumMembership, Any]:
    return ConsortiumMembership.objects.current().filter(institution=institution).values("consortium_id")


# --- create -----------------------------------------------------------------------------------------


def _referral_form(actor: Actor, data: Any = None, initial: dict[str, Any] | None = None) -> ReferralForm:
    institution = actor.institution
    if institution is None:  # pragma: no cover - callers check _require_clinical first
        raise PermissionDenied(_("您当前的角色无权执行此操作。"))
    consortia = _consortium_ids(institution)
    institutions = (
        Institution.objects.active()
        .filter(consortium_memberships__consortium_id__in=consortia)
        .exclude(pk=institution.pk)
        .distinct()
        .order_by("name")
    )
    criteria = ReferralCriterion.objects.filter(is_active=True).filter(
        Q(consortium__isnull=True) | Q(consortium_id__in=consortia)
    )
    return ReferralForm(data, institutions=institutions, criteria=criteria, initial=initial)


@login_required
@require_http_methods(["GET", "POST"])
def create(request: HttpRequest, uuid: str) -> HttpResponse:
    """发起转诊 for one patient (who comes through the patient gatekeeper; the read is logged)."""
    actor = _actor(request)
    _require_clinical(actor)
    patient = access_patient(actor, uuid, path=request.path)
    initial = {"wanted_from": timezone.localdate(), "wanted_to": timezone.localdate() + dt.timedelta(days=14)}
    form = _referral_form(actor, request.POST if request.method == "POST" else None, initial=initial)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            data = form.cleaned_data
            try:
                referral = services.referral_submit(
                    actor=actor,
                    patient=patient,
                    direction=data["direction"],
                    urgency=data["urgency"],
                    destination_institution=data["destination_institution"],
                    destination_department=data["destination_department"],
                    reason=data["reason"],
                    diagnosis_name=data["diagnosis_name"],
                    diagnosis_code=data["diagnosis_code"],
                    clinical_summary=data["clinical_summary"],
                    criteria_ids=[c.pk for c in data["criteria"]],
                    required_capability=data["required_capability"],
                    wanted_from=data["wanted_from"],
                    wanted_to=data["wanted_to"],
                    share_scope=data["share_scope"],
                    sender_phone=data["sender_phone"],
                )
            except ValidationError as exc:
                _add_errors(form, exc)
            else:
                messages.success(request, _("转诊单 %(number)s 已提交。") % {"number": referral.number})
                return redirect("referrals:detail", uuid=referral.uuid)
        status = 400
    criteria = list(form.fields["criteria"].queryset)  # type: ignore[attr-defined]
    chosen = {str(value) for value in (form["criteria"].value() or [])}
    context = {"patient": patient, "form": form, "criteria": criteria, "chosen_criteria": chosen}
    return render(request, "referrals/create.html", context, status=status)


@login_required
@require_GET
def suggest(request: HttpRequest) -> HttpResponse:
    """The ranked destination list (htmx partial) for direction, urgency, capability and window."""
    actor = _actor(request)
    _require_clinical(actor)
    form = SuggestForm(request.GET)
    data = form.cleaned_data if form.is_valid() else {}
    suggestions = selectors.destination_suggest(
        actor,
        direction=data.get("direction") or Direction.UP,
        urgency=data.get("urgency") or Urgency.ROUTINE,
        required_capability=data.get("required_capability") or "",
        date_from=data.get("wanted_from"),
        date_to=data.get("wanted_to"),
    )
    response = render(request, "referrals/_suggestions.html", {"suggestions": suggestions})
    patch_vary_headers(response, ["HX-Request"])
    return response


# --- lists ------------------------------------------------------------------------------------------


def _tabbed(request: HttpRequest, queryset: QuerySet[Referral], default: str = "open") -> tuple[str, QuerySet[Referral]]:
    state = request.GET.get("state", default)
    if state not in STATE_TABS:
        state = default
    statuses = STATE_TABS[state][1]
    return state, queryset.filter(status__in=statuses) if statuses is not None else queryset


def _page(
    request: HttpRequest, queryset: QuerySet[Referral], counts: dict[str, int], *, per_page: int = PAGE_SIZE
) -> tuple[str, Page]:
    """The chosen tab and its page; the row count comes from the status counts the tabs show
    (one COUNT query fewer)."""
    state, filtered = _tabbed(request, queryset)
    statuses = STATE_TABS[state][1]
    try:
        size = max(1, min(int(request.GET.get("page_size", per_page)), MAX_PAGE_SIZE))
    except ValueError:
        size = per_page
    paginator = Paginator(filtered, size)
    paginator.count = sum(n for status, n in counts.items() if statuses is None or status in statuses)  # type: ignore[misc]
    return state, paginator.get_page(request.GET.get("page"))


def _tabs(counts: dict[str, int]) -> list[dict[str, Any]]:
    tabs = []
    for key, (label, statuses) in STATE_TABS.items():
        n = sum(counts.get(s, 0) for s in statuses) if statuses is not None else sum(counts.values())
        tabs.append({"key": key, "label": label, "count": n})
    return tabs


UUID_MARKER = "00000000-0000-0000-0000-000000000000"


def _rows(page: Page, now: dt.datetime) -> list[Referral]:
    """The page's referrals, each with its detail link (`link`, from a single reverse(): one per
    row was a third of the rows' rendering time) and whether it is overdue (`overdue`).

    The page's ids are read first and the rows with their related rows after: the ids come off an
    index alone (institution, -submitted_at, -id), where joining first made PostgreSQL read and
    join every referral of a township and its village clinics before sorting (3,700 rows, 35–85 ms
    for the "all" tab at 100,000 referrals)."""
    listed: QuerySet[Referral] = page.object_list  # type: ignore[assignment]
    ids = list(listed.values_list("pk", flat=True))
    everything: QuerySet[Referral] = page.paginator.object_list  # type: ignore[assignment]
    by_id = {row.pk: row for row in everything.filter(pk__in=ids).order_by()}
    rows = [by_id[pk] for pk in ids if pk in by_id]
    pattern = reverse("referrals:detail", args=[UUID_MARKER])
    for row in rows:
        row.link = pattern.replace(UUID_MARKER, str(row.uuid))  # type: ignore[attr-defined]
        row.overdue = row.status == S.SUBMITTED and row.accept_by < now  # type: ignore[attr-defined]
    return rows


def _list_page(request: HttpRequest, queryset: QuerySet[Referral], *, side: str) -> HttpResponse:
    actor = _actor(request)
    counts = selectors.status_counts(queryset)
    state, page = _page(request, queryset, counts)
    now = timezone.now()
    rows = _rows(page, now)
    patients_listed(actor, list({r.patient_id: r.patient for r in rows}.values()), path=request.get_full_path())
    context = {
        "side": side,
        "state": state,
        "tabs": _tabs(counts),
        "page_obj": page,
        "referrals": rows,
        "now": now,
        "overdue": selectors.overdue_count(queryset),
    }
    return render(request, "referrals/list.html", context)


@login_required
@require_GET
def outbox(request: HttpRequest) -> HttpResponse:
    """转出: what the acting institution (and its village clinics) sent."""
    actor = _actor(request)
    _require_clinical(actor)
    return _list_page(request, selectors.outbox(actor), side="outbox")


@login_required
@require_GET
def inbox(request: HttpRequest) -> HttpResponse:
    """转入: what was sent to the acting institution."""
    actor = _actor(request)
    _require_clinical(actor)
    return _list_page(request, selectors.inbox(actor), side="inbox")


@login_required
@require_GET
def board(request: HttpRequest) -> HttpResponse:
    """调度看板 of the referral centre: every open referral it oversees, oldest first, overdue ones
    highlighted, and the pool use of the institution's slots (next two weeks) and beds."""
    actor = _actor(request)
    actor.require(Permission.REFERRAL_COORDINATE)
    _require_clinical(actor)
    queryset = selectors.board(actor)
    counts = selectors.status_counts(queryset)
    state, page = _page(request, queryset, counts)
    now = timezone.now()
    rows = _rows(page, now)
    patients_listed(actor, list({r.patient_id: r.patient for r in rows}.values()), path=request.get_full_path())
    place = actor.institution
    overdue, escalated = selectors.overdue_and_escalated(queryset)
    schedules = wards = None
    if place is not None:
        # The scheduling selectors (one grouped query each): the same figures as the schedule list
        # and the ward list, for the coordinator's own institution.
        mine = Schedule.objects.filter(institution=place, is_active=True)
        in_window = schedules_with_use(mine, date_from=now, date_to=now + dt.timedelta(days=POOL_DAYS))
        schedules = list(in_window.order_by("kind", "name")[:BOARD_SCHEDULES])
        wards = ward_use(Ward.objects.filter(institution=place, is_active=True).order_by("code"))
    context = {
        "state": state,
        "tabs": [t for t in _tabs(counts) if t["key"] not in ("closed", "all")],
        "page_obj": page,
        "referrals": rows,
        "now": now,
        "overdue": overdue,
        "escalated": escalated,
        "place": place,
        "schedules": schedules or [],
        "boards": wards or [],
        "days": POOL_DAYS,
    }
    return render(request, "referrals/board.html", context)


# --- detail and steps --------------------------------------------------------------------------------


def _doctors(referral: Referral) -> QuerySet[User]:
    """Who may be responsible for a follow-up: the receiver's clinicians, nurses and village doctors."""
    held = holding_institution_ids(referral.destination_institution)
    memberships = Membership.objects.current().filter(institution_id__in=held, role__in=DOCTOR_ROLES)
    return User.objects.filter(is_active=True, memberships__in=memberships).distinct().order_by("full_name", "username")


FollowUpFormSet = formset_factory(FollowUpForm, extra=FOLLOW_UP_ROWS, max_num=12)


def _follow_up_formset(referral: Referral, data: Any = None) -> Any:
    return FollowUpFormSet(data, prefix="fu", form_kwargs={"doctors": _doctors(referral)})


def _slots(actor: Actor, referral: Referral) -> list[Slot]:
    today = timezone.localdate()
    start = max(referral.wanted_from or today, today)
    end = max(referral.wanted_to or start + dt.timedelta(days=POOL_DAYS), start + dt.timedelta(days=7))
    slots = slot_search(
        actor,
        institution_id=referral.destination_institution_id,
        department_id=referral.destination_department_id,
        date_from=start,
        date_to=end,
        only_free=True,
    )
    rows = list(slots[:SLOT_CHOICES])
    for slot in rows:
        slot.free_units = slot.total_capacity - slot.total_booked  # type: ignore[attr-defined]
    return rows


def _beds(referral: Referral) -> list[Bed]:
    beds = Bed.objects.filter(
        ward__institution_id=referral.destination_institution_id, ward__is_active=True, status=BedStatus.FREE
    ).select_related("ward")
    if referral.destination_department_id is not None:
        beds = beds.filter(Q(ward__department_id=referral.destination_department_id) | Q(ward__department__isnull=True))
    return list(beds.order_by("ward__code", "code")[:BED_CHOICES])


def _detail(request: HttpRequest, referral: Referral, *, status: int = 200, **forms_given: Any) -> HttpResponse:
    actor = _actor(request)
    patients_listed(actor, [referral.patient], path=request.path)
    sender, receiver = is_sender(actor, referral), is_receiver(actor, referral)
    open_steps = referral.status in (S.SUBMITTED, S.ACCEPTED, S.SCHEDULED)
    can = {
        "cancel": sender and open_steps,
        "accept": receiver and referral.status == S.SUBMITTED,
        "reject": receiver and referral.status == S.SUBMITTED,
        "schedule": receiver and referral.status in (S.ACCEPTED, S.SCHEDULED),
        "arrive": receiver and referral.status in (S.ACCEPTED, S.SCHEDULED),
        "complete": receiver and referral.status == S.ARRIVED,
        "follow_up": receiver and referral.status in (S.ACCEPTED, S.SCHEDULED, S.ARRIVED, S.COMPLETED),
    }
    booking_needed = can["accept"] or can["schedule"]
    context = {
        "referral": referral,
        "events": list(referral.events.select_related("user", "institution")),
        "follow_ups": list(referral.follow_ups.select_related("responsible")),
        "is_sender": sender,
        "is_receiver": receiver,
        "is_coordinator": is_coordinator_for(actor, referral),
        "can": can,
        "now": timezone.now(),
        "slots": _slots(actor, referral) if booking_needed else [],
        "beds": _beds(referral) if booking_needed else [],
        "accept_form": forms_given.get("accept_form") or AcceptForm(),
        "reject_form": forms_given.get("reject_form") or ReasonForm(),
        "cancel_form": forms_given.get("cancel_form") or ReasonForm(),
        "complete_form": forms_given.get("complete_form") or CompleteForm(),
        "follow_up_formset": forms_given.get("follow_up_formset")
        or (_follow_up_formset(referral) if can["accept"] and referral.direction == Direction.DOWN else None),
        "follow_up_form": forms_given.get("follow_up_form")
        or (FollowUpForm(doctors=_doctors(referral), prefix="add") if can["follow_up"] else None),
        "error_form": forms_given.get("error_form"),
        "is_down": referral.direction == Direction.DOWN,
    }
    return render(request, "referrals/detail.html", context, status=status)


def _load(request: HttpRequest, uuid: str) -> tuple[Actor, Referral]:
    """The referral through the gatekeeper. Nothing is logged yet: the page that shows the patient
    (`_detail`) logs the read, so a refused step writes nothing."""
    actor = _actor(request)
    return actor, access_referral(actor, uuid)


@login_required
@require_GET
def detail(request: HttpRequest, uuid: str) -> HttpResponse:
    referral = _load(request, uuid)[1]
    return _detail(request, referral)


def _lookup_slot(actor: Actor, referral: Referral, key: Any) -> Slot | None:
    if not key:
        return None
    slot = (
        slot_search(actor, institution_id=referral.destination_institution_id, only_free=False)
        .select_related("schedule")
        .filter(uuid=key)
        .first()
    )
    if slot is None:
        raise ValidationError({"slot": _("号源不存在或已过期。")})
    return slot


def _lookup_bed(referral: Referral, key: Any) -> Bed | None:
    if not key:
        return None
    bed = Bed.objects.select_related("ward").filter(ward__institution_id=referral.destination_institution_id, uuid=key).first()
    if bed is None:
        raise ValidationError({"bed": _("床位不属于接收机构。")})
    return bed


def _done(request: HttpRequest, referral: Referral, text: str) -> HttpResponse:
    messages.success(request, text)
    return redirect("referrals:detail", uuid=referral.uuid)


@login_required
@require_POST
def accept(request: HttpRequest, uuid: str) -> HttpResponse:
    """接收 (a down referral: 确认接收 with follow-up tasks), booking a slot and/or a bed at once."""
    actor, referral = _load(request, uuid)
    if not is_receiver(actor, referral):
        raise PermissionDenied(_("只有接收机构（接收科室或转诊中心调度员）可以执行此操作。"))
    form = AcceptForm(request.POST)
    formset = _follow_up_formset(referral, request.POST) if referral.direction == Direction.DOWN else None
    valid = form.is_valid() and (formset is None or formset.is_valid())
    if valid:
        specs = []
        if formset is not None:
            specs = [
                services.FollowUpSpec(
                    responsible=f.cleaned_data["responsible"],
                    due_date=f.cleaned_data["due_date"],
                    what_to_check=f.cleaned_data["what_to_check"],
                )
                for f in formset.forms
                if f.has_changed() and f.cleaned_data
            ]
        try:
            services.referral_accept(
                actor=actor,
                referral=referral,
                note=form.cleaned_data["note"],
                slot=_lookup_slot(actor, referral, form.cleaned_data["slot"]),
                bed=_lookup_bed(referral, form.cleaned_data["bed"]),
                bed_hours=form.cleaned_data["bed_hours"] or 24,
                instructions=form.cleaned_data["instructions"],
                follow_ups=specs,
            )
        except ValidationError as exc:
            _add_errors(form, exc)
        else:
            return _done(request, referral, _("已接收转诊单 %(number)s。") % {"number": referral.number})
    return _detail(request, referral, status=400, accept_form=form, follow_up_formset=formset, error_form=form)


@login_required
@require_POST
def schedule(request: HttpRequest, uuid: str) -> HttpResponse:
    """预约 (or re-book) the slot or bed of an accepted referral."""
    actor, referral = _load(request, uuid)
    if not is_receiver(actor, referral):
        raise PermissionDenied(_("只有接收机构（接收科室或转诊中心调度员）可以执行此操作。"))
    form = AcceptForm(request.POST)
    if form.is_valid():
        try:
            services.referral_schedule(
                actor=actor,
                referral=referral,
                slot=_lookup_slot(actor, referral, form.cleaned_data["slot"]),
                bed=_lookup_bed(referral, form.cleaned_data["bed"]),
                bed_hours=form.cleaned_data["bed_hours"] or 24,
                instructions=form.cleaned_data["instructions"],
            )
        except ValidationError as exc:
            _add_errors(form, exc)
        else:
            return _done(request, referral, _("已预约。"))
    return _detail(request, referral, status=400, accept_form=form, error_form=form)


def _reason_step(request: HttpRequest, uuid: str, *, sender_side: bool) -> HttpResponse:
    actor, referral = _load(request, uuid)
    allowed = is_sender(actor, referral) if sender_side else is_receiver(actor, referral)
    if not allowed:
        raise PermissionDenied(
            _("只有转出机构可以执行此操作。") if sender_side else _("只有接收机构（接收科室或转诊中心调度员）可以执行此操作。")
        )
    form = ReasonForm(request.POST)
    if form.is_valid():
        step = services.referral_cancel if sender_side else services.referral_reject
        try:
            step(actor=actor, referral=referral, reason=form.cleaned_data["reason"])
        except ValidationError as exc:
            _add_errors(form, exc)
        else:
            return _done(request, referral, _("已撤销转诊单。") if sender_side else _("已拒绝转诊单。"))
    key = "cancel_form" if sender_side else "reject_form"
    return _detail(request, referral, status=400, error_form=form, **{key: form})


@login_required
@require_POST
def cancel(request: HttpRequest, uuid: str) -> HttpResponse:
    return _reason_step(request, uuid, sender_side=True)


@login_required
@require_POST
def reject(request: HttpRequest, uuid: str) -> HttpResponse:
    return _reason_step(request, uuid, sender_side=False)


@login_required
@require_POST
def arrive(request: HttpRequest, uuid: str) -> HttpResponse:
    actor, referral = _load(request, uuid)
    if not is_receiver(actor, referral):
        raise PermissionDenied(_("只有接收机构（接收科室或转诊中心调度员）可以执行此操作。"))
    try:
        services.referral_confirm_arrival(actor=actor, referral=referral)
    except ValidationError as exc:
        form = forms.Form({})
        form.is_valid()
        _add_errors(form, exc)
        return _detail(request, referral, status=400, error_form=form)
    return _done(request, referral, _("已确认患者到诊。"))


@login_required
@require_POST
def complete(request: HttpRequest, uuid: str) -> HttpResponse:
    actor, referral = _load(request, uuid)
    if not is_receiver(actor, referral):
        raise PermissionDenied(_("只有接收机构（接收科室或转诊中心调度员）可以执行此操作。"))
    form = CompleteForm(request.POST)
    if form.is_valid():
        try:
            services.referral_complete(actor=actor, referral=referral, result_summary=form.cleaned_data["result_summary"])
        except ValidationError as exc:
            _add_errors(form, exc)
        else:
            return _done(request, referral, _("转诊已完成，结果已回传转出机构。"))
    return _detail(request, referral, status=400, complete_form=form, error_form=form)


@login_required
@require_POST
def follow_up_add(request: HttpRequest, uuid: str) -> HttpResponse:
    actor, referral = _load(request, uuid)
    if not is_receiver(actor, referral):
        raise PermissionDenied(_("只有接收机构（接收科室或转诊中心调度员）可以执行此操作。"))
    form = FollowUpForm(request.POST, doctors=_doctors(referral), prefix="add")
    if form.is_valid():
        try:
            services.follow_up_add(actor=actor, referral=referral, spec=services.FollowUpSpec(**form.cleaned_data))
        except ValidationError as exc:
            _add_errors(form, exc)
        else:
            return _done(request, referral, _("已添加随访任务。"))
    return _detail(request, referral, status=400, follow_up_form=form, error_form=form)


@login_required
@require_GET
def pdf(request: HttpRequest, uuid: str) -> HttpResponse:
    """The printable 转诊单. It shows the patient's identity: the read is logged like a summary view."""
    actor = _actor(request)
    referral = access_referral(actor, uuid)
    patient = referral.patient
    grant = basis_grant(actor, patient)
    access_log_record(
        actor=actor, patients=[patient], action=AccessAction.VIEW_SUMMARY, grant_for=lambda p: grant, path=request.path
    )
    content = referral_pdf(referral)
    response = HttpResponse(content, content_type="application/pdf")
    response["Content-Disposition"] = f'inline; filename="referral-{referral.number}.pdf"'
    response["Cache-Control"] = "no-store"
    return response


# --- follow-up tasks ---------------------------------------------------------------------------------


@login_required
@require_GET
def follow_ups(request: HttpRequest) -> HttpResponse:
    """随访任务 of the acting doctor and institution, soonest first; overdue ones highlighted."""
    actor = _actor(request)
    _require_clinical(actor)
    status = request.GET.get("status", FollowUpStatus.OPEN)
    if status not in (FollowUpStatus.OPEN, FollowUpStatus.DONE):
        status = FollowUpStatus.OPEN
    tasks = selectors.follow_ups_for(actor, status=status)
    if status == FollowUpStatus.DONE:
        tasks = tasks.order_by("-done_at", "-id")
    mine = request.GET.get("mine") == "1"
    if mine:
        tasks = tasks.filter(responsible=actor.user)
    page = paginate(request, tasks)
    rows = list(page.object_list)
    patients_listed(actor, list({t.patient_id: t.patient for t in rows}.values()), path=request.get_full_path())
    context = {
        "page_obj": page,
        "tasks": rows,
        "status": status,
        "mine": mine,
        "today": timezone.localdate(),
        "done_form": FollowUpDoneForm(),
    }
    return render(request, "referrals/follow_ups.html", context)


@login_required
@require_POST
def follow_up_done(request: HttpRequest, uuid: str) -> HttpResponse:
    actor = _actor(request)
    task = access_follow_up(actor, uuid)
    form = FollowUpDoneForm(request.POST)
    if not form.is_valid():
        messages.error(request, " ".join(str(e) for errors in form.errors.values() for e in errors))
        return redirect("referrals:follow_ups")
    try:
        services.follow_up_done(actor=actor, task=task, result=form.cleaned_data["result"])
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, _("随访已完成：%(patient)s") % {"patient": task.patient.name})
    return redirect("referrals:follow_ups")
