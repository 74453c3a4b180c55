"""Forms of the records pages: the timeline filter, the test order, the recognise action."""

from __future__ import annotations

from django import forms
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from yilian.records.catalogue import ORDERABLE_TESTS
from yilian.records.selectors import TIMELINE_KINDS


def _test_choices() -> list[tuple[str, str | Promise]]:
    return [("", _("请选择项目")), *((t.code, f"{t.name}（{t.code}）") for t in ORDERABLE_TESTS)]


class TimelineFilterForm(forms.Form):
    """Narrow the 360 view: kinds, source institution, date range, code or text."""

    kind = forms.MultipleChoiceField(
        label=_("类型"), required=False, choices=lambda: [(k.key, k.label) for k in TIMELINE_KINDS.values()]
    )
    institution = forms.UUIDField(label=_("来源机构"), required=False)
    date_from = forms.DateField(label=_("开始日期"), required=False, widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(label=_("结束日期"), required=False, widget=forms.DateInput(attrs={"type": "date"}))
    q = forms.CharField(label=_("编码或名称"), max_length=50, required=False)

    def clean(self) -> dict[str, object]:
        cleaned = super().clean() or {}
        start, end = cleaned.get("date_from"), cleaned.get("date_to")
        if start and end and end < start:  # type: ignore[operator]
            self.add_error("date_to", _("结束日期不能早于开始日期。"))
        return cleaned


class OrderForm(forms.Form):
    """开检查/检验: pick a test; recognisable results are shown before the order is placed."""

    code = forms.ChoiceField(label=_("检查/检验项目"), choices=_test_choices)
    reason = forms.CharField(label=_("开单理由"), max_length=200, required=False)


class RecognitionForm(forms.Form):
    """互认: accept one result (by kind and id) for one test."""

    code = forms.ChoiceField(label=_("检查/检验项目"), choices=_test_choices)
    kind = forms.ChoiceField(choices=[("observation", "observation"), ("report", "report")])
    result = forms.UUIDField()
