"""The gatekeeper of the patient 360 view (患者360视图).

A whole record is read only through `access_patient_record`: the patient gatekeeper
(`patients.access.access_patient`) lets the actor in — holder of the record, or an active grant —
and writes the access-log row (action 查看健康档案). A grant limited to the summary (基本信息) does
not open the record: that is a 404 like any other refusal, decided before any log row is written.
When both a summary and a record grant exist, the record grant is the one used and logged.
"""

from __future__ import annotations

from uuid import UUID

from django.http import Http404
from django.utils.translation import gettext as _

from yilian.access.models import AccessAction, GrantScope
from yilian.accounts.actors import Actor
from yilian.accounts.roles import Permission
from yilian.patients.access import access_patient
from yilian.patients.models import Patient


def access_patient_record(actor: Actor, key: UUID | str, *, path: str = "") -> Patient:
    """Load one patient whose whole record `actor` may read, logging the read; otherwise 404."""
    if not actor.can(Permission.PATIENT_VIEW):
        raise Http404(_("未找到，或您无权访问。"))
    return access_patient(actor, key, action=AccessAction.VIEW_RECORD, path=path, scope=GrantScope.RECORD)
