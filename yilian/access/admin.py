from django.contrib import admin

from yilian.access import models


@admin.register(models.AccessGrant)
class AccessGrantAdmin(admin.ModelAdmin):
    list_display = ["patient", "grantee_institution", "grantee_user", "source", "scope", "expires_at", "revoked_at"]
    list_filter = ["source", "scope"]
    raw_id_fields = [
        "patient",
        "grantee_institution",
        "grantee_user",
        "acting_institution",
        "granted_by",
        "revoked_by",
        "reviewed_by",
    ]


@admin.register(models.AccessLog)
class AccessLogAdmin(admin.ModelAdmin):
    """Read-only: the access log is append-only."""

    list_display = ["at", "actor_name", "acting_institution", "patient", "action", "basis", "ip_address"]
    list_filter = ["action", "basis"]
    raw_id_fields = ["patient", "user", "api_key", "acting_institution", "grant"]

    def has_change_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False

    def has_delete_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False

    def has_add_permission(self, request):  # type: ignore[no-untyped-def]
        return False
