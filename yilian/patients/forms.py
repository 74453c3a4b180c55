"""Forms of the patient pages: search, break-glass, review decisions and unmerge."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django import forms
from django.conf import settings
from django.utils.translation import gettext_lazy as _

from yilian.patients.models import MatchReview, ReviewDecision


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
    """主索引审核: the reviewer says whether the two records are the same person, or that the
    incoming identity is another candidate's (one of `alternatives`, the identity's other open items)."""

    decision = forms.ChoiceField(
        label=_("审核结论"),
        choices=ReviewDecision.choices,
        widget=forms.RadioSelect(attrs={"class": "form-check-input"}),
        error_messages={"required": _("请选择审核结论。"), "invalid_choice": _("审核结论无效。")},
    )
    other_review = forms.ChoiceField(
        label=_("另一位候选患者"), required=False, widget=forms.Select(attrs={"class": "form-select"})
    )
    reason = forms.CharField(
        label=_("说明"), max_length=500, required=False, widget=forms.Textarea(attrs={"rows": 2, "class": "form-control"})
    )

    def __init__(self, *args: Any, alternatives: Sequence[MatchReview] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.alternatives = {str(r.uuid): r for r in alternatives}
        other_review = self.fields["other_review"]
        decision = self.fields["decision"]
        assert isinstance(other_review, forms.ChoiceField) and isinstance(decision, forms.ChoiceField)  # noqa: S101 - declared above
        other_review.choices = [("", "—")] + [
            (key, f"{r.candidate.name} · {r.candidate.home_institution.display_name} · {r.score:.1f}")
            for key, r in self.alternatives.items()
        ]
        if not alternatives:
            decision.choices = [c for c in ReviewDecision.choices if c[0] != ReviewDecision.LINK_OTHER]

    def clean_other_review(self) -> MatchReview | None:
        return self.alternatives.get(self.cleaned_data.get("other_review") or "")


class UnmergeForm(forms.Form):
    confirm = forms.BooleanField(
        label=_("确认撤销此次合并，源身份将恢复原来的关联"), error_messages={"required": _("请勾选确认。")}
    )
