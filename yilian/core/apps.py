from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "yilian.core"
    verbose_name = "核心"
