from django.apps import AppConfig


class ReferralsConfig(AppConfig):
    name = "yilian.referrals"
    verbose_name = "双向转诊"
