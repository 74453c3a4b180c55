"""Parsing of dates, times and numbers shared by the FHIR, HL7 v2 and CSV parsers. Every problem
is a ParseError with a Chinese message naming where it is."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal, InvalidOperation

from django.utils import timezone

from yilian.core.validators import national_id_problem
from yilian.interop.items import ParseError
from yilian.patients.models import IdentityDocumentType

MAX_AMOUNT = Decimal("100000000")  # 1 亿元: anything larger is a typing error, not a hospital bill
MAX_MEASUREMENT = Decimal("1000000000000")


def parse_date(value: str, where: str) -> dt.date | None:
    """YYYY-MM-DD, YYYYMMDD or YYYY/MM/DD; a partial FHIR date (YYYY, YYYY-MM) gives None."""
    text = value.strip()
    if not text:
        return None
    if re.fullmatch(r"\d{4}(-\d{2})?", text):
        return None
    match = (
        re.fullmatch(r"(\d{4})[-/]?(\d{1,2})[-/]?(\d{1,2})", text)
        if "-" in text or "/" in text
        else re.fullmatch(r"(\d{4})(\d{2})(\d{2})", text[:8])
    )
    if match is None:
        raise ParseError("", issues=[(where, f"日期格式不正确：{text[:30]}（应为 YYYY-MM-DD）。")])
    try:
        return dt.date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError:
        raise ParseError("", issues=[(where, f"日期不存在：{text[:30]}。")]) from None


def parse_datetime(value: str, where: str) -> dt.datetime | None:
    """ISO 8601 (FHIR), HL7 DTM (YYYYMMDD[HHMM[SS]][+ZZZZ]) or 'YYYY-MM-DD HH:MM[:SS]'; naive times
    are Beijing time. A date alone is midnight Beijing time."""
    text = value.strip()
    if not text:
        return None
    hl7 = re.fullmatch(r"(\d{4})(\d{2})(\d{2})(?:(\d{2})(\d{2})(?:(\d{2})(?:\.\d+)?)?)?([+-]\d{4})?", text)
    try:
        if hl7:
            year, month, day, hour, minute, second, zone = hl7.groups()
            moment = dt.datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0))  # noqa: DTZ001
            if zone:
                sign = 1 if zone[0] == "+" else -1
                offset = dt.timedelta(hours=int(zone[1:3]), minutes=int(zone[3:5]))
                return moment.replace(tzinfo=dt.timezone(sign * offset))
            return timezone.make_aware(moment)
        if re.fullmatch(r"\d{4}(-\d{2})?", text):
            raise ValueError("partial")
        moment = dt.datetime.fromisoformat(text.replace("/", "-"))
    except ValueError:
        raise ParseError("", issues=[(where, f"时间格式不正确或时间不存在：{text[:40]}。")]) from None
    return timezone.make_aware(moment) if timezone.is_naive(moment) else moment


def parse_decimal(value: str | float | int | None, where: str, *, maximum: Decimal = MAX_AMOUNT) -> Decimal | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise ParseError("", issues=[(where, "应为数字。")])
    try:
        number = Decimal(str(value).strip().replace(",", ""))
    except InvalidOperation:
        raise ParseError("", issues=[(where, f"应为数字：{str(value)[:30]}。")]) from None
    if not number.is_finite() or abs(number) > maximum:
        raise ParseError("", issues=[(where, f"数值超出范围：{str(value)[:30]}。")])
    return number


def check_id_number(id_type: str, id_number: str, where: str) -> str:
    """A resident ID number must pass GB 11643 (length, birth date, check digit)."""
    number = id_number.strip().upper()
    if number and id_type == IdentityDocumentType.RESIDENT_ID and (problem := national_id_problem(number)):
        raise ParseError("", issues=[(where, problem)])
    return number


def bounded(value: str, limit: int, where: str) -> str:
    text = value.strip()
    if "\x00" in text:
        raise ParseError("", issues=[(where, "不能包含空字符（\\x00）。")])
    if len(text) > limit:
        raise ParseError("", issues=[(where, f"最多 {limit} 个字符（收到 {len(text)} 个）。")])
    return text
