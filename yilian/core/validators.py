"""Validators for Chinese identifiers (GB 11643, GB 32100, GB/T 2260)."""

from __future__ import annotations

import datetime as dt
import re

from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
_ID_PATTERN = re.compile(r"^\d{17}[\dX]$")


def national_id_check_character(first17: str) -> str:
    """The GB 11643 check character for the first 17 digits of a national ID number."""
    total = sum(int(d) * w for d, w in zip(first17, _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11]


def national_id_problem(value: str) -> str | None:
    """Why an 18-character national ID number is not valid, or None when it is."""
    number = value.strip().upper()
    if not _ID_PATTERN.match(number):
        return str(_("身份证号应为18位：17位数字加1位校验码（数字或X）。"))
    try:
        dt.date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        return str(_("身份证号中的出生日期不存在。"))
    if national_id_check_character(number[:17]) != number[17]:
        return str(_("身份证号校验码错误，请核对。"))
    return None


def is_valid_national_id(value: str) -> bool:
    return national_id_problem(value) is None


def validate_national_id(value: str) -> None:
    if problem := national_id_problem(value):
        raise ValidationError(problem, code="national_id")


_CREDIT_CODE_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_CREDIT_CODE_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)


def credit_code_check_character(first17: str) -> str:
    """The GB 32100 check character of a 统一社会信用代码."""
    total = sum(_CREDIT_CODE_CHARS.index(c) * w for c, w in zip(first17, _CREDIT_CODE_WEIGHTS, strict=True))
    return _CREDIT_CODE_CHARS[(31 - total % 31) % 31]


def validate_credit_code(value: str) -> None:
    code = value.strip().upper()
    if len(code) != 18 or any(c not in _CREDIT_CODE_CHARS for c in code):
        raise ValidationError(_("统一社会信用代码应为18位数字或大写字母（不含I、O、Z、S、V）。"), code="credit_code")
    if credit_code_check_character(code[:17]) != code[17]:
        raise ValidationError(_("统一社会信用代码校验码错误，请核对。"), code="credit_code")


def validate_division_code(value: str) -> None:
    if not re.fullmatch(r"\d{6}", value or ""):
        raise ValidationError(_("行政区划代码应为6位数字（GB/T 2260）。"), code="division_code")
