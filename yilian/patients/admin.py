from django.contrib import admin

from yilian.patients import models


@admin.register(models.Patient)
class PatientAdmin(admin.ModelAdmin):
    """System admins maintain records here; reading them is not clinical access and is not offered:
    the list shows no identities beyond the name."""

    list_display = ["name", "sex", "town", "home_institution"]
    list_filter = ["sex"]
    raw_id_fields = ["grid", "home_institution"]
    show_full_result_count = False
