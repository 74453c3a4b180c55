"""The resident portal's own rows: one-time sign-in codes and resident sessions.

Residents are not staff: they have no `accounts.User`, no Django auth session and no membership.
A resident proves who they are with the phone number and ID number on their record plus a code
sent to that phone, and gets a `ResidentSession` carried by its own cookie, scoped to the portal.
"""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from yilian.core.models import PublicModel
from yilian.patients.models import Patient


class SignInChallenge(PublicModel):
    """One one-time code (登录验证码) asked for with a phone number and an ID number.

    A challenge is written whether or not a resident matches (then `patient` is empty and no
    message is sent), so the portal answers both cases alike and throttles both alike. The
    subject (phone and ID number) and the code are kept only as keyed digests.
    """

    subject_digest = models.CharField("手机号与证件号摘要", max_length=64)
    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, null=True, blank=True, related_name="+", verbose_name="居民")
    code_digest = models.CharField("验证码摘要", max_length=64)
    expires_at = models.DateTimeField("失效时间")
    attempts = models.PositiveSmallIntegerField("已尝试次数", default=0)
    verified_at = models.DateTimeField("验证通过时间", null=True, blank=True)
    ip_address = models.GenericIPAddressField("来源地址", null=True, blank=True)

    class Meta:
        verbose_name = "登录验证码"
        verbose_name_plural = "登录验证码"
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["subject_digest", "-created_at"]),
            models.Index(fields=["ip_address", "-created_at"]),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(expires_at__gt=F("created_at")), name="portal_challenge_expires_after_start"),
        ]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.subject_digest[:8]}"

    @property
    def is_usable(self) -> bool:
        """Not yet used, not expired, attempts left."""
        return self.verified_at is None and self.expires_at > timezone.now() and self.attempts < settings.PORTAL_CODE_ATTEMPTS


class ResidentSessionQuerySet(models.QuerySet["ResidentSession"]):
    def active(self) -> ResidentSessionQuerySet:
        """Not signed out, within the absolute lifetime, and used within the idle timeout."""
        now = timezone.now()
        idle_since = now - dt.timedelta(minutes=settings.PORTAL_SESSION_IDLE_MINUTES)
        return self.filter(ended_at__isnull=True, expires_at__gt=now, last_seen_at__gt=idle_since)


class ResidentSession(PublicModel):
    """A resident signed in to the portal (居民会话). Only the token's digest is stored; the token
    itself lives in the resident's portal cookie. Ends at sign-out, after the idle timeout, or
    at `expires_at` at the latest."""

    patient = models.ForeignKey(Patient, on_delete=models.CASCADE, related_name="+", verbose_name="居民")
    token_digest = models.CharField("令牌摘要", max_length=64, unique=True)
    last_seen_at = models.DateTimeField("最近访问时间", default=timezone.now)
    expires_at = models.DateTimeField("最长有效至")
    ended_at = models.DateTimeField("退出时间", null=True, blank=True)
    ip_address = models.GenericIPAddressField("登录地址", null=True, blank=True)
    user_agent = models.CharField("浏览器", max_length=200, blank=True)

    objects = ResidentSessionQuerySet.as_manager()

    class Meta:
        verbose_name = "居民会话"
        verbose_name_plural = "居民会话"
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["patient", "-created_at"])]
        constraints = [
            models.CheckConstraint(condition=Q(expires_at__gt=F("created_at")), name="portal_session_expires_after_start"),
        ]

    def __str__(self) -> str:
        return f"{self.patient_id} {self.created_at:%Y-%m-%d %H:%M}"
