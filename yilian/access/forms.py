"""Forms of the privacy pages: the break-glass verdict and the access-log filter."""

from __future__ import annotations

from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from yilian.access.models import ReviewOutcome


class BreakGlassReviewForm(forms.Form):
    outcome = forms.ChoiceField(label=_("审核结论"), choices=ReviewOutcome.choices, widget=forms.RadioSelect)
    note = forms.CharField(label=_("审核意见"), max_length=1000, required=False, widget=forms.Textarea(attrs={"rows": 2}))

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("outcome") == ReviewOutcome.UNJUSTIFIED and not (cleaned.get("note") or "").strip():
            self.add_error("note", _("认定不合理时请填写审核意见。"))
        return cleaned


class AccessLogFilterForm(forms.Form):
    id_number = forms.CharField(label=_("患者证件号码"), max_length=30, required=False)
    user = forms.CharField(label=_("访问人"), max_length=60, required=False)
    date_from = forms.DateField(label=_("开始日期"), required=False, widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(label=_("结束日期"), required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def clean_id_number(self) -> str:
        return "".join(self.cleaned_data["id_number"].split()).upper()

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        start, end = cleaned.get("date_from"), cleaned.get("date_to")
        if start and end and start > end:
            self.add_error("date_to", _("结束日期不能早于开始日期。"))
        return cleaned
