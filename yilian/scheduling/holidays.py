"""The Chinese public calendar: statutory holidays and make-up workdays (调休上班日).

Taken from `chinese-calendar` (PyPI), which ships the State Council's yearly arrangements inside the
package, so nothing is fetched at run time. A year the installed release does not know yet is
treated as an ordinary calendar (weekends off) and reported, so the operator can upgrade the
package once the State Council has published that year's arrangement.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

import chinese_calendar


class DayKind(StrEnum):
    WORKDAY = "workday"
    WEEKEND = "weekend"
    HOLIDAY = "holiday"  # 法定节假日, including the weekdays given as rest days in lieu
    MAKEUP_WORKDAY = "makeup_workday"  # 调休上班: a Saturday or Sunday that is a working day


def day_kind(day: dt.date) -> tuple[DayKind, bool]:
    """What kind of day `day` is, and whether the calendar package knows its year."""
    weekend = day.weekday() >= 5
    try:
        on_holiday, holiday_name = chinese_calendar.get_holiday_detail(day)
    except NotImplementedError:
        return (DayKind.WEEKEND if weekend else DayKind.WORKDAY), False
    if on_holiday and (holiday_name is not None or not weekend):
        return DayKind.HOLIDAY, True
    if not on_holiday and weekend:
        return DayKind.MAKEUP_WORKDAY, True
    return (DayKind.WEEKEND if weekend else DayKind.WORKDAY), True
