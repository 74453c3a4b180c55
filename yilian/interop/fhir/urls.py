"""/fhir: the FHIR R4 endpoint (mounted in yilian/urls.py)."""

from django.urls import path

from yilian.interop.fhir import views

app_name = "fhir"

urlpatterns: list = [
    path("", views.root, name="root"),
    path("metadata", views.metadata, name="metadata"),
    path("<str:name>", views.resource_type, name="type"),
    path("<str:name>/<str:key>", views.instance, name="instance"),
]
