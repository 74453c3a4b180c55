from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "yilian.accounts"
    verbose_name = "人员与账户"
