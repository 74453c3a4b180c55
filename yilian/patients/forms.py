"""Forms of the patient pages: search and break-glass."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.utils.translation import gettext_lazy as _


class PatientSearchForm(forms.Form):
    q = forms.CharField(label=_("查找"), max_length=50, required=False)


def _hour_choices() -> list[tuple[int, str]]:
    return [(h, _("%(hours)d 小时") % {"hours": h}) for h in range(1, settings.BREAK_GLASS_MAX_HOURS + 1)]


class BreakGlassForm(forms.Form):
    """紧急授权: the clinician names the patient by ID number and says why."""

    id_number = forms.CharField(
        label=_("证件号码"),
        max_length=30,
        help_text=_("须输入完整证件号码；紧急授权不提供浏览或模糊查找。"),
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )
    reason = forms.CharField(
        label=_("紧急访问理由"),
        min_length=5,
        max_length=1000,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text=_("例如：急诊昏迷患者，需查阅既往病史与过敏史。"),
        error_messages={"min_length": _("请填写紧急访问的理由（至少5个字）。")},
    )
    hours = forms.TypedChoiceField(label=_("授权时长"), coerce=int, choices=_hour_choices)

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.fields["hours"].initial = min(2, settings.BREAK_GLASS_MAX_HOURS)

    def clean_id_number(self) -> str:
        return "".join(self.cleaned_data["id_number"].split()).upper()


class ReviewDecisionForm(forms.Form):
    """主索引审核: the reviewer says whether the two records are the same person."""

    decision = forms.ChoiceField(
        label=_("审核结论"),
        choices=[("same", _("是同一人，合并")), ("distinct", _("不是同一人"))],
        widget=forms.RadioSelect(attrs={"class": "form-check-input"}),
        error_messages={"required": _("请选择审核结论。"), "invalid_choice": _("审核结论无效。")},
    )
    reason = forms.CharField(
        label=_("说明"), max_length=500, required=False, widget=forms.Textarea(attrs={"rows": 2, "class": "form-control"})
    )


class UnmergeForm(forms.Form):
    confirm = forms.BooleanField(
        label=_("确认撤销此次合并，源身份将恢复原来的关联"), error_messages={"required": _("请勾选确认。")}
    )
