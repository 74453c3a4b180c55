"""Shared model building blocks."""

import uuid
from typing import Any

from django.db import models
from django.utils.encoding import force_str

# (model field) -> {stored value: label}, built once per field.
_CHOICE_LABELS: dict[models.Field, dict[Any, Any]] = {}


class ChoiceLabelsModel(models.Model):
    """`get_<field>_display()` through a per-field dictionary built once.

    Django's own version rebuilds a dictionary of every choice on each call and hashes the lazy
    labels, translating all of them; a list of twenty institutions spent a third of its rendering
    time there. Here only the label shown is translated."""

    class Meta:
        abstract = True

    def _get_FIELD_display(self, field: models.Field) -> Any:
        labels = _CHOICE_LABELS.get(field)
        if labels is None:
            labels = _CHOICE_LABELS[field] = dict(field.flatchoices)
        value = getattr(self, field.attname)
        try:
            label = labels.get(value, value)
        except TypeError:  # an unhashable value: let Django handle it
            return super()._get_FIELD_display(field)  # type: ignore[misc]
        return force_str(label, strings_only=True)


class PublicModel(ChoiceLabelsModel):
    """A row with an integer key inside and a UUID outside (URLs, API, FHIR)."""

    uuid = models.UUIDField("公开标识", default=uuid.uuid4, unique=True, editable=False)
    created_at = models.DateTimeField("创建时间", auto_now_add=True)
    updated_at = models.DateTimeField("更新时间", auto_now=True)

    class Meta:
        abstract = True
