"""Forms of the scheduling pages: slot search, booking, cancelling."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django import forms
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from yilian.organizations.models import Institution
from yilian.scheduling.models import EQUIPMENT_CAPABILITIES

MAX_SEARCH_DAYS = 31
DEFAULT_DAYS = 14
POOL_CHOICES = [
    ("", _("全部号池")),
    ("general", _("普通号池")),
    ("reserved", _("本机构预留")),
    ("green_channel", _("绿色通道")),
]


class SlotSearchForm(forms.Form):
    """号源查询: where, what and when; every field optional, the dates bounded."""

    institution = forms.ModelChoiceField(
        label=_("机构"), queryset=Institution.objects.none(), required=False, to_field_name="uuid", empty_label=_("全部机构")
    )
    capability = forms.ChoiceField(
        label=_("检查设备"), required=False, choices=[("", _("全部"))] + [(c.value, c.label) for c in EQUIPMENT_CAPABILITIES]
    )
    date_from = forms.DateField(label=_("起始日期"), required=False, widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(label=_("结束日期"), required=False, widget=forms.DateInput(attrs={"type": "date"}))
    pool = forms.ChoiceField(label=_("号池"), required=False, choices=POOL_CHOICES)

    def __init__(self, *args: Any, institutions: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if institutions is not None:
            self.fields["institution"].queryset = institutions  # type: ignore[attr-defined]
        for bound in self.fields.values():
            select = isinstance(bound.widget, forms.Select)
            bound.widget.attrs["class"] = "form-select form-select-sm" if select else "form-control form-control-sm"

    @staticmethod
    def clean_defaults() -> dict[str, Any]:
        """The search an empty or invalid form stands for: every place, the next two weeks."""
        today = timezone.localdate()
        return {
            "institution": None,
            "capability": "",
            "pool": "",
            "date_from": today,
            "date_to": today + dt.timedelta(days=DEFAULT_DAYS),
        }

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        start = data.get("date_from") or timezone.localdate()
        end = data.get("date_to") or start + dt.timedelta(days=DEFAULT_DAYS)
        if end < start:
            self.add_error("date_to", _("结束日期不能早于起始日期。"))
        elif (end - start).days > MAX_SEARCH_DAYS:
            self.add_error("date_to", _("一次最多查询 %(days)d 天。") % {"days": MAX_SEARCH_DAYS})
        data["date_from"], data["date_to"] = start, end
        return data


class BookForm(forms.Form):
    slot = forms.UUIDField(error_messages={"required": _("请选择号源。"), "invalid": _("号源无效。")})
    pool = forms.ChoiceField(choices=POOL_CHOICES[1:], initial="general", error_messages={"invalid_choice": _("号池无效。")})
    note = forms.CharField(label=_("备注"), max_length=200, required=False)


class CancelForm(forms.Form):
    reason = forms.CharField(label=_("取消原因"), max_length=200, required=False)
