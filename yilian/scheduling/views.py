"""Scheduling pages: the schedules of an institution with their pool use, one schedule's slots,
slot search, booking for a patient (through the patient gatekeeper), the booking list with cancel
and no-show, the ward board, and the set-up of schedules, rules, quotas, slot generation, leave,
wards and beds for those with SCHEDULE_MANAGE.

Schedules, slots and beds carry no identities; bookings do, and each list shown is written to the
access log (`patients_listed`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from yilian.accounts.actors import Actor
from yilian.accounts.roles import Permission
from yilian.organizations.access import access_institution, can_manage_institution
from yilian.organizations.models import Institution
from yilian.patients.access import access_patient, patients_listed
from yilian.scheduling import services
from yilian.scheduling.access import access_bed, access_booking, access_schedule, bookings_visible_to, schedule_scope_filter
from yilian.scheduling.forms import (
    BookForm,
    CancelForm,
    GenerateForm,
    LeaveForm,
    QuotaForm,
    ScheduleForm,
    SlotSearchForm,
    TemplateForm,
    WardForm,
)
from yilian.scheduling.models import BookingStatus, Schedule, Slot, Ward
from yilian.scheduling.selectors import schedules_with_use, slot_search, slots_with_use, ward_boards
from yilian.web.pagination import paginate

USE_DAYS = 14


def _actor(request: HttpRequest) -> Actor:
    return request.actor  # type: ignore[attr-defined, no-any-return]


def _place(request: HttpRequest, actor: Actor) -> Institution | None:
    """The institution a page is about: ?institution=<uuid> among those visible, else the acting one."""
    key = request.GET.get("institution")
    if key:
        return access_institution(actor, key)
    return actor.institution


def _institutions_with_schedules(actor: Actor):  # type: ignore[no-untyped-def]
    return Institution.objects.visible_to(actor).filter(schedules__is_active=True).distinct().order_by("name")


def _institution_choices(actor: Actor, place: Institution | None) -> list[Institution]:
    """Institutions with schedules, and the one shown even when it has none, so the picker names it."""
    choices = list(_institutions_with_schedules(actor))
    if place is not None and place not in choices:
        choices.insert(0, place)
    return choices


@login_required
@require_GET
def schedule_list(request: HttpRequest) -> HttpResponse:
    actor = _actor(request)
    actor.require(Permission.STRUCTURE_VIEW)
    place = _place(request, actor)
    now = timezone.now()
    schedules = Schedule.objects.filter(schedule_scope_filter(actor), is_active=True)
    schedules = schedules.filter(institution=place) if place is not None else schedules.none()
    with_use = schedules_with_use(schedules, date_from=now, date_to=now + dt.timedelta(days=USE_DAYS))
    page = paginate(request, with_use.order_by("kind", "name"))
    context = {
        "page_obj": page,
        "schedules": list(page.object_list),
        "place": place,
        "institutions": _institution_choices(actor, place),
        "days": USE_DAYS,
        "can_manage": place is not None and can_manage_institution(actor, place, Permission.SCHEDULE_MANAGE),
    }
    return render(request, "scheduling/schedule_list.html", context)


@login_required
@require_GET
def schedule_detail(request: HttpRequest, uuid: str) -> HttpResponse:
    actor = _actor(request)
    schedule = access_schedule(actor, uuid)
    form = SlotSearchForm(request.GET)
    data = form.cleaned_data if form.is_valid() else SlotSearchForm.clean_defaults()
    slots = slots_with_use(
        Slot.objects.filter(schedule=schedule, start__date__gte=data["date_from"], start__date__lte=data["date_to"])
    ).order_by("start")
    page = paginate(request, slots, per_page=40)
    context: dict[str, object] = {"schedule": schedule, "form": form, "page_obj": page, "slots": list(page.object_list)}
    context["can_manage"] = can_manage_institution(actor, schedule.institution, Permission.SCHEDULE_MANAGE)
    context["templates"] = list(schedule.templates.order_by("valid_from", "start_time"))
    context["quotas"] = list(schedule.quotas.select_related("institution", "consortium").order_by("kind", "pk"))
    if context["can_manage"]:
        context.update(_setup_context(schedule))
    return render(request, "scheduling/schedule_detail.html", context)


def _search(request: HttpRequest, actor: Actor) -> tuple[SlotSearchForm, list[Slot], object]:
    form = SlotSearchForm(request.GET or None, institutions=_institutions_with_schedules(actor))
    data = form.cleaned_data if form.is_valid() else SlotSearchForm.clean_defaults()
    institution = data.get("institution")
    slots = slot_search(
        actor,
        institution_id=institution.pk if institution else None,
        capability=data.get("capability") or "",
        date_from=data["date_from"],
        date_to=data["date_to"],
        pool=data.get("pool") or "",
        only_free=True,
    )
    page = paginate(request, slots)
    return form, list(page.object_list), page


@login_required
@require_GET
def slot_list(request: HttpRequest) -> HttpResponse:
    actor = _actor(request)
    actor.require(Permission.STRUCTURE_VIEW)
    form, slots, page = _search(request, actor)
    context = {"form": form, "slots": slots, "page_obj": page, "patient": None}
    template = "scheduling/_slot_table.html" if request.htmx else "scheduling/slot_list.html"  # type: ignore[attr-defined]
    response = render(request, template, context)
    patch_vary_headers(response, ["HX-Request"])
    return response


@login_required
@require_http_methods(["GET", "POST"])
def patient_book(request: HttpRequest, uuid: str) -> HttpResponse:
    """Book a slot for one patient: the patient comes through the gatekeeper (and the read is logged)."""
    actor = _actor(request)
    actor.require(Permission.PATIENT_VIEW)
    patient = access_patient(actor, uuid, path=request.path)
    if request.method == "POST":
        book = BookForm(request.POST)
        if not book.is_valid():
            messages.error(request, " ".join(str(e) for errors in book.errors.values() for e in errors))
            return redirect("scheduling:patient_book", uuid=patient.uuid)
        slot = (
            Slot.objects.select_related("schedule__institution")
            .filter(schedule_scope_filter(actor, prefix="schedule__"), uuid=book.cleaned_data["slot"])
            .first()
        )
        if slot is None:
            messages.error(request, _("号源不存在，或您无权查看。"))
            return redirect("scheduling:patient_book", uuid=patient.uuid)
        try:
            booking = services.slot_book(
                actor=actor, slot=slot, patient=patient, pool=book.cleaned_data["pool"], note=book.cleaned_data["note"]
            )
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
            return redirect(f"{request.path}?{request.GET.urlencode()}" if request.GET else request.path)
        messages.success(
            request,
            _("已为 %(patient)s 预约 %(slot)s。") % {"patient": patient.name, "slot": booking.slot},
        )
        return redirect("scheduling:booking_list")
    form, slots, page = _search(request, actor)
    context = {"form": form, "slots": slots, "page_obj": page, "patient": patient}
    template = "scheduling/_slot_table.html" if request.htmx else "scheduling/patient_book.html"  # type: ignore[attr-defined]
    response = render(request, template, context)
    patch_vary_headers(response, ["HX-Request"])
    return response


@login_required
@require_GET
def booking_list(request: HttpRequest) -> HttpResponse:
    actor = _actor(request)
    actor.require(Permission.PATIENT_VIEW)
    side = request.GET.get("side", "made")
    bookings = bookings_visible_to(actor)
    if side == "received":
        bookings = bookings.filter(slot__schedule__institution=actor.institution)
    else:
        side = "made"
        bookings = bookings.filter(for_institution=actor.institution)
    bookings = bookings.select_related(
        "slot__schedule__institution", "pool__quota__institution", "pool__quota__consortium", "patient", "for_institution"
    ).order_by("-created_at", "-id")
    page = paginate(request, bookings)
    rows = list(page.object_list)
    patients_listed(actor, list({b.patient_id: b.patient for b in rows}.values()), path=request.get_full_path())
    now = timezone.now()
    context = {
        "page_obj": page,
        "bookings": rows,
        "side": side,
        "now": now,
        "booked": BookingStatus.BOOKED,
        "cancel_form": CancelForm(),
    }
    return render(request, "scheduling/booking_list.html", context)


@login_required
@require_POST
def booking_cancel(request: HttpRequest, uuid: str) -> HttpResponse:
    actor = _actor(request)
    booking = access_booking(actor, uuid)
    form = CancelForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("取消原因最多 200 个字。"))
        return redirect("scheduling:booking_list")
    try:
        services.booking_cancel(actor=actor, booking=booking, reason=form.cleaned_data["reason"])
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, _("预约已取消，号源已退回号池。"))
    return redirect("scheduling:booking_list")


@login_required
@require_POST
def booking_no_show(request: HttpRequest, uuid: str) -> HttpResponse:
    actor = _actor(request)
    booking = access_booking(actor, uuid)
    try:
        services.booking_mark_no_show(actor=actor, booking=booking)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, _("已标记爽约，号源已退回号池。"))
    return redirect(f"{redirect('scheduling:booking_list').url}?side=received")


@login_required
@require_GET
def ward_board(request: HttpRequest) -> HttpResponse:
    actor = _actor(request)
    actor.require(Permission.STRUCTURE_VIEW)
    place = _place(request, actor)
    wards = Ward.objects.filter(schedule_scope_filter(actor), is_active=True)
    wards = wards.filter(institution=place) if place is not None else wards.none()
    boards = ward_boards(wards.order_by("code"))
    institutions = Institution.objects.visible_to(actor).filter(wards__is_active=True).distinct().order_by("name")
    context = {
        "boards": boards,
        "place": place,
        "institutions": institutions,
        "can_manage": place is not None and can_manage_institution(actor, place, Permission.SCHEDULE_MANAGE),
        "works_here": place is not None and actor.institution is not None and actor.institution.pk == place.pk,
    }
    return render(request, "scheduling/ward_board.html", context)


# --- set-up (SCHEDULE_MANAGE): schedules, rules, quotas, generation, leave, wards, beds -------------


def _errors(exc: ValidationError) -> str:
    return " ".join(exc.messages)


def _form_errors(form: forms.Form) -> str:
    return " ".join(
        f"{form.fields[name].label if name in form.fields else ''}：{' '.join(str(e) for e in errors)}".lstrip("：")
        for name, errors in form.errors.items()
    )


def _managed_place(request: HttpRequest, actor: Actor) -> Institution:
    place = _place(request, actor)
    if place is None or not can_manage_institution(actor, place, Permission.SCHEDULE_MANAGE):
        raise PermissionDenied(_("您无权管理该机构的号源与床位。"))
    return place


@login_required
@require_http_methods(["GET", "POST"])
def schedule_new(request: HttpRequest) -> HttpResponse:
    """新建排班 at an institution the actor manages (?institution=<uuid>, default the acting one)."""
    actor = _actor(request)
    place = _managed_place(request, actor)
    form = ScheduleForm(request.POST or None, institution=place)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            schedule = services.schedule_create(
                actor=actor,
                institution=place,
                kind=data["kind"],
                name=data["name"],
                department=data["department"],
                practitioner=data["practitioner"],
                capability=data["capability"] or "",
                location=data["location"],
            )
        except ValidationError as exc:
            messages.error(request, _errors(exc))
        else:
            messages.success(request, _("排班已创建：请添加出诊规则，再生成号源。"))
            return redirect("scheduling:schedule_detail", uuid=schedule.uuid)
    return render(request, "scheduling/schedule_new.html", {"form": form, "place": place})


def _setup_context(schedule: Schedule) -> dict[str, object]:
    today = timezone.localdate()
    return {
        "templates": list(schedule.templates.order_by("valid_from", "start_time")),
        "quotas": list(schedule.quotas.select_related("institution", "consortium").order_by("kind", "pk")),
        "template_form": TemplateForm(initial={"valid_from": today, "start_time": "08:00", "end_time": "12:00"}),
        "quota_form": QuotaForm(institution=schedule.institution),
        "generate_form": GenerateForm(initial={"start_date": today, "end_date": today + dt.timedelta(days=27)}),
        "leave_form": LeaveForm() if schedule.practitioner_id else None,
    }


def _schedule_step(
    request: HttpRequest,
    uuid: str,
    form_class: type[forms.Form],
    act: Callable[[Actor, Schedule, dict[str, Any]], str],
    form_options: Callable[[Schedule], dict[str, Any]] = lambda schedule: {},
) -> HttpResponse:
    """One set-up step posted from a schedule's page (a managed schedule only): the form checked,
    `act` calls the service with its data and says what was done; a refused form or service step is
    shown as the error. Back to the schedule's page either way."""
    actor = _actor(request)
    schedule = access_schedule(actor, uuid, for_write=True)
    form = form_class(request.POST, **form_options(schedule))
    if not form.is_valid():
        messages.error(request, _form_errors(form))
    else:
        try:
            done = act(actor, schedule, form.cleaned_data)
        except ValidationError as exc:
            messages.error(request, _errors(exc))
        else:
            messages.success(request, done)
    return redirect("scheduling:schedule_detail", uuid=schedule.uuid)


