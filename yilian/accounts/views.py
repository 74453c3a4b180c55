"""The shell's account pages: login (with lockout), logout and the institution switcher.

Staff, membership and API-key pages are routed by staff_urls.py.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login, logout
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods, require_POST

from yilian.accounts.forms import LoginForm
from yilian.accounts.middleware import ACTING_MEMBERSHIP_SESSION_KEY
from yilian.web.http import safe_next


@sensitive_post_parameters("password")
@csrf_protect
@never_cache
@require_http_methods(["GET", "POST"])
def login_view(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated and request.method == "GET":
        return redirect(safe_next(request, reverse("web:home")))
    form = LoginForm(request, data=request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid() and form.user is not None:
        login(request, form.user)
        return HttpResponseRedirect(safe_next(request, reverse("web:home")))
    return render(
        request,
        "accounts/login.html",
        {"form": form, "next": safe_next(request, ""), "failure_limit": settings.LOGIN_FAILURE_LIMIT},
    )


@require_POST
def logout_view(request: HttpRequest) -> HttpResponse:
    logout(request)
    return redirect("accounts:login")


@login_required
@require_POST
def act_as(request: HttpRequest) -> HttpResponse:
    """Switch the membership (institution and role) the user acts through."""
    wanted = request.POST.get("membership", "")
    chosen = next((m for m in request.memberships if str(m.uuid) == wanted), None)  # type: ignore[attr-defined]
    if chosen is None:
        raise Http404(_("未找到，或您无权访问。"))
    request.session[ACTING_MEMBERSHIP_SESSION_KEY] = str(chosen.uuid)
    messages.success(request, _("已切换为：%(place)s · %(role)s") % {"place": chosen.place, "role": chosen.get_role_display()})
    return redirect(safe_next(request, reverse("web:home")))
