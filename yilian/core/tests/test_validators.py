from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from yilian.core.validators import (
    credit_code_check_character,
    is_valid_national_id,
    national_id_check_character,
    national_id_problem,
    validate_credit_code,
)


@pytest.mark.parametrize(
    "number",
    ["11010519491231002X", "440524188001010014", "440781195803070012"],
)
def test_valid_national_ids(number):
    assert is_valid_national_id(number)
    assert is_valid_national_id(number.lower())


def test_wrong_check_digit_is_flagged_in_chinese():
    assert national_id_problem("440781195803070013") == "身份证号校验码错误，请核对。"


@pytest.mark.parametrize("number", ["44078119580230001X", "4407811958", "44078119580307001Y", ""])
def test_malformed_or_impossible_ids(number):
    assert not is_valid_national_id(number)


def test_check_character_table_covers_x():
    assert national_id_check_character("11010519491231002") == "X"


def test_credit_code_check():
    body = "12440781MB2C1234"  # 17 chars with the registration-authority and type prefix
    body = (body + "5")[:17]
    code = body + credit_code_check_character(body)
    validate_credit_code(code)
    wrong = body + ("0" if code[-1] != "0" else "1")
    with pytest.raises(ValidationError):
        validate_credit_code(wrong)
    with pytest.raises(ValidationError):
        validate_credit_code("91440781IOZSV0000")
