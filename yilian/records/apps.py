from django.apps import AppConfig


class RecordsConfig(AppConfig):
    name = "yilian.records"
    verbose_name = "共享健康档案"
