"""The to-do inbox: notifications for one recipient, each linking to where the work is."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from yilian.core.models import ChoiceLabelsModel


class NotificationKind(models.TextChoices):
    BREAK_GLASS_REVIEW = "break_glass_review", _("紧急授权待审核")
    MEMBERSHIP_GRANTED = "membership_granted", _("新的任职")
    ACCESS_GRANTED = "access_granted", _("获得访问授权")
    REFERRAL = "referral", _("转诊")
    FOLLOW_UP = "follow_up", _("随访任务")
    SYSTEM = "system", _("系统通知")


class NotificationQuerySet(models.QuerySet["Notification"]):
    def unread(self) -> NotificationQuerySet:
        return self.filter(read_at__isnull=True)


class Notification(ChoiceLabelsModel):
    """A to-do or information item for one user."""

    recipient = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications", verbose_name="接收人"
    )
    kind = models.CharField("类型", max_length=32, choices=NotificationKind.choices)
    title = models.CharField("标题", max_length=200)
    body = models.TextField("内容", max_length=2000, blank=True)
    link = models.CharField("链接", max_length=300, blank=True)
    created_at = models.DateTimeField("时间", auto_now_add=True)
    read_at = models.DateTimeField("已读时间", null=True, blank=True)

    objects = NotificationQuerySet.as_manager()

    class Meta:
        verbose_name = "通知"
        verbose_name_plural = "通知"
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["recipient", "read_at", "-created_at"])]

    def __str__(self) -> str:
        return self.title
