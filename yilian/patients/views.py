"""Patient pages: the resident list, one resident, break-glass access, and the review queue of
the master patient index (candidates side by side, merge, unmerge).

Every patient is loaded through yilian.patients.access, which scopes and logs the read.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods

from yilian.access.models import AccessAction, AccessLog
from yilian.access.services import break_glass_find_patient, break_glass_open
from yilian.accounts.actors import Actor
from yilian.accounts.roles import Permission
from yilian.patients.access import (
    access_merge,
    access_patient,
    access_review,
    identities_reviewed,
    merge_scope_filter,
    patients_listed,
    review_scope_filter,
)
from yilian.patients.forms import BreakGlassForm, PatientSearchForm, ReviewDecisionForm, UnmergeForm
from yilian.patients.models import MatchReview, Patient, PatientMerge, ReviewStatus, SourceIdentity
from yilian.patients.selectors import (
    merge_history,
    merge_patients,
    patient_search,
    review_queue,
    review_queue_patients,
    review_sides,
)
from yilian.patients.services import patient_unmerge, review_decide
from yilian.web.pagination import paginate

RECENT_ACCESS_ROWS = 20
IDENTITY_ROWS = 50


def _actor(request: HttpRequest) -> Actor:
    return request.actor  # type: ignore[attr-defined, no-any-return]


@login_required
@require_GET
def patient_list(request: HttpRequest) -> HttpResponse:
    actor = _actor(request)
    actor.require(Permission.PATIENT_VIEW)
    form = PatientSearchForm(request.GET)
    query = form.cleaned_data["q"] if form.is_valid() else ""
    patients = patient_search(Patient.objects.visible_to(actor), query).select_related("home_institution", "grid").order_by("-id")
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
    grant = patient.grant  # type: ignore[attr-defined]
    recent_access = AccessLog.objects.filter(patient=patient).select_related("acting_institution")[:RECENT_ACCESS_ROWS]
    identities = SourceIdentity.objects.filter(patient=patient).select_related("institution").order_by("id")[:IDENTITY_ROWS]
    context = {"patient": patient, "grant": grant, "recent_access": recent_access, "identities": identities}
    return render(request, "patients/detail.html", context)


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


# --- the master patient index review queue (MPI_REVIEW; scope in patients/access.py) --------------


@login_required
@require_GET
def review_list(request: HttpRequest) -> HttpResponse:
    actor = _actor(request)
    actor.require(Permission.MPI_REVIEW)
    show = "open" if request.GET.get("show", "open") == "open" else "all"
    reviews = MatchReview.objects.filter(review_scope_filter(actor))
    page = paginate(request, review_queue(reviews, status=show))
    rows = list(page.object_list)
    identities_reviewed(actor, review_queue_patients(rows), action=AccessAction.LIST, path=request.get_full_path())
    open_count = reviews.filter(status=ReviewStatus.OPEN).count()
    return render(
        request, "patients/review_list.html", {"page_obj": page, "reviews": rows, "show": show, "open_count": open_count}
    )


@login_required
@require_http_methods(["GET", "POST"])
def review_detail(request: HttpRequest, uuid: str) -> HttpResponse:
    actor = _actor(request)
    actor.require(Permission.MPI_REVIEW)
    review = access_review(actor, uuid)
    sides = review_sides(review, reviews=MatchReview.objects.filter(review_scope_filter(actor)))
    form = ReviewDecisionForm(request.POST or None, alternatives=sides.alternatives)
    if request.method == "POST" and form.is_valid():
        try:
            review_decide(
                actor=actor,
                review=review,
                decision=form.cleaned_data["decision"],
                reason=form.cleaned_data["reason"],
                other=form.cleaned_data["other_review"],
            )
        except ValidationError as exc:
            for message in exc.messages:
                form.add_error(None, message)
        else:
            messages.success(request, _("审核结论已保存。"))
            return redirect("patients:review_list")
    identities_reviewed(actor, sides.patients, path=request.path)
    return render(
        request,
        "patients/review_detail.html",
        {
            "review": review,
            "form": form,
            "rows": sides.rows,
            "incoming": sides.incoming,
            "candidate": sides.candidate,
            "incoming_identities": sides.incoming_identities,
            "candidate_identities": sides.candidate_identities,
            "alternatives": sides.alternatives,
        },
    )


@login_required
@require_GET
def merge_list(request: HttpRequest) -> HttpResponse:
    actor = _actor(request)
    actor.require(Permission.MPI_REVIEW)
    page = paginate(request, merge_history(PatientMerge.objects.filter(merge_scope_filter(actor))))
    rows = list(page.object_list)
    identities_reviewed(actor, merge_patients(rows), action=AccessAction.LIST, path=request.get_full_path())
    return render(request, "patients/merge_list.html", {"page_obj": page, "merges": rows, "form": UnmergeForm()})


@login_required
@require_http_methods(["POST"])
def merge_undo(request: HttpRequest, uuid: str) -> HttpResponse:
    actor = _actor(request)
    actor.require(Permission.MPI_REVIEW)
    merge = access_merge(actor, uuid)
    form = UnmergeForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("请勾选确认后再撤销合并。"))
        return redirect("patients:merge_list")
    try:
        patient_unmerge(actor=actor, merge=merge)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, _("已撤销合并，源身份已恢复原来的关联。"))
    return redirect("patients:merge_list")
