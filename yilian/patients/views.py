"""Patient pages: the resident list, one resident, and break-glass access.

Every patient is loaded through yilian.patients.access, which scopes and logs the read.
"""

from __future__ import annotations

import re

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods

from yilian.access.models import AccessLog
from yilian.access.services import break_glass_find_patient, break_glass_open
from yilian.accounts.actors import Actor
from yilian.accounts.roles import Permission
from yilian.patients.access import access_patient, basis_grant, patients_listed
from yilian.patients.forms import BreakGlassForm, PatientSearchForm
from yilian.patients.models import Patient
from yilian.web.pagination import paginate

RECENT_ACCESS_ROWS = 20
# An ID-number or phone search: digits (and the X check character), at least four.
NUMBER_QUERY = re.compile(r"^[0-9X]{4,30}$")


def search(queryset: QuerySet[Patient], query: str) -> QuerySet[Patient]:
    """Filter by name (contains), or by ID number / phone (prefix, index-friendly) for numbers."""
    query = query.strip()
    if not query:
        return queryset
    number = "".join(query.split()).upper()
    if NUMBER_QUERY.match(number):
        return queryset.filter(Q(id_number__startswith=number) | Q(phone__startswith=number))
    return queryset.filter(name__contains=query)


def _actor(request: HttpRequest) -> Actor:
    return request.actor  # type: ignore[attr-defined, no-any-return]


@login_required
@require_GET
def patient_list(request: HttpRequest) -> HttpResponse:
    actor = _actor(request)
    actor.require(Permission.PATIENT_VIEW)
    form = PatientSearchForm(request.GET)
    query = form.cleaned_data["q"] if form.is_valid() else ""
    patients = search(Patient.objects.visible_to(actor), query).select_related("home_institution", "grid").order_by("-id")
    page = paginate(request, patients)
    rows = list(page.object_list)
    patients_listed(actor, rows, path=request.get_full_path())
    institution = actor.institution
    held_here = {
        p.pk
        for p in rows
        if institution is not None and (p.home_institution_id == institution.pk or p.home_institution.parent_id == institution.pk)
    }
    context = {"page_obj": page, "patients": rows, "held_here": held_here, "form": form, "query": query}
    template = "patients/_table.html" if request.htmx else "patients/list.html"  # type: ignore[attr-defined]
    response = render(request, template, context)
    patch_vary_headers(response, ["HX-Request"])  # the same URL answers a page or a table
    return response


@login_required
@require_GET
def patient_detail(request: HttpRequest, uuid: str) -> HttpResponse:
    actor = _actor(request)
    patient = access_patient(actor, uuid, path=request.get_full_path())
    grant = basis_grant(actor, patient)
    recent_access = AccessLog.objects.filter(patient=patient).select_related("acting_institution")[:RECENT_ACCESS_ROWS]
    return render(request, "patients/detail.html", {"patient": patient, "grant": grant, "recent_access": recent_access})


@login_required
@require_http_methods(["GET", "POST"])
def break_glass(request: HttpRequest) -> HttpResponse:
    actor = _actor(request)
    actor.require(Permission.PATIENT_BREAK_GLASS)
    form = BreakGlassForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        patient = break_glass_find_patient(actor=actor, id_number=form.cleaned_data["id_number"])
        if patient is None:
            # The same answer for "no such person" and "held outside your consortia".
            form.add_error("id_number", _("未找到可紧急访问的居民档案，请核对证件号码。"))
        elif Patient.objects.visible_to(actor).filter(pk=patient.pk).exists():
            messages.info(request, _("您已有权查看该居民档案，无需紧急授权。"))
            return redirect("patients:detail", uuid=patient.uuid)
        else:
            try:
                grant = break_glass_open(
                    actor=actor, patient=patient, reason=form.cleaned_data["reason"], hours=form.cleaned_data["hours"]
                )
            except ValidationError as exc:
                errors = exc.message_dict if hasattr(exc, "error_dict") else {"__all__": exc.messages}
                for field, field_errors in errors.items():
                    for error in field_errors:
                        form.add_error(field if field in form.fields else None, error)
            else:
                messages.warning(
                    request,
                    _("已启用紧急授权，有效期至 %(time)s。本次访问已记录，并将由隐私保护专员审核。")
                    % {"time": timezone.localtime(grant.expires_at).strftime("%Y-%m-%d %H:%M")},
                )
                return redirect("patients:detail", uuid=patient.uuid)
    return render(request, "patients/break_glass.html", {"form": form, "max_hours": settings.BREAK_GLASS_MAX_HOURS})
