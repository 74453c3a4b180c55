"""Helpers shared by every app's services."""

from __future__ import annotations

from typing import TypeVar

from django.core.exceptions import ValidationError
from django.db import IntegrityError, models, transaction
from django.utils.translation import gettext as _

M = TypeVar("M", bound=models.Model)


def save_validated(instance: M, *, exclude: list[str] | None = None) -> M:
    """Validate a model (fields, choices, unique and check constraints) and save it.

    The database constraints stay the last word: a concurrent writer that slips past
    full_clean() gets a ValidationError here too, never an IntegrityError (a 500).
    """
    instance.full_clean(exclude=exclude)
    try:
        with transaction.atomic():
            instance.save()
    except IntegrityError as exc:
        raise ValidationError(_("与已有记录冲突（编码或名称重复），请检查后重试。"), code="conflict") from exc
    return instance


def set_fields(instance: models.Model, fields: dict[str, object], allowed: set[str]) -> None:
    """Assign the given fields, refusing any field a caller may not set."""
    unknown = set(fields) - allowed
    if unknown:
        raise ValidationError(_("不允许修改的字段：%(fields)s") % {"fields": ", ".join(sorted(unknown))}, code="field")
    for name, value in fields.items():
        setattr(instance, name, value)


def sender_identifier(system: str, identifier: str) -> str:
    """A member system's own identifier as its messages name it: `system|value`, or the value alone."""
    return f"{system}|{identifier}" if system else identifier
