"""Who the resident is: the portal's own session, carried by its own cookie.

Staff sign in with `accounts.User` and Django's session; residents never do. The portal reads
only its cookie (path `/me/`) and ignores `request.user`, and staff pages read only
`request.user`, so neither kind of session opens the other's pages.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.core import signing
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse

from yilian.portal.models import ResidentSession, SignInChallenge
from yilian.portal.services import resident_session_for_token

SESSION_COOKIE = "yilian_resident"
CHALLENGE_COOKIE = "yilian_resident_code"
CHALLENGE_SALT = "yilian.portal.challenge"


def portal_path() -> str:
    return reverse("portal:summary")


def resident_session_of(request: HttpRequest) -> ResidentSession | None:
    return resident_session_for_token(request.COOKIES.get(SESSION_COOKIE))


def set_cookie(response: HttpResponse, name: str, value: str, *, max_age: int, signed: bool = False) -> None:
    options: dict[str, Any] = {
        "max_age": max_age,
        "path": portal_path(),
        "secure": settings.SESSION_COOKIE_SECURE,
        "httponly": True,
        "samesite": "Lax",
    }
    if signed:
        response.set_signed_cookie(name, value, salt=CHALLENGE_SALT, **options)
    else:
        response.set_cookie(name, value, **options)


def forget_cookie(response: HttpResponse, name: str) -> None:
    response.delete_cookie(name, path=portal_path(), samesite="Lax")


def pending_challenge(request: HttpRequest) -> tuple[SignInChallenge, str] | None:
    """The challenge the resident is typing a code for, and the masked phone it was asked for."""
    try:
        value = request.get_signed_cookie(CHALLENGE_COOKIE, salt=CHALLENGE_SALT, max_age=settings.PORTAL_CODE_MINUTES * 60 * 2)
    except (KeyError, signing.BadSignature):
        return None
    if not value:
        return None
    uuid, _, masked_phone = value.partition("|")
    try:
        challenge = SignInChallenge.objects.select_related("patient").get(uuid=uuid)
    except (SignInChallenge.DoesNotExist, ValidationError, ValueError):
        return None
    return challenge, masked_phone


def resident_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Portal pages: only with an active resident session; otherwise to the sign-in page."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        session = resident_session_of(request)
        if session is None:
            response = redirect("portal:sign_in")
            if SESSION_COOKIE in request.COOKIES:
                forget_cookie(response, SESSION_COOKIE)
            return response
        request.resident_session = session  # type: ignore[attr-defined]
        return view(request, *args, **kwargs)

    return wrapped
