from django.urls import path

from yilian.patients import views

app_name = "patients"

urlpatterns: list = [
    path("", views.patient_list, name="list"),
    path("break-glass/", views.break_glass, name="break_glass"),
    path("<uuid:uuid>/", views.patient_detail, name="detail"),
]
