"""Resident sign-in: one-time codes by SMS, then a resident session.

The rules (issue "resident portal"):
- a code is asked for with a phone number and an 18-digit ID number; it is sent only when a
  resident's record carries both, and the answer is the same when none does (no enumeration);
- codes are six digits, kept as keyed digests, valid `PORTAL_CODE_MINUTES`, dead after
  `PORTAL_CODE_ATTEMPTS` wrong entries; one code per phone and ID number per
  `PORTAL_RESEND_SECONDS` and at most `PORTAL_CODES_PER_HOUR` an hour (per address too);
- a verified code opens a `ResidentSession`; it ends at sign-out, when idle, or at its maximum age.
Counters move with conditional UPDATEs, so two tries racing cannot both use the last attempt.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import re
import secrets
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django.utils.crypto import constant_time_compare, salted_hmac
from django.utils.translation import gettext as _

from yilian.core.validators import national_id_problem
from yilian.notifications.sms import sms_send
from yilian.patients.models import IdentityDocumentType, Patient
from yilian.portal.models import ResidentSession, SignInChallenge

CODE_DIGITS = 6
MOBILE_PATTERN = re.compile(r"^1[3-9]\d{9}$")
# Requests for codes from one address in an hour: enough for a family sharing a phone or a
# township centre's kiosk, not for trying ID numbers in bulk.
CODES_PER_ADDRESS_PER_HOUR = 30
SESSION_TOUCH_SECONDS = 60


def normalise_phone(phone: str) -> str:
    return "".join(ch for ch in phone if ch not in " -")


def normalise_id_number(id_number: str) -> str:
    return "".join(id_number.split()).upper()


def _subject_digest(phone: str, id_number: str) -> str:
    return salted_hmac("yilian.portal.subject", f"{phone}:{id_number}", algorithm="sha256").hexdigest()


def _code_digest(challenge: SignInChallenge, code: str) -> str:
    return salted_hmac("yilian.portal.code", f"{challenge.uuid}:{code}", algorithm="sha256").hexdigest()


def _token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _code_text(code: str) -> str:
    return _("【医联】您的居民端登录验证码为%(code)s，%(minutes)d分钟内有效。如非本人操作，请忽略本短信。") % {
        "code": code,
        "minutes": settings.PORTAL_CODE_MINUTES,
    }


def resident_matching(*, phone: str, id_number: str) -> Patient | None:
    """The resident whose record carries this mobile number and this resident ID number.

    Should the index still hold two golden records of one person, the older one is used.
    """
    return (
        Patient.objects.filter(phone=phone, id_type=IdentityDocumentType.RESIDENT_ID, id_number=id_number).order_by("id").first()
    )


@dataclass(frozen=True)
class CodeRequest:
    """The challenge the resident should now type a code for; `sent` is False when a code sent
    moments ago is still good and no new one went out."""

    challenge: SignInChallenge
    sent: bool


def _throttled(retry_after: float) -> ValidationError:
    seconds = max(1, math.ceil(retry_after))
    return ValidationError(
        _("获取验证码过于频繁，请在%(seconds)d秒后重试。") % {"seconds": seconds}, code="throttled", params={"seconds": seconds}
    )


def _issue(*, subject_digest: str, patient: Patient | None, ip_address: str | None) -> SignInChallenge:
    """Write a new challenge (after the throttles passed) and send its code on commit."""
    now = timezone.now()
    recent = SignInChallenge.objects.filter(subject_digest=subject_digest, created_at__gt=now - dt.timedelta(hours=1))
    last = recent.order_by("-created_at", "-id").first()
    if last is not None:
        wait = settings.PORTAL_RESEND_SECONDS - (now - last.created_at).total_seconds()
        if wait > 0:
            raise _throttled(wait)
    hour_ago = now - dt.timedelta(hours=1)
    if recent.count() >= settings.PORTAL_CODES_PER_HOUR:
        oldest = recent.order_by("created_at").values_list("created_at", flat=True).first()
        raise _throttled(((oldest or now) - hour_ago).total_seconds())
    if (
        ip_address
        and SignInChallenge.objects.filter(ip_address=ip_address, created_at__gt=hour_ago).count() >= CODES_PER_ADDRESS_PER_HOUR
    ):
        raise _throttled(SESSION_TOUCH_SECONDS * 10)
    code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
    challenge = SignInChallenge(
        subject_digest=subject_digest,
        patient=patient,
        expires_at=now + dt.timedelta(minutes=settings.PORTAL_CODE_MINUTES),
        ip_address=ip_address,
    )
    challenge.code_digest = _code_digest(challenge, code)
    challenge.save()
    if patient is not None:
        phone, text = patient.phone, _code_text(code)
        transaction.on_commit(lambda: sms_send(phone=phone, text=text))
    return challenge


def sign_in_code_request(*, phone: str, id_number: str, ip_address: str | None = None) -> CodeRequest:
    """Ask for a sign-in code for this phone number and ID number.

    Answers the same whether or not a resident matches. Within the resend interval the code sent
    moments ago is returned again (`sent=False`) while it can still be used.
    """
    phone = normalise_phone(phone)
    id_number = normalise_id_number(id_number)
    if not MOBILE_PATTERN.match(phone):
        raise ValidationError({"phone": _("请输入11位手机号码。")})
    if problem := national_id_problem(id_number):
        raise ValidationError({"id_number": problem})
    subject = _subject_digest(phone, id_number)
    with transaction.atomic():
        last = SignInChallenge.objects.filter(subject_digest=subject).order_by("-created_at", "-id").first()
        if (
            last is not None
            and last.is_usable
            and (timezone.now() - last.created_at).total_seconds() < settings.PORTAL_RESEND_SECONDS
        ):
            return CodeRequest(challenge=last, sent=False)
        challenge = _issue(
            subject_digest=subject, patient=resident_matching(phone=phone, id_number=id_number), ip_address=ip_address
        )
    return CodeRequest(challenge=challenge, sent=True)


def sign_in_code_resend(*, challenge: SignInChallenge, ip_address: str | None = None) -> SignInChallenge:
    """A new code for the same phone number and ID number as `challenge` (throttled alike)."""
    with transaction.atomic():
        return _issue(subject_digest=challenge.subject_digest, patient=challenge.patient, ip_address=ip_address)


@dataclass(frozen=True)
class SignIn:
    session: ResidentSession
    token: str  # for the resident's cookie; only its digest is stored


def sign_in_code_verify(*, challenge: SignInChallenge, code: str, ip_address: str | None = None, user_agent: str = "") -> SignIn:
    """Check `code` against `challenge`; on success open a resident session.

    Every entry counts as an attempt, recorded before the code is compared (and kept when the
    check fails). Raises ValidationError (code `expired`, `exhausted`, `used` or `wrong`).
    """
    code = code.strip()
    now = timezone.now()
    with transaction.atomic():
        counted = SignInChallenge.objects.filter(
            pk=challenge.pk, verified_at__isnull=True, expires_at__gt=now, attempts__lt=settings.PORTAL_CODE_ATTEMPTS
        ).update(attempts=F("attempts") + 1, updated_at=now)
    challenge.refresh_from_db()
    if not counted:
        if challenge.verified_at is not None:
            raise ValidationError(_("该验证码已使用，请重新获取。"), code="used")
        if challenge.expires_at <= now:
            raise ValidationError(_("验证码已过期，请重新获取。"), code="expired")
        raise ValidationError(_("验证码错误次数过多，请重新获取。"), code="exhausted")
    matches = constant_time_compare(_code_digest(challenge, code), challenge.code_digest)
    if not matches or challenge.patient is None:
        left = settings.PORTAL_CODE_ATTEMPTS - challenge.attempts
        if left <= 0:
            raise ValidationError(_("验证码错误次数过多，请重新获取。"), code="exhausted")
        raise ValidationError(_("验证码错误，还可以再试%(left)d次。") % {"left": left}, code="wrong", params={"left": left})
    with transaction.atomic():
        if not SignInChallenge.objects.filter(pk=challenge.pk, verified_at__isnull=True).update(verified_at=now):
            raise ValidationError(_("该验证码已使用，请重新获取。"), code="used")
        token = secrets.token_urlsafe(32)
        session = ResidentSession.objects.create(
            patient=challenge.patient,
            token_digest=_token_digest(token),
            last_seen_at=now,
            expires_at=now + dt.timedelta(hours=settings.PORTAL_SESSION_MAX_HOURS),
            ip_address=ip_address,
            user_agent=user_agent[:200],
        )
    return SignIn(session=session, token=token)


def resident_session_for_token(token: str | None) -> ResidentSession | None:
    """The active session carried by this cookie value, touched at most once a minute."""
    if not token or len(token) > 100:
        return None
    session = ResidentSession.objects.active().select_related("patient").filter(token_digest=_token_digest(token)).first()
    if session is None:
        return None
    now = timezone.now()
    if (now - session.last_seen_at).total_seconds() > SESSION_TOUCH_SECONDS:
        ResidentSession.objects.filter(pk=session.pk).update(last_seen_at=now)
        session.last_seen_at = now
    return session


def resident_session_end(*, session: ResidentSession) -> None:
    """Sign out: the session's token stops working at once."""
    ResidentSession.objects.filter(pk=session.pk, ended_at__isnull=True).update(ended_at=timezone.now())
