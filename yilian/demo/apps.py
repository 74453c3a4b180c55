from django.apps import AppConfig


class DemoConfig(AppConfig):
    name = "yilian.demo"
    verbose_name = "演示数据"
