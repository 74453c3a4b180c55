"""Reads about patients. Callers pass a queryset already scoped by `Patient.objects.visible_to(actor)`."""

from __future__ import annotations

import re

from django.db.models import Q, QuerySet

from yilian.patients.models import Patient

# An ID-number or phone search: digits (and the X check character), at least four.
NUMBER_QUERY = re.compile(r"^[0-9X]{4,30}$")


def patient_search(queryset: QuerySet[Patient], query: str) -> QuerySet[Patient]:
    """Filter by name (contains), or by ID number / phone (prefix, index-friendly) for numbers."""
    query = query.strip()
    if not query:
        return queryset
    number = "".join(query.split()).upper()
    if NUMBER_QUERY.match(number):
        return queryset.filter(Q(id_number__startswith=number) | Q(phone__startswith=number))
    return queryset.filter(name__contains=query)
