"""The home page: a to-do inbox and the panels of the acting role."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from yilian.accounts.actors import Actor
from yilian.accounts.roles import Role
from yilian.notifications.models import Notification
from yilian.organizations.models import Consortium
from yilian.web import dashboard

INBOX_SIZE = 8

# Which panel each role's home page shows (templates/web/panels/<panel>.html).
PANEL_BY_ROLE: dict[str, str] = {
    Role.CLINICIAN: "clinical",
    Role.NURSE: "clinical",
    Role.VILLAGE_DOCTOR: "clinical",
    Role.REFERRAL_COORDINATOR: "coordinator",
    Role.CONSORTIUM_MANAGER: "consortium",
    Role.HR_OFFICER: "consortium",
    Role.QUALITY_OFFICER: "consortium",
    Role.PHARMACY_OFFICER: "consortium",
    Role.BUREAU_SUPERVISOR: "bureau",
    Role.PRIVACY_OFFICER: "privacy",
    Role.INSTITUTION_ADMIN: "institution",
    Role.SYSTEM_ADMIN: "system",
}


def panel_context(actor: Actor) -> dict[str, Any]:
    """The panel name and the data it draws, for the acting role."""
    if actor.role is None:
        return {"panel": "system" if actor.is_system_admin else "none", **_system(actor)}
    panel = PANEL_BY_ROLE.get(actor.role, "none")
    institution = actor.institution
    if panel == "clinical" and institution is not None:
        return {
            "panel": panel,
            "residents_held": dashboard.residents_held_count(institution),
            **dashboard.referral_counts(actor, institution),
        }
    if panel in {"coordinator", "institution"} and institution is not None:
        return {"panel": panel, "summary": dashboard.institution_summary(institution)}
    if panel == "consortium" and institution is not None:
        return {"panel": panel, "consortia": dashboard.consortium_summaries(dashboard.consortia_of(institution))}
    if panel == "bureau" and actor.authority is not None:
        summaries = dashboard.consortium_summaries(Consortium.objects.filter(authority=actor.authority), with_centres=False)
        return {"panel": panel, "consortia": summaries, "totals": dashboard.totals(summaries)}
    if panel == "privacy":
        return {"panel": panel, "queue": dashboard.break_glass_queue(actor)}
    if panel == "system":
        return {"panel": panel, **_system(actor)}
    return {"panel": "none"}


def _system(actor: Actor) -> dict[str, Any]:
    return {"counts": dashboard.system_counts()} if actor.is_system_admin else {}


@login_required
def home(request: HttpRequest) -> HttpResponse:
    actor: Actor = request.actor  # type: ignore[attr-defined]
    inbox = list(Notification.objects.filter(recipient_id=request.user.pk).unread()[:INBOX_SIZE])
    return render(request, "web/home.html", {"inbox": inbox, **panel_context(actor)})
