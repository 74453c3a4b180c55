"""The demo county's scheduling: the lead hospitals' schedules, township quotas, wards, bookings."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.db.models import Count, F, Q, Sum

from yilian.scheduling.models import Bed, BedStatus, Booking, BookingStatus, Quota, QuotaKind, Schedule, ScheduleKind, SlotPool

pytestmark = pytest.mark.django_db


def test_demo_county_has_lead_hospital_schedules_quotas_wards_and_bookings():
    out = StringIO()
    call_command("demo_county", "--residents=400", "--seed=5", "--quiet", stdout=out)
    assert "排班" in out.getvalue()
    lead = Schedule.objects.filter(institution__name="台山市人民医院")
    assert lead.filter(kind=ScheduleKind.DEPARTMENT).count() == 6
    assert set(lead.filter(kind=ScheduleKind.EQUIPMENT).values_list("capability", flat=True)) == {
        "ct", "mri", "dr", "ultrasound", "endoscopy", "ecg",
    }  # fmt: skip
    assert lead.filter(kind=ScheduleKind.PRACTITIONER).exists()
    cardiology = lead.get(name="心血管内科普通门诊")
    # A weekday morning and afternoon of 30-minute slots: 8 + 6 a day.
    assert 14 * 5 <= cardiology.slots.count() <= 14 * 10
    kinds = set(Quota.objects.filter(schedule=cardiology).values_list("kind", flat=True))
    assert kinds == {QuotaKind.CONSORTIUM, QuotaKind.GREEN_CHANNEL}
    assert (
        Quota.objects.filter(kind=QuotaKind.INSTITUTION, institution__name="北陡镇卫生院").exists()
        or Quota.objects.filter(kind=QuotaKind.INSTITUTION).exists()
    )
    beds = Bed.objects.filter(ward__institution__name="台山市人民医院")
    statuses = dict(beds.values_list("status").annotate(n=Count("*")))
    assert statuses[BedStatus.OCCUPIED] > statuses[BedStatus.FREE] > 0
    bookings = Booking.objects.filter(status=BookingStatus.BOOKED)
    assert bookings.count() > 10
    assert not bookings.exclude(for_institution__kind="township_centre").exists()
    assert bookings.filter(pool__quota__kind=QuotaKind.CONSORTIUM).exists()
    # Every counter matches its bookings, and no pool is oversold.
    assert SlotPool.objects.aggregate(n=Sum("booked"))["n"] == bookings.count()
    assert not SlotPool.objects.filter(Q(booked__gt=F("capacity"))).exists()
