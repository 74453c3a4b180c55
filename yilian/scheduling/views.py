"""Scheduling pages: the schedules of an institution with their pool use, one schedule's slots,
slot search, booking for a patient (through the patient gatekeeper), the booking list with cancel
and no-show, and the ward board.

Schedules, slots and beds carry no identities; bookings do, and each list shown is written to the
access log (`patients_listed`).
"""

from __future__ import annotations

import datetime as dt

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
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
from yilian.scheduling.access import access_booking, access_schedule, bookings_visible_to, schedule_scope_filter
from yilian.scheduling.forms import BookForm, CancelForm, SlotSearchForm
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
    context = {"schedule": schedule, "form": form, "page_obj": page, "slots": list(page.object_list)}
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
    return render(request, "scheduling/ward_board.html", {"boards": boards, "place": place, "institutions": institutions})