@login_required
@require_POST
def schedule_template_add(request: HttpRequest, uuid: str) -> HttpResponse:
    def act(actor: Actor, schedule: Schedule, data: dict[str, Any]) -> str:
        services.slot_template_add(
            actor=actor,
            schedule=schedule,
            weekdays="".join(data["weekdays"]),
            start_time=data["start_time"],
            end_time=data["end_time"],
            slot_minutes=data["slot_minutes"],
            capacity=data["capacity"],
            valid_from=data["valid_from"],
            valid_until=data["valid_until"],
            on_public_holidays=data["on_public_holidays"],
            on_makeup_workdays=data["on_makeup_workdays"],
        )
        return _("出诊规则已添加。")

    return _schedule_step(request, uuid, TemplateForm, act)


@login_required
@require_POST
def schedule_quota_add(request: HttpRequest, uuid: str) -> HttpResponse:
    def act(actor: Actor, schedule: Schedule, data: dict[str, Any]) -> str:
        services.quota_set(
            actor=actor,
            schedule=schedule,
            kind=data["kind"],
            units_per_slot=data["units_per_slot"],
            institution=data["institution"],
            consortium=data["consortium"],
            release_hours_before=data["release_hours_before"],
        )
        return _("预留号源已设置：之后生成的号源按此预留。")

    return _schedule_step(request, uuid, QuotaForm, act, lambda schedule: {"institution": schedule.institution})


