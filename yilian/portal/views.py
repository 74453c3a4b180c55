"""Resident portal pages (居民端): sign in with phone, ID number and an SMS code; my summary;
who looked at my record. Mobile-first; zh-hans by default, English through the switcher."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from yilian.accounts.middleware import client_ip
from yilian.portal.access import (
    CHALLENGE_COOKIE,
    SESSION_COOKIE,
    forget_cookie,
    pending_challenge,
    resident_required,
    resident_session_of,
    set_cookie,
)
from yilian.portal.forms import CodeForm, SignInForm
from yilian.portal.models import ResidentSession, SignInChallenge
from yilian.portal.selectors import departments_of, resident_access_log, resident_summary
from yilian.portal.services import resident_session_end, sign_in_code_request, sign_in_code_resend, sign_in_code_verify
from yilian.referrals.selectors import referrals_of_patient
from yilian.web.pagination import paginate
from yilian.web.templatetags.yilian import masked_phone

RECENT_REFERRALS = 10


def _session(request: HttpRequest) -> ResidentSession:
    return request.resident_session  # type: ignore[attr-defined, no-any-return]


def _to_code_page(challenge: SignInChallenge, phone_shown: str) -> HttpResponse:
    response = redirect("portal:code")
    set_cookie(
        response, CHALLENGE_COOKIE, f"{challenge.uuid}|{phone_shown}", max_age=settings.PORTAL_CODE_MINUTES * 60 * 2, signed=True
    )
    return response


def _add_errors(form: SignInForm | CodeForm, exc: ValidationError) -> None:
    if hasattr(exc, "error_dict"):
        for name, errors in exc.error_dict.items():
            form.add_error(name if name in form.fields else None, errors)
    else:
        form.add_error(None, exc)


def _status(form: SignInForm | CodeForm) -> int:
    """200 for a blank form; 429 when the resident must wait; 400 for other bad input."""
    if not form.errors:
        return 200
    throttled = any(error.code == "throttled" for errors in form.errors.as_data().values() for error in errors)
    return 429 if throttled else 400


@sensitive_post_parameters("phone", "id_number")
@csrf_protect
@never_cache
@require_http_methods(["GET", "POST"])
def sign_in(request: HttpRequest) -> HttpResponse:
    """Step 1: phone number and ID number. The answer never tells whether a resident matched."""
    if request.method == "GET" and resident_session_of(request) is not None:
        return redirect("portal:summary")
    form = SignInForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        try:
            outcome = sign_in_code_request(
                phone=form.cleaned_data["phone"], id_number=form.cleaned_data["id_number"], ip_address=client_ip(request)
            )
        except ValidationError as exc:
            _add_errors(form, exc)
        else:
            if not outcome.sent:
                messages.info(request, _("验证码刚刚已发送，请查收短信后输入。"))
            return _to_code_page(outcome.challenge, masked_phone(form.cleaned_data["phone"]))
    return render(request, "portal/sign_in.html", {"form": form, "minutes": settings.PORTAL_CODE_MINUTES}, status=_status(form))


@sensitive_post_parameters("code")
@csrf_protect
@never_cache
@require_http_methods(["GET", "POST"])
def code(request: HttpRequest) -> HttpResponse:
    """Step 2: the six-digit code. Success opens a resident session in the portal's own cookie."""
    pending = pending_challenge(request)
    if pending is None:
        messages.info(request, _("请先填写手机号码和身份证号获取验证码。"))
        return redirect("portal:sign_in")
    challenge, phone_shown = pending
    form = CodeForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        try:
            signed_in = sign_in_code_verify(
                challenge=challenge,
                code=form.cleaned_data["code"],
                ip_address=client_ip(request),
                user_agent=request.headers.get("user-agent", ""),
            )
        except ValidationError as exc:
            _add_errors(form, exc)
        else:
            response = redirect("portal:summary")
            set_cookie(response, SESSION_COOKIE, signed_in.token, max_age=settings.PORTAL_SESSION_MAX_HOURS * 3600)
            forget_cookie(response, CHALLENGE_COOKIE)
            return response
    context = {"form": form, "phone_shown": phone_shown, "minutes": settings.PORTAL_CODE_MINUTES}
    return render(request, "portal/code.html", context, status=_status(form))


@csrf_protect
@require_POST
def resend(request: HttpRequest) -> HttpResponse:
    """A new code for the same phone number and ID number (throttled)."""
    pending = pending_challenge(request)
    if pending is None:
        return redirect("portal:sign_in")
    challenge, phone_shown = pending
    try:
        challenge = sign_in_code_resend(challenge=challenge, ip_address=client_ip(request))
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect("portal:code")
    messages.success(request, _("新的验证码已发送，之前的验证码不再需要。"))
    return _to_code_page(challenge, phone_shown)


@require_POST
@csrf_protect
def sign_out(request: HttpRequest) -> HttpResponse:
    session = resident_session_of(request)
    if session is not None:
        resident_session_end(session=session)
        messages.success(request, _("您已安全退出。"))
    response = redirect("portal:sign_in")
    forget_cookie(response, SESSION_COOKIE)
    return response


@never_cache
@require_GET
@resident_required
def summary(request: HttpRequest) -> HttpResponse:
    session = _session(request)
    referrals = list(referrals_of_patient(session.patient.pk)[:RECENT_REFERRALS])
    context = {"summary": resident_summary(session.patient), "resident": session.patient, "referrals": referrals}
    return render(request, "portal/summary.html", context)


@never_cache
@require_GET
@resident_required
def access_log(request: HttpRequest) -> HttpResponse:
    session = _session(request)
    page = paginate(request, resident_access_log(session.patient))
    objects = list(page.object_list)
    departments = departments_of(objects)
    rows = [(row, departments.get((row.user_id, row.acting_institution_id), "")) for row in objects]
    return render(request, "portal/access_log.html", {"page_obj": page, "rows": rows, "resident": session.patient})
