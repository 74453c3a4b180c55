from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "yilian.accounts"
    verbose_name = "人员与账户"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from yilian.accounts.models import ApiKey, Membership
        from yilian.accounts.selectors import memberships_cache_clear
        from yilian.accounts.services import api_key_cache_clear
        from yilian.organizations.models import Department, HealthAuthority, Institution

        for model in (Membership, Institution, Department, HealthAuthority):
            post_save.connect(memberships_cache_clear, sender=model, dispatch_uid=f"memberships_cache_{model.__name__}_save")
            post_delete.connect(memberships_cache_clear, sender=model, dispatch_uid=f"memberships_cache_{model.__name__}_delete")
        for keyed in (ApiKey, Institution, HealthAuthority):
            post_save.connect(api_key_cache_clear, sender=keyed, dispatch_uid=f"api_key_cache_{keyed.__name__}_save")
            post_delete.connect(api_key_cache_clear, sender=keyed, dispatch_uid=f"api_key_cache_{keyed.__name__}_delete")
