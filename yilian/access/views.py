"""Privacy pages: break-glass review and the access log, for privacy officers."""

from __future__ import annotations

import datetime as dt

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.db.models import F, Q
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from yilian.access.forms import AccessLogFilterForm, BreakGlassReviewForm
from yilian.access.models import AccessGrant, AccessLog
from yilian.access.services import access_log_for_reviewer, break_glass_review, break_glass_review_filter
from yilian.accounts.actors import Actor
from yilian.accounts.roles import Permission
from yilian.web.http import safe_next
from yilian.web.pagination import paginate

REVIEW_FILTERS = ("pending", "all")


def _actor(request: HttpRequest) -> Actor:
    return request.actor  # type: ignore[attr-defined, no-any-return]


def _reviewable(actor: Actor, uuid: str) -> AccessGrant:
    """One break-glass grant the actor may review; anything else is "not found"."""
    try:
        return (
            AccessGrant.objects.filter(break_glass_review_filter(actor))
            .select_related("patient", "grantee_user", "acting_institution", "reviewed_by")
            .get(uuid=uuid)
        )
    except (ObjectDoesNotExist, ValidationError, ValueError) as exc:
        raise Http404(_("未找到，或您无权访问。")) from exc


@login_required
@require_GET
def review_list(request: HttpRequest) -> HttpResponse:
    actor = _actor(request)
    actor.require(Permission.ACCESS_REVIEW)
    show = request.GET.get("show", "pending")
    if show not in REVIEW_FILTERS:
        show = "pending"
    grants = AccessGrant.objects.filter(break_glass_review_filter(actor))
    pending_count = grants.filter(reviewed_at__isnull=True).count()
    if show == "pending":
        grants = grants.filter(reviewed_at__isnull=True)
    grants = grants.select_related("patient", "grantee_user", "acting_institution", "reviewed_by").order_by(
        F("reviewed_at").desc(nulls_first=True), "starts_at", "id"
    )
    page = paginate(request, grants)
    return render(
        request,
        "access/review.html",
        {"page_obj": page, "show": show, "pending_count": pending_count, "form": BreakGlassReviewForm()},
    )


@login_required
@require_POST
def review_decide(request: HttpRequest, uuid: str) -> HttpResponse:
    actor = _actor(request)
    actor.require(Permission.ACCESS_REVIEW)
    grant = _reviewable(actor, uuid)
    form = BreakGlassReviewForm(request.POST)
    if form.is_valid():
        try:
            break_glass_review(actor=actor, grant=grant, outcome=form.cleaned_data["outcome"], note=form.cleaned_data["note"])
        except ValidationError as exc:
            form.add_error(None, exc)
    if request.htmx:  # type: ignore[attr-defined]
        # htmx swaps only 2xx answers: the row comes back with its verdict, or with the form's errors.
        return render(request, "access/_review_row.html", {"grant": _reviewable(actor, uuid), "form": form})
    if form.errors:
        messages.error(request, " ".join(str(e) for errors in form.errors.values() for e in errors))
    else:
        messages.success(request, _("已记录审核结论。"))
    return redirect(safe_next(request, reverse("access:review")))


def _day_start(day: dt.date) -> dt.datetime:
    return timezone.make_aware(dt.datetime.combine(day, dt.time.min))


@login_required
@require_GET
def access_log(request: HttpRequest) -> HttpResponse:
    actor = _actor(request)
    actor.require(Permission.ACCESS_REVIEW)
    form = AccessLogFilterForm(request.GET or None)
    rows = AccessLog.objects.filter(access_log_for_reviewer(actor))
    if form.is_bound and form.is_valid():
        data = form.cleaned_data
        if data["id_number"]:
            rows = rows.filter(patient__id_number=data["id_number"])
        if data["user"]:
            rows = rows.filter(Q(actor_name__contains=data["user"]) | Q(user__username=data["user"]))
        if data["date_from"]:
            rows = rows.filter(at__gte=_day_start(data["date_from"]))
        if data["date_to"]:
            rows = rows.filter(at__lt=_day_start(data["date_to"] + dt.timedelta(days=1)))
    elif form.is_bound:
        rows = rows.none()
    rows = rows.select_related("patient", "acting_institution", "grant").order_by("-at", "-id")
    page = paginate(request, rows)
    return render(request, "access/log.html", {"page_obj": page, "form": form})
