from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "yilian.notifications"
    verbose_name = "通知"
