"""The demo county's year of clinical records: plausible, valid, linked, fast enough to be the default."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from io import StringIO

import pytest
from django.core.management import call_command
from django.db.models import Count, F
from django.utils import timezone

from yilian.patients.models import Patient, SourceIdentity
from yilian.records.icd10 import icd10_lookup
from yilian.records.models import Condition, Encounter, InsuranceSettlement, Observation

pytestmark = pytest.mark.django_db


def test_demo_county_adds_a_year_of_valid_records_for_every_treating_institution() -> None:
    out = StringIO()
    call_command("demo_county", "--residents=600", "--quiet", stdout=out)
    assert "就诊" in out.getvalue() and "医保结算" in out.getvalue()
    encounters = Encounter.objects.count()
    assert 1_500 < encounters < 2_400  # about three a resident
    now = timezone.now()
    assert not Encounter.objects.filter(started_at__gt=now).exists()
    assert not Encounter.objects.filter(ended_at__lt=F("started_at")).exists()
    assert not Encounter.objects.filter(insurance_paid__gt=F("total_cost")).exists()
    assert Encounter.objects.filter(started_at__lt=now - dt.timedelta(days=300)).exists()
    # Every record's identity is the sender's and is linked to a demo resident.
    assert not Encounter.objects.exclude(identity__institution=F("institution")).exists()
    assert SourceIdentity.objects.values("institution", "local_id").annotate(n=Count("id")).filter(n__gt=1).count() == 0
    assert SourceIdentity.objects.filter(patient__in=Patient.objects.all()).count() == SourceIdentity.objects.count()
    # Every diagnosis is a valid ICD-10 code, and the mix is a county's: hypertension leads.
    codes = Counter(Condition.objects.values_list("icd10_code", flat=True))
    assert all(icd10_lookup(code) is not None for code in codes)
    assert codes.most_common(1)[0][0] == "I10.x00x002"
    assert {"E11.900", "J06.9", "J44.900"} <= set(codes)
    # Referrals up: some residents of township/village members are seen at the lead hospital.
    at_lead = Encounter.objects.filter(institution__name="台山市人民医院")
    assert at_lead.exclude(identity__patient__home_institution__name="台山市人民医院").exists()
    # Settlements, some outside the county: 县域内就诊率 near the 90% target.
    settlements = InsuranceSettlement.objects.count()
    outside = InsuranceSettlement.objects.filter(within_county=False)
    assert outside.count() > 0 and outside.filter(provider_institution__isnull=True).count() == outside.count()
    assert 0.85 < 1 - outside.count() / settlements < 0.99
    assert Observation.objects.filter(code="1558-6", interpretation="H").exists()
