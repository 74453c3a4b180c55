"""Forms of the scheduling pages: slot search, booking, cancelling, and the set-up of schedules,
rules, quotas, slot generation, leave and wards."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django import forms
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from yilian.accounts.models import Practitioner
from yilian.organizations.models import Consortium, ConsortiumMembership, Department, Institution
from yilian.scheduling.models import EQUIPMENT_CAPABILITIES, MAX_CAPACITY, QuotaKind, ScheduleKind

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


# --- set-up (SCHEDULE_MANAGE) ---------------------------------------------------------------------

WEEKDAY_CHOICES = [
    ("0", _("周一")),
    ("1", _("周二")),
    ("2", _("周三")),
    ("3", _("周四")),
    ("4", _("周五")),
    ("5", _("周六")),
    ("6", _("周日")),
]


def _style(form: forms.Form) -> None:
    for bound in form.fields.values():
        widget = bound.widget
        if isinstance(widget, forms.CheckboxSelectMultiple):
            continue
        if isinstance(widget, forms.CheckboxInput):
            widget.attrs["class"] = "form-check-input"
        elif isinstance(widget, forms.Select):
            widget.attrs["class"] = "form-select form-select-sm"
        else:
            widget.attrs["class"] = "form-control form-control-sm"


class ScheduleForm(forms.Form):
    """新建排班: a department clinic, a practitioner's clinic or a piece of equipment."""

    kind = forms.ChoiceField(label=_("类型"), choices=[])
    name = forms.CharField(label=_("名称"), max_length=60)
    department = forms.ModelChoiceField(label=_("科室"), queryset=Department.objects.none(), required=False, to_field_name="uuid")
    practitioner = forms.ModelChoiceField(
        label=_("医生（专家门诊）"), queryset=Practitioner.objects.none(), required=False, to_field_name="uuid"
    )
    capability = forms.ChoiceField(
        label=_("设备类别（检查设备）"),
        required=False,
        choices=[("", "—")] + [(c.value, c.label) for c in EQUIPMENT_CAPABILITIES],
    )
    location = forms.CharField(label=_("地点"), max_length=100, required=False)

    def __init__(self, *args: Any, institution: Institution, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["kind"].choices = ScheduleKind.choices  # type: ignore[attr-defined]
        self.fields["department"].queryset = Department.objects.filter(institution=institution, is_active=True)  # type: ignore[attr-defined]
        practitioners = Practitioner.objects.filter(user__memberships__institution=institution)
        self.fields["practitioner"].queryset = practitioners.select_related("user").distinct()  # type: ignore[attr-defined]
        _style(self)


class TemplateForm(forms.Form):
    """出诊规则: weekdays, hours, slot length and capacity."""

    weekdays = forms.MultipleChoiceField(
        label=_("出诊星期"), choices=WEEKDAY_CHOICES, widget=forms.CheckboxSelectMultiple, initial=["0", "1", "2", "3", "4"]
    )
    start_time = forms.TimeField(label=_("开始时间"), widget=forms.TimeInput(attrs={"type": "time"}))
    end_time = forms.TimeField(label=_("结束时间"), widget=forms.TimeInput(attrs={"type": "time"}))
    slot_minutes = forms.IntegerField(label=_("每个号段分钟数"), min_value=5, max_value=480, initial=30)
    capacity = forms.IntegerField(label=_("每个号段号源数"), min_value=1, max_value=MAX_CAPACITY, initial=4)
    valid_from = forms.DateField(label=_("生效日期"), widget=forms.DateInput(attrs={"type": "date"}))
    valid_until = forms.DateField(label=_("失效日期"), required=False, widget=forms.DateInput(attrs={"type": "date"}))
    on_public_holidays = forms.BooleanField(label=_("法定节假日照常出诊"), required=False)
    on_makeup_workdays = forms.BooleanField(label=_("调休上班日出诊"), required=False, initial=True)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _style(self)


class QuotaForm(forms.Form):
    """预留号源 (号源下沉): units of every slot for a member, a consortium, or the green channel."""

    kind = forms.ChoiceField(label=_("预留给"), choices=[])
    institution = forms.ModelChoiceField(
        label=_("成员单位"), queryset=Institution.objects.none(), required=False, to_field_name="uuid"
    )
    consortium = forms.ModelChoiceField(
        label=_("医联体"), queryset=Consortium.objects.none(), required=False, to_field_name="uuid"
    )
    units_per_slot = forms.IntegerField(label=_("每个号段预留数"), min_value=1, max_value=MAX_CAPACITY, initial=1)
    release_hours_before = forms.IntegerField(label=_("提前释放（小时）"), min_value=0, max_value=24 * 30, initial=24)

    def __init__(self, *args: Any, institution: Institution, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["kind"].choices = QuotaKind.choices  # type: ignore[attr-defined]
        consortia = ConsortiumMembership.objects.current().filter(institution=institution).values("consortium_id")
        self.fields["consortium"].queryset = Consortium.objects.filter(id__in=consortia)  # type: ignore[attr-defined]
        members = ConsortiumMembership.objects.current().filter(consortium_id__in=consortia).values("institution_id")
        self.fields["institution"].queryset = (  # type: ignore[attr-defined]
            Institution.objects.active().filter(id__in=members).exclude(pk=institution.pk).order_by("name")
        )
        _style(self)


class GenerateForm(forms.Form):
    """生成号源 for a date range."""

    start_date = forms.DateField(label=_("开始日期"), widget=forms.DateInput(attrs={"type": "date"}))
    end_date = forms.DateField(label=_("结束日期"), widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _style(self)


class LeaveForm(forms.Form):
    """停诊 / 请假 of the schedule's practitioner."""

    starts_at = forms.DateTimeField(label=_("开始时间"), widget=forms.DateTimeInput(attrs={"type": "datetime-local"}))
    ends_at = forms.DateTimeField(label=_("结束时间"), widget=forms.DateTimeInput(attrs={"type": "datetime-local"}))
    reason = forms.CharField(label=_("原因"), max_length=200)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _style(self)


class WardForm(forms.Form):
    """新建病区 with its beds."""

    name = forms.CharField(label=_("病区名称"), max_length=60)
    code = forms.CharField(label=_("病区代码"), max_length=20)
    department = forms.ModelChoiceField(label=_("科室"), queryset=Department.objects.none(), required=False, to_field_name="uuid")
    beds = forms.IntegerField(label=_("床位数"), min_value=0, max_value=200, initial=20)

    def __init__(self, *args: Any, institution: Institution, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["department"].queryset = Department.objects.filter(institution=institution, is_active=True)  # type: ignore[attr-defined]
        _style(self)
