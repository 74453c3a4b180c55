from django.contrib import admin

from yilian.portal import models


@admin.register(models.ResidentSession)
class ResidentSessionAdmin(admin.ModelAdmin):
    """Read-only list of resident sessions (for support and audit); tokens are stored only as digests."""

    list_display = ["patient", "created_at", "last_seen_at", "expires_at", "ended_at", "ip_address"]
    raw_id_fields = ["patient"]
    exclude = ["token_digest"]

    def has_add_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False

    def has_change_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False
