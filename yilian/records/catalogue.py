"""Tests a clinician can order in Yilian (开检查/检验), and the default validity windows of 结果互认.

Codes are LOINC where a member's LIS/PACS usually maps to one; a result is "the same test" when its
code equals the ordered test's code. The windows are defaults: ResultValidityRule rows (edited in
the admin) override them per category or per test.
"""

from __future__ import annotations

from dataclasses import dataclass

from yilian.records.models import ReportCategory


@dataclass(frozen=True)
class OrderableTest:
    code: str
    name: str
    category: str


ORDERABLE_TESTS: tuple[OrderableTest, ...] = (
    OrderableTest("58410-2", "血常规", ReportCategory.LABORATORY),
    OrderableTest("24325-3", "肝功能", ReportCategory.LABORATORY),
    OrderableTest("24362-6", "肾功能", ReportCategory.LABORATORY),
    OrderableTest("57698-3", "血脂四项", ReportCategory.LABORATORY),
    OrderableTest("1558-6", "空腹血糖", ReportCategory.LABORATORY),
    OrderableTest("4548-4", "糖化血红蛋白", ReportCategory.LABORATORY),
    OrderableTest("24356-8", "尿常规", ReportCategory.LABORATORY),
    OrderableTest("36643-5", "胸部X线摄影（正侧位）", ReportCategory.IMAGING),
    OrderableTest("30745-4", "头颅CT平扫", ReportCategory.IMAGING),
    OrderableTest("24531-6", "腹部超声", ReportCategory.IMAGING),
    OrderableTest("24627-2", "胸部CT平扫", ReportCategory.IMAGING),
    OrderableTest("11524-6", "十二导联心电图", ReportCategory.ECG),
    OrderableTest("11529-5", "组织病理检查", ReportCategory.PATHOLOGY),
)
TESTS_BY_CODE = {test.code: test for test in ORDERABLE_TESTS}

# Days another member's result stays recognisable when no ResultValidityRule says otherwise.
DEFAULT_VALIDITY_DAYS: dict[str, int] = {
    ReportCategory.LABORATORY: 7,
    ReportCategory.IMAGING: 30,
    ReportCategory.ECG: 7,
    ReportCategory.PATHOLOGY: 30,
}
