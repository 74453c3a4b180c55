from django.contrib import admin

from yilian.organizations import models


class CapabilityInline(admin.TabularInline):
    model = models.InstitutionCapability
    extra = 0


@admin.register(models.HealthAuthority)
class HealthAuthorityAdmin(admin.ModelAdmin):
    list_display = ["name", "division_code", "is_active"]
    search_fields = ["name", "division_code"]


@admin.register(models.Institution)
class InstitutionAdmin(admin.ModelAdmin):
    list_display = ["name", "short_name", "kind", "level", "town", "is_active"]
    list_filter = ["kind", "level", "is_active", "authority"]
    search_fields = ["name", "short_name", "credit_code", "license_number"]
    raw_id_fields = ["parent"]
    inlines = [CapabilityInline]


class MembershipInline(admin.TabularInline):
    model = models.ConsortiumMembership
    extra = 0
    raw_id_fields = ["institution"]


class CentreInline(admin.TabularInline):
    model = models.ConsortiumCentre
    extra = 0


@admin.register(models.Consortium)
class ConsortiumAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "lead_institution", "established_on", "dissolved_on"]
    list_filter = ["kind", "authority"]
    search_fields = ["name"]
    inlines = [MembershipInline, CentreInline]


@admin.register(models.Department)
class DepartmentAdmin(admin.ModelAdmin):
    list_display = ["name", "code", "institution", "is_clinical", "beds", "is_active"]
    list_filter = ["is_clinical", "is_active"]
    search_fields = ["name", "code", "institution__name"]
    raw_id_fields = ["institution"]


@admin.register(models.ServiceGrid)
class ServiceGridAdmin(admin.ModelAdmin):
    list_display = ["name", "town", "kind", "population", "responsible_institution", "consortium"]
    list_filter = ["kind", "consortium"]
    search_fields = ["name", "town"]
    raw_id_fields = ["responsible_institution"]
