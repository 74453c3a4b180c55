from django.apps import AppConfig


class SchedulingConfig(AppConfig):
    name = "yilian.scheduling"
    verbose_name = "号源与床位"
