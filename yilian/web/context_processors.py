"""What every page needs to draw the shell: the actor, their memberships, the navigation."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from yilian.web.navigation import NavItem, active_item, navigation_for


def shell(request: HttpRequest) -> dict[str, Any]:
    actor = getattr(request, "actor", None)
    user = getattr(request, "user", None)
    unread = 0
    navigation: list[NavItem] = []
    if user is not None and user.is_authenticated:
        unread = user.notifications.unread().count()
        navigation = navigation_for(actor)
    return {
        "actor": actor,
        "acting_memberships": getattr(request, "memberships", []),
        "navigation": navigation,
        "active_navigation": active_item(navigation, request.path),
        "unread_notifications": unread,
    }
