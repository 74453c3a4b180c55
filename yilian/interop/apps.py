from django.apps import AppConfig


class InteropConfig(AppConfig):
    name = "yilian.interop"
    verbose_name = "数据接入"