@login_required
@require_POST
def schedule_generate(request: HttpRequest, uuid: str) -> HttpResponse:
    def act(actor: Actor, schedule: Schedule, data: dict[str, Any]) -> str:
        result = services.slots_generate(schedule=schedule, start_date=data["start_date"], end_date=data["end_date"])
        return _("已生成号源 %(created)d 个（其中因停诊关闭 %(closed)d 个）；已有的号源保持不变。") % {
            "created": result.created,
            "closed": result.closed_by_leave,
        }

    return _schedule_step(request, uuid, GenerateForm, act)


@login_required
@require_POST
def schedule_leave(request: HttpRequest, uuid: str) -> HttpResponse:
    def act(actor: Actor, schedule: Schedule, data: dict[str, Any]) -> str:
        if schedule.practitioner is None:
            raise ValidationError(_("只有专家门诊可以登记医生停诊。"))
        services.leave_record(
            actor=actor,
            practitioner=schedule.practitioner,
            starts_at=data["starts_at"],
            ends_at=data["ends_at"],
            reason=data["reason"],
        )
        return _("停诊已登记：期间的号源已关闭，已预约的居民已通知。")

    return _schedule_step(request, uuid, LeaveForm, act)


@login_required
@require_http_methods(["GET", "POST"])
def ward_new(request: HttpRequest) -> HttpResponse:
    actor = _actor(request)
    place = _managed_place(request, actor)
    form = WardForm(request.POST or None, institution=place)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            services.ward_create(
                actor=actor,
                institution=place,
                name=data["name"],
                code=data["code"],
                beds=data["beds"],
                department=data["department"],
            )
        except ValidationError as exc:
            messages.error(request, _errors(exc))
        else:
            messages.success(request, _("病区已创建。"))
            return redirect(f"{reverse('scheduling:ward_board')}?institution={place.uuid}")
    return render(request, "scheduling/ward_new.html", {"form": form, "place": place})


@login_required
@require_POST
def bed_state(request: HttpRequest, uuid: str) -> HttpResponse:
    """Close or reopen a bed (SCHEDULE_MANAGE), or discharge the patient of an occupied one (the ward's staff)."""
    actor = _actor(request)
    action = request.POST.get("action", "")
    bed = access_bed(actor, uuid, for_write=action in ("close", "open"))
    try:
        if action in ("close", "open"):
            services.bed_set_closed(actor=actor, bed=bed, closed=action == "close")
        elif action == "discharge":
            services.bed_discharge(actor=actor, bed=bed)
        else:
            raise ValidationError(_("未知操作。"))
    except ValidationError as exc:
        messages.error(request, _errors(exc))
    else:
        messages.success(request, _("床位 %(bed)s 状态已更新。") % {"bed": bed.code})
    return redirect(f"{reverse('scheduling:ward_board')}?institution={bed.ward.institution.uuid}")
