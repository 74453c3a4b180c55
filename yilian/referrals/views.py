"""Referral pages. Every page loads its referral through the gatekeeper (`access_referral`) and writes
the patient it shows to the access log; steps go to `services` and only translate their errors."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from yilian.accounts.actors import Actor
from yilian.patients.access import patients_listed
from yilian.referrals.access import access_referral, is_receiver, is_sender


def _actor(request: HttpRequest) -> Actor:
    return request.actor  # type: ignore[attr-defined, no-any-return]


@login_required
@require_GET
def detail(request: HttpRequest, uuid: str) -> HttpResponse:
    actor = _actor(request)
    referral = access_referral(actor, uuid)
    patients_listed(actor, [referral.patient], path=request.path)
    context = {
        "referral": referral,
        "events": list(referral.events.select_related("user", "institution")),
        "follow_ups": list(referral.follow_ups.select_related("responsible")),
        "is_sender": is_sender(actor, referral),
        "is_receiver": is_receiver(actor, referral),
    }
    return render(request, "referrals/detail.html", context)
