"""Forms of the referral pages. They check shapes and bounds only; the rules (levels, consortium,
sides, states) live in `services`, whose errors the views put back on these forms."""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from yilian.accounts.models import User
from yilian.organizations.models import Capability, Department, Institution
from yilian.referrals.models import Direction, ReferralCriterion, ShareScope, Urgency

MAX_WINDOW_DAYS = 62


def _style(form: forms.Form) -> None:
    for field in form.fields.values():
        widget = field.widget
        if isinstance(widget, forms.CheckboxSelectMultiple | forms.RadioSelect | forms.HiddenInput):
            continue
        widget.attrs.setdefault("class", "form-select" if isinstance(widget, forms.Select) else "form-control")


class UserChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: Any) -> str:
        return str(obj.full_name or obj.username)


class ReferralForm(forms.Form):
    """发起转诊: what the referring doctor fills in; the destination comes from the suggestion list."""

    direction = forms.ChoiceField(label=_("转诊方向"), choices=Direction.choices, initial=Direction.UP)
    urgency = forms.ChoiceField(label=_("紧急程度"), choices=Urgency.choices, initial=Urgency.ROUTINE)
    required_capability = forms.ChoiceField(
        label=_("需要的能力"), required=False, choices=[("", _("不限"))] + [(c.value, c.label) for c in Capability]
    )
    wanted_from = forms.DateField(
        label=_("期望就诊开始日期"), required=False, widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d")
    )
    wanted_to = forms.DateField(
        label=_("期望就诊截止日期"), required=False, widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d")
    )
    destination_institution = forms.ModelChoiceField(
        label=_("接收机构"),
        queryset=Institution.objects.none(),
        to_field_name="uuid",
        empty_label=_("请选择"),
        error_messages={"required": _("请选择接收机构（可从推荐列表中选择）。"), "invalid_choice": _("接收机构无效。")},
    )
    destination_department = forms.ModelChoiceField(
        label=_("接收科室"),
        queryset=Department.objects.none(),
        to_field_name="uuid",
        required=False,
        error_messages={"invalid_choice": _("接收科室无效。")},
    )
    criteria = forms.ModelMultipleChoiceField(
        label=_("符合的转诊标准"),
        queryset=ReferralCriterion.objects.none(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        error_messages={"invalid_choice": _("所选转诊标准无效。"), "invalid_pk_value": _("所选转诊标准无效。")},
    )
    diagnosis_name = forms.CharField(label=_("初步诊断"), max_length=100)
    diagnosis_code = forms.CharField(label=_("诊断编码（ICD-10，可选）"), max_length=16, required=False)
    reason = forms.CharField(label=_("转诊原因"), max_length=1000, widget=forms.Textarea(attrs={"rows": 3}))
    clinical_summary = forms.CharField(
        label=_("病情摘要"), max_length=4000, required=False, widget=forms.Textarea(attrs={"rows": 4})
    )
    share_scope = forms.ChoiceField(
        label=_("共享范围"),
        choices=ShareScope.choices,
        initial=ShareScope.RECORD,
        widget=forms.RadioSelect(attrs={"class": "form-check-input"}),
    )
    sender_phone = forms.CharField(label=_("联系电话"), max_length=30, required=False)

    def __init__(
        self,
        *args: Any,
        institutions: QuerySet[Institution],
        criteria: QuerySet[ReferralCriterion],
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.fields["destination_institution"].queryset = institutions  # type: ignore[attr-defined]
        self.fields["destination_department"].queryset = Department.objects.filter(  # type: ignore[attr-defined]
            institution__in=institutions, is_active=True
        ).select_related("institution")
        self.fields["criteria"].queryset = criteria  # type: ignore[attr-defined]
        _style(self)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        start, end = data.get("wanted_from"), data.get("wanted_to")
        if start and end:
            if end < start:
                self.add_error("wanted_to", _("期望就诊截止日期不能早于开始日期。"))
            elif (end - start).days > MAX_WINDOW_DAYS:
                self.add_error("wanted_to", _("期望时段最长 %(days)d 天。") % {"days": MAX_WINDOW_DAYS})
        institution, department = data.get("destination_institution"), data.get("destination_department")
        if institution and department and department.institution_id != institution.pk:
            self.add_error("destination_department", _("接收科室不属于接收机构或已停用。"))
        return data


class SuggestForm(forms.Form):
    """The inputs of the destination suggestion (all optional, bounded)."""

    direction = forms.ChoiceField(choices=Direction.choices, required=False)
    urgency = forms.ChoiceField(choices=Urgency.choices, required=False)
    required_capability = forms.ChoiceField(choices=[("", "")] + [(c.value, c.label) for c in Capability], required=False)
    wanted_from = forms.DateField(required=False)
    wanted_to = forms.DateField(required=False)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        start, end = data.get("wanted_from"), data.get("wanted_to")
        if start and end and (end < start or (end - start).days > MAX_WINDOW_DAYS):
            data["wanted_to"] = None
        return data


class ReasonForm(forms.Form):
    reason = forms.CharField(
        label=_("原因"), max_length=500, widget=forms.Textarea(attrs={"rows": 2}), error_messages={"required": _("请填写原因。")}
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _style(self)


class AcceptForm(forms.Form):
    """接收 (and book): an optional slot of the destination and/or a free bed, note and instructions."""

    slot = forms.UUIDField(label=_("号源"), required=False, error_messages={"invalid": _("号源无效。")})
    bed = forms.UUIDField(label=_("床位"), required=False, error_messages={"invalid": _("床位无效。")})
    bed_hours = forms.IntegerField(label=_("床位保留（小时）"), min_value=1, max_value=72, initial=24, required=False)
    note = forms.CharField(label=_("接收意见"), max_length=500, required=False)
    instructions = forms.CharField(
        label=_("就诊须知（地点、需携带的资料）"),
        max_length=500,
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        initial=_("请携带身份证、医保卡、转诊单及近期检查结果。"),
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _style(self)


class FollowUpForm(forms.Form):
    """One follow-up task of a down referral: who, when, what to check."""

    responsible = UserChoiceField(
        label=_("责任医生"),
        queryset=User.objects.none(),
        empty_label=_("选择责任医生"),
        error_messages={"required": _("请选择责任医生。"), "invalid_choice": _("责任医生无效。")},
    )
    due_date = forms.DateField(
        label=_("随访日期"),
        widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
        error_messages={"required": _("请填写随访日期。")},
    )
    what_to_check = forms.CharField(label=_("随访内容"), max_length=300, error_messages={"required": _("请填写随访内容。")})

    def __init__(self, *args: Any, doctors: QuerySet[User] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if doctors is not None:
            self.fields["responsible"].queryset = doctors  # type: ignore[attr-defined]
        _style(self)

    def clean_due_date(self) -> Any:
        value = self.cleaned_data["due_date"]
        if value < timezone.localdate():
            raise ValidationError(_("随访日期不能早于今天。"))
        return value


class CompleteForm(forms.Form):
    result_summary = forms.CharField(
        label=_("诊疗结果或出院小结"),
        max_length=4000,
        widget=forms.Textarea(attrs={"rows": 4}),
        error_messages={"required": _("请填写诊疗结果或出院小结。")},
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _style(self)


class FollowUpDoneForm(forms.Form):
    result = forms.CharField(label=_("随访结果"), max_length=500, error_messages={"required": _("请填写随访结果。")})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _style(self)
