"""The one-object gatekeepers decide in Python what the list filters decide in SQL: they must agree.

`access_patient` and `institution_visible` check one loaded object (cheap), `patient_scope_filter`
and `institution_scope_filter` filter querysets. Every persona against every patient and institution
of the world, with grants of both scopes and an identity held elsewhere, must get the same answer.
"""

from __future__ import annotations

import datetime as dt

import pytest
from django.http import Http404
from django.utils import timezone

from yilian.access.models import GrantScope, GrantSource
from yilian.access.services import grant_issue
from yilian.accounts.actors import Actor
from yilian.accounts.models import Membership
from yilian.accounts.selectors import current_memberships
from yilian.organizations.access import institution_scope_filter, institution_visible
from yilian.organizations.models import ConsortiumMembership, Institution, MemberRole
from yilian.patients.access import access_patient, patient_scope_filter
from yilian.patients.models import LinkMethod, Patient, SourceIdentity
from yilian.testing.world import PERSONAS, START, World

pytestmark = pytest.mark.django_db


def _actors(world: World) -> list[tuple[str, Actor]]:
    actors = []
    for persona in PERSONAS:
        if persona == "anonymous":
            actors.append((persona, Actor(user=None)))
            continue
        user = world.user(persona)
        memberships: list[Membership | None] = [*current_memberships(user)] or [None]
        for membership in memberships:
            actors.append((f"{persona}/{membership}", Actor(user=user, membership=membership)))
    return actors


def test_institution_visible_agrees_with_the_scope_filter(world: World) -> None:
    # Membership dates count: 大江 left the first consortium yesterday, 中医院 joins it tomorrow,
    # 水步 belongs to the second one as well.
    today = timezone.localdate()
    for institution, joined, left in (
        (world.d, START, today - dt.timedelta(days=1)),
        (world.t, today + dt.timedelta(days=1), None),
    ):
        ConsortiumMembership.objects.create(
            consortium=world.k1, institution=institution, role=MemberRole.MEMBER, joined_on=joined, left_on=left
        )
    ConsortiumMembership.objects.create(consortium=world.k2, institution=world.b, role=MemberRole.MEMBER, joined_on=START)
    institutions = list(Institution.objects.all())
    checked = 0
    for label, actor in _actors(world):
        in_scope = set(Institution.objects.filter(institution_scope_filter(actor)).values_list("pk", flat=True))
        for institution in institutions:
            assert institution_visible(actor, institution) == (institution.pk in in_scope), (label, institution.name)
            checked += 1
    assert checked > 20


def test_access_patient_agrees_with_the_scope_filter(world: World) -> None:
    at_b, at_c = world.patients["at_b"], world.patients["at_v"]
    # A summary grant to the lead hospital, a record grant to a user, an identity held elsewhere.
    grant_issue(
        patient=at_b, source=GrantSource.REFERRAL, grantee_institution=world.a, expires_at=timezone.now() + dt.timedelta(days=1)
    )
    grant_issue(
        patient=at_c,
        source=GrantSource.REFERRAL,
        grantee_institution=world.b,
        scope=GrantScope.RECORD,
        expires_at=timezone.now() + dt.timedelta(days=1),
    )
    SourceIdentity.objects.create(
        patient=at_c, institution=world.t, local_id="T-1", name=at_c.name, link_method=LinkMethod.MANUAL, link_score=1
    )
    seen = 0
    for label, actor in _actors(world):
        visible = set(Patient.objects.filter(patient_scope_filter(actor)).values_list("pk", flat=True))
        for patient in Patient.objects.all():
            try:
                access_patient(actor, patient.uuid)
                opened = True
            except Http404:
                opened = False
            assert opened == (patient.pk in visible), (label, patient.name)
            seen += opened
    assert seen > 3
