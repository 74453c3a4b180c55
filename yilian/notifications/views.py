"""The to-do inbox pages: list, mark one read, mark all read (htmx or plain POST)."""

from __future__ import annotations

from typing import cast

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from yilian.accounts.models import User
from yilian.notifications.models import Notification
from yilian.notifications.services import notification_mark_all_read, notification_mark_read
from yilian.web.http import safe_next
from yilian.web.pagination import paginate

FILTERS = ("all", "unread")


def _recipient(request: HttpRequest) -> User:
    return cast(User, request.user)  # login_required has run


@login_required
@require_GET
def notification_list(request: HttpRequest) -> HttpResponse:
    show = request.GET.get("show", "all")
    if show not in FILTERS:
        show = "all"
    notifications = Notification.objects.filter(recipient=_recipient(request))
    if show == "unread":
        notifications = notifications.unread()
    page = paginate(request, notifications.order_by("-created_at", "-id"))
    return render(request, "notifications/list.html", {"page_obj": page, "show": show})


@login_required
@require_POST
def notification_read(request: HttpRequest, pk: int) -> HttpResponse:
    # Only the recipient's own notifications exist for them; anyone else's is "not found".
    recipient = _recipient(request)
    notification = Notification.objects.filter(recipient=recipient, pk=pk).first()
    if notification is None:
        raise Http404(_("未找到，或您无权访问。"))
    notification_mark_read(recipient=recipient, notification_id=notification.pk)
    if request.htmx:  # type: ignore[attr-defined]
        notification.refresh_from_db(fields=["read_at"])
        unread = Notification.objects.filter(recipient=recipient).unread().count()
        context = {"notification": notification, "unread_notifications": unread, "oob": True}
        html = render_to_string("notifications/_item.html", context, request=request)
        html += render_to_string("web/_bell.html", context, request=request)
        return HttpResponse(html)
    return redirect(safe_next(request, reverse("notifications:list")))


@login_required
@require_POST
def notification_read_all(request: HttpRequest) -> HttpResponse:
    notification_mark_all_read(recipient=_recipient(request))
    return redirect(safe_next(request, reverse("notifications:list")))
