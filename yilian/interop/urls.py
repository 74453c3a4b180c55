"""Pages of 数据接入 (namespace "interop"); the FHIR endpoint is routed by fhir/urls.py at /fhir/."""

from django.urls import path

from yilian.interop import views

app_name = "interop"

urlpatterns: list = [
    path("messages/", views.message_list, name="message_list"),
    path("messages/<uuid:uuid>/", views.message_detail, name="message_detail"),
    path("messages/<uuid:uuid>/raw/", views.message_raw, name="message_raw"),
    path("messages/<uuid:uuid>/replay/", views.message_replay, name="message_replay"),
    path("messages/<uuid:uuid>/discard/", views.message_discard, name="message_discard"),
    path("imports/", views.import_list, name="import_list"),
    path("imports/<uuid:uuid>/", views.import_detail, name="import_detail"),
    path("imports/templates/<str:kind>.csv", views.import_template, name="import_template"),
]
