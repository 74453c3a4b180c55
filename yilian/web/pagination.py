"""Pagination for pages: bounded page sizes, out-of-range pages clamp instead of erroring."""

from __future__ import annotations

from django.core.paginator import Page, Paginator
from django.db.models import QuerySet
from django.http import HttpRequest

PAGE_SIZE = 20
MAX_PAGE_SIZE = 100


def paginate(request: HttpRequest, queryset: QuerySet, *, per_page: int = PAGE_SIZE) -> Page:
    """The requested page of `queryset`; nonsense page numbers give the first or last page."""
    try:
        size = int(request.GET.get("page_size", per_page))
    except ValueError:
        size = per_page
    size = max(1, min(size, MAX_PAGE_SIZE))
    paginator = Paginator(queryset, size)
    return paginator.get_page(request.GET.get("page"))
