from django.apps import AppConfig


class OrganizationsConfig(AppConfig):
    name = "yilian.organizations"
    verbose_name = "机构与医联体"
