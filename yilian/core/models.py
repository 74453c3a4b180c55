"""Shared model building blocks."""

import uuid

from django.db import models


class PublicModel(models.Model):
    """A row with an integer key inside and a UUID outside (URLs, API, FHIR)."""

    uuid = models.UUIDField("公开标识", default=uuid.uuid4, unique=True, editable=False)
    created_at = models.DateTimeField("创建时间", auto_now_add=True)
    updated_at = models.DateTimeField("更新时间", auto_now=True)

    class Meta:
        abstract = True
