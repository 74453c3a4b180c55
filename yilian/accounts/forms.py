"""Forms of the account pages: the login form (the staff and API-key forms live beside it)."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from django import forms
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from yilian.accounts.models import User
from yilian.accounts.services import AccountLocked, authenticate_with_lockout

# Lockout times are told to users in the consortium's own time, whatever the server's zone.
DISPLAY_ZONE = ZoneInfo("Asia/Shanghai")


class LoginForm(forms.Form):
    """Username and password, checked by authenticate_with_lockout (locks after repeated failures)."""

    username = forms.CharField(
        label=_("用户名"),
        max_length=150,
        widget=forms.TextInput(attrs={"autofocus": True, "autocomplete": "username", "autocapitalize": "none"}),
    )
    password = forms.CharField(
        label=_("密码"), max_length=256, strip=False, widget=forms.PasswordInput(attrs={"autocomplete": "current-password"})
    )

    error_messages = {
        "invalid_login": _("用户名或密码错误。"),
    }

    def __init__(self, request: HttpRequest | None = None, *args: Any, **kwargs: Any) -> None:
        self.request = request
        self.user: User | None = None
        super().__init__(*args, **kwargs)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        username = cleaned.get("username")
        password = cleaned.get("password")
        if username and password:
            try:
                self.user = authenticate_with_lockout(request=self.request, username=username, password=password)
            except AccountLocked as locked:
                until = timezone.localtime(locked.until, DISPLAY_ZONE)
                raise forms.ValidationError(
                    gettext("账户已锁定，请于 %(time)s 后重试。") % {"time": until.strftime("%H:%M")}, code="locked"
                ) from locked
            if self.user is None:
                raise forms.ValidationError(self.error_messages["invalid_login"], code="invalid_login")
        return cleaned
