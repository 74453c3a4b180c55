from __future__ import annotations

import datetime as dt

import pytest
from django.http import Http404
from django.utils import timezone

from yilian.access.models import AccessLog, GrantSource
from yilian.access.services import break_glass_open, grant_issue
from yilian.accounts.actors import Actor
from yilian.accounts.selectors import current_memberships
from yilian.patients.access import access_patient
from yilian.patients.models import Patient


def actor(world, persona: str, index: int = 0) -> Actor:
    user = world.user(persona)
    memberships = current_memberships(user)
    return Actor(user=user, membership=memberships[index] if memberships else None, ip_address="10.0.0.1")


def test_township_sees_own_and_village_patients_only(world):
    visible = set(Patient.objects.visible_to(actor(world, "township_clinician")).values_list("name", flat=True))
    assert visible == {"黄美玲", "陈大明"}


def test_management_roles_see_no_patient(world):
    for persona in ("consortium_manager", "bureau_supervisor", "privacy_officer", "hr_officer", "system_admin"):
        assert not Patient.objects.visible_to(actor(world, persona)).exists(), persona


def test_lead_clinician_needs_grant_and_read_is_logged(world):
    lead = actor(world, "lead_clinician")
    patient = world.patients["at_b"]
    with pytest.raises(Http404):
        access_patient(lead, patient.uuid)
    assert AccessLog.objects.count() == 0
    grant = grant_issue(
        patient=patient,
        source=GrantSource.REFERRAL,
        grantee_institution=world.a,
        expires_at=timezone.now() + dt.timedelta(days=7),
    )
    assert access_patient(lead, patient.uuid) == patient
    row = AccessLog.objects.get()
    assert (row.user, row.acting_institution, row.patient, row.grant, row.ip_address) == (
        world.user("lead_clinician"),
        world.a,
        patient,
        grant,
        "10.0.0.1",
    )


def test_expired_and_revoked_grants_do_not_open(world):
    lead = actor(world, "lead_clinician")
    patient = world.patients["at_b"]
    grant = grant_issue(
        patient=patient,
        source=GrantSource.REFERRAL,
        grantee_institution=world.a,
        expires_at=timezone.now() + dt.timedelta(seconds=30),
    )
    grant.starts_at = timezone.now() - dt.timedelta(hours=2)
    grant.expires_at = timezone.now() - dt.timedelta(hours=1)
    grant.save()
    with pytest.raises(Http404):
        access_patient(lead, patient.uuid)


def test_break_glass_opens_for_hours_and_notifies_privacy_officer(world, django_capture_on_commit_callbacks):
    lead = actor(world, "lead_clinician")
    patient = world.patients["at_b"]
    with django_capture_on_commit_callbacks(execute=True):
        grant = break_glass_open(actor=lead, patient=patient, reason="急诊昏迷，需查既往病史", hours=2)
    assert grant.expires_at - grant.starts_at <= dt.timedelta(hours=2, seconds=1)
    assert access_patient(lead, patient.uuid) == patient
    assert AccessLog.objects.get().grant == grant
    assert world.user("privacy_officer").notifications.filter(kind="break_glass_review").count() == 1
