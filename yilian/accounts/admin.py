from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin

from yilian.accounts import models


class MembershipInline(admin.TabularInline):
    model = models.Membership
    extra = 0
    raw_id_fields = ["institution", "department"]


@admin.register(models.User)
class UserAdmin(BaseUserAdmin):
    list_display = ["username", "full_name", "phone", "is_active", "is_superuser", "locked_until"]
    search_fields = ["username", "full_name", "phone"]
    fieldsets = (
        *BaseUserAdmin.fieldsets,  # type: ignore[misc]
        ("医联", {"fields": ("full_name", "phone", "failed_login_count", "locked_until")}),
    )
    inlines = [MembershipInline]


@admin.register(models.Practitioner)
class PractitionerAdmin(admin.ModelAdmin):
    list_display = ["user", "title", "specialty", "certificate_number"]
    search_fields = ["user__username", "user__full_name", "certificate_number"]
    raw_id_fields = ["user"]


@admin.register(models.ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["name", "institution", "prefix", "expires_at", "revoked_at", "last_used_at"]
    readonly_fields = ["prefix", "key_digest", "last_used_at"]
    raw_id_fields = ["institution", "created_by"]
