"""Forms of the resident portal: phone and ID number, then the code."""

from __future__ import annotations

from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from yilian.core.validators import national_id_problem
from yilian.portal.services import CODE_DIGITS, MOBILE_PATTERN, normalise_id_number, normalise_phone


class SignInForm(forms.Form):
    phone = forms.CharField(
        label=_("手机号码"),
        max_length=20,
        widget=forms.TextInput(attrs={"inputmode": "numeric", "autocomplete": "tel", "placeholder": _("建档时登记的手机号")}),
    )
    id_number = forms.CharField(
        label=_("身份证号"),
        max_length=30,
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false", "placeholder": _("18位居民身份证号")}),
    )

    def clean_phone(self) -> str:
        phone = normalise_phone(self.cleaned_data["phone"])
        if not MOBILE_PATTERN.match(phone):
            raise ValidationError(_("请输入11位手机号码。"), code="phone")
        return phone

    def clean_id_number(self) -> str:
        number = normalise_id_number(self.cleaned_data["id_number"])
        if problem := national_id_problem(number):
            raise ValidationError(problem, code="national_id")
        return number


class CodeForm(forms.Form):
    code = forms.CharField(
        label=_("验证码"),
        max_length=20,
        widget=forms.TextInput(attrs={"inputmode": "numeric", "autocomplete": "one-time-code", "placeholder": _("6位数字")}),
    )

    def clean_code(self) -> str:
        code = "".join(self.cleaned_data["code"].split())
        if len(code) != CODE_DIGITS or not code.isdigit():
            raise ValidationError(_("验证码为6位数字。"), code="code")
        return code
