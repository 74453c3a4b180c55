from django.apps import AppConfig


class PortalConfig(AppConfig):
    name = "yilian.portal"
    verbose_name = "居民端"
