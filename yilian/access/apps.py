from django.apps import AppConfig


class AccessConfig(AppConfig):
    name = "yilian.access"
    verbose_name = "访问控制"
