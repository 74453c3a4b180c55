from django.urls import path

from yilian.patients import views

app_name = "patients"

urlpatterns: list = [
    path("", views.patient_list, name="list"),
    path("break-glass/", views.break_glass, name="break_glass"),
    path("review/", views.review_list, name="review_list"),
    path("review/<uuid:uuid>/", views.review_detail, name="review_detail"),
    path("merges/", views.merge_list, name="merge_list"),
    path("merges/<uuid:uuid>/undo/", views.merge_undo, name="merge_undo"),
    path("<uuid:uuid>/", views.patient_detail, name="detail"),
]
