"""Attach the acting Actor (user + chosen membership) to every request."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from yilian.accounts.actors import ANONYMOUS, Actor
from yilian.accounts.selectors import choose_membership, current_memberships

ACTING_MEMBERSHIP_SESSION_KEY = "acting_membership"


def client_ip(request: HttpRequest) -> str | None:
    """The client address; behind nginx, the last hop it appended to X-Forwarded-For."""
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR")
    if forwarded:
        return forwarded.split(",")[-1].strip() or None
    return request.META.get("REMOTE_ADDR") or None


class ActorMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request.actor = ANONYMOUS  # type: ignore[attr-defined]
        request.memberships = []  # type: ignore[attr-defined]
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            memberships = current_memberships(user)
            chosen = choose_membership(memberships, request.session.get(ACTING_MEMBERSHIP_SESSION_KEY))
            request.memberships = memberships  # type: ignore[attr-defined]
            request.actor = Actor(user=user, membership=chosen, ip_address=client_ip(request))  # type: ignore[attr-defined]
        return self.get_response(request)
