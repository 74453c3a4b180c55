"""manage.py portal_try: print one resident's phone number and ID number to try the resident portal with."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from yilian.access.models import AccessLog
from yilian.core.validators import is_valid_national_id
from yilian.patients.models import IdentityDocumentType, Patient
from yilian.portal.services import MOBILE_PATTERN, resident_matching


def resident_to_try() -> Patient | None:
    """A resident who can sign in (valid ID number, a mobile number on the record), preferably one
    whose record staff have already read, so the access log has something to show."""
    candidates = Patient.objects.filter(id_type=IdentityDocumentType.RESIDENT_ID, id_number_valid=True).exclude(phone="")
    seen = AccessLog.objects.order_by("-at").values_list("patient_id", flat=True)[:200]
    for queryset in (candidates.filter(id__in=list(seen)), candidates):
        for patient in queryset.order_by("id")[:200]:
            if (
                MOBILE_PATTERN.match(patient.phone)
                and is_valid_national_id(patient.id_number)
                and resident_matching(phone=patient.phone, id_number=patient.id_number) == patient
            ):
                return patient
    return None


class Command(BaseCommand):
    help = "打印一位可用于试用居民端的居民的手机号和身份证号。"

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--url", default="http://127.0.0.1:8000/me/", help="居民端地址")

    def handle(self, *args: Any, **options: Any) -> None:
        patient = resident_to_try()
        if patient is None:
            self.stdout.write("居民端：暂无可试用的居民（需要有效的身份证号和手机号）。")
            return
        self.stdout.write(f"居民端：{options['url']}")
        self.stdout.write(f"  试用居民 {patient.name}：手机号 {patient.phone}，身份证号 {patient.id_number}")
        self.stdout.write("  验证码以短信形式打印在本终端（演示用控制台短信网关）。")
