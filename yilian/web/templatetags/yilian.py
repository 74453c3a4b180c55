"""Template filters shared by the pages: safe in-site links, masked phone numbers, ages."""

from __future__ import annotations

import datetime as dt

from django import template
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme

register = template.Library()


@register.filter
def local_link(value: str | None) -> str:
    """The link when it stays on this site (a path), else "" so no stored link can send users away."""
    if value and value.startswith("/") and url_has_allowed_host_and_scheme(value, allowed_hosts=None):
        return value
    return ""


@register.filter
def masked_phone(value: str | None) -> str:
    """138****0000: enough to recognise a number in a list, not to dial it."""
    if not value:
        return ""
    return f"{value[:3]}****{value[-4:]}" if len(value) >= 8 else "****"


@register.filter
def age(birth_date: dt.date | None) -> int | str:
    if birth_date is None:
        return ""
    today = timezone.localdate()
    return today.year - birth_date.year - ((today.month, today.day) < (birth_date.month, birth_date.day))


@register.filter
def role_label(value: str | None) -> str:
    """The display name of a role code stored as plain text (e.g. in access-log rows)."""
    from yilian.accounts.roles import Role

    return str(dict(Role.choices).get(value or "", value or "—"))


@register.filter
def grouped(value: object) -> str:
    """1,234,567: thousands separated the same way in both languages (Django's zh-hans format does not group)."""
    if value is None or value == "":
        return ""
    try:
        return f"{int(value):,}"  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return str(value)
