from django.contrib import admin

from yilian.records import models


@admin.register(models.ResultValidityRule)
class ResultValidityRuleAdmin(admin.ModelAdmin):
    """结果互认有效期: system admins set the window per category (code left blank) or per test."""

    list_display = ["category", "code", "days", "note"]
    list_filter = ["category"]
    list_editable = ["days"]
    search_fields = ["code", "note"]


@admin.register(models.ResultRecognition)
class ResultRecognitionAdmin(admin.ModelAdmin):
    """Who recognised which result, read-only: the rows the 互认 indicator counts."""

    list_display = ["recognised_at", "display", "institution", "result_institution"]
    list_filter = ["category"]
    raw_id_fields = [
        "patient",
        "user",
        "institution",
        "result_institution",
        "observation",
        "diagnostic_report",
        "service_request",
    ]
    show_full_result_count = False

    def has_change_permission(self, request, obj=None):  # type: ignore[no-untyped-def]
        return False

    def has_add_permission(self, request):  # type: ignore[no-untyped-def]
        return False
