"""Template filters shared by the pages: safe in-site links, masked phone numbers, ages."""

from __future__ import annotations

import datetime as dt

from django import forms, template
from django.forms import BoundField
from django.forms.utils import flatatt
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.safestring import mark_safe

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


@register.filter
def control(field: BoundField) -> str:
    """A filter-bar control drawn directly: a plain <select> or <input> with the widget's attributes.

    Django renders each <option> of a Select through its own template; on list pages with a few
    filter selects that was a third of the page's rendering time. Anything but a single Select or a
    plain input falls back to the widget's own rendering."""
    widget = field.field.widget
    attrs = field.build_widget_attrs(dict(widget.attrs))
    attrs.setdefault("id", field.auto_id)
    if isinstance(widget, forms.Select) and not widget.allow_multiple_selected:
        chosen = "" if field.value() is None else str(field.value())
        options = format_html_join(
            "",
            '<option value="{}"{}>{}</option>',
            (
                (value, mark_safe(" selected") if str(value) == chosen else "", label)
                for value, label in getattr(field.field, "choices", ())
            ),
        )
        return format_html('<select name="{}"{}>{}</select>', field.html_name, flatatt(attrs), options)
    if isinstance(widget, forms.TextInput | forms.NumberInput | forms.DateInput | forms.EmailInput) and not isinstance(
        widget, forms.PasswordInput
    ):
        value = field.value()
        attrs.setdefault("type", widget.input_type)
        if value not in (None, ""):
            attrs["value"] = str(value)
        return format_html('<input name="{}"{}>', field.html_name, flatatt(attrs))
    return str(field)
