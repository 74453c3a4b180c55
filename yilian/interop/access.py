"""Gatekeepers for the inbound message store and import jobs: `interop.manage` at an institution
the actor manages (its own and its village clinics; a consortium manager: every member of the
consortia its institution leads). Missing and forbidden look the same (404)."""

from __future__ import annotations

from uuid import UUID

from django.db.models import Q
from django.http import Http404
from django.utils.translation import gettext as _

from yilian.accounts.actors import Actor
from yilian.accounts.roles import Permission
from yilian.interop.models import ImportJob, InboundMessage
from yilian.organizations.access import managed_institution_filter
from yilian.organizations.models import Institution


def interop_scope_filter(actor: Actor, prefix: str = "institution__") -> Q:
    """Q over rows with an institution: those whose inbound data the actor may manage."""
    return managed_institution_filter(actor, Permission.INTEROP_MANAGE, prefix=prefix)


def interop_institutions(actor: Actor) -> list[Institution]:
    return list(Institution.objects.filter(interop_scope_filter(actor, prefix=""), is_active=True).order_by("name"))


def access_message(actor: Actor, key: UUID | str) -> InboundMessage:
    found = (
        InboundMessage.objects.select_related("institution", "api_key", "edited_by", "import_job")
        .filter(interop_scope_filter(actor), uuid=key)
        .first()
    )
    if found is None:
        raise Http404(_("未找到，或您无权访问。"))
    return found


def access_import_job(actor: Actor, key: UUID | str) -> ImportJob:
    found = ImportJob.objects.select_related("institution", "created_by").filter(interop_scope_filter(actor), uuid=key).first()
    if found is None:
        raise Http404(_("未找到，或您无权访问。"))
    return found
