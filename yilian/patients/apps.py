from django.apps import AppConfig


class PatientsConfig(AppConfig):
    name = "yilian.patients"
    verbose_name = "居民"
