from django.apps import AppConfig


class WebConfig(AppConfig):
    name = "yilian.web"
    verbose_name = "界面"
