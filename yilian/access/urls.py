from django.urls import path

from yilian.access import views

app_name = "access"

urlpatterns: list = [
    path("review/", views.review_list, name="review"),
    path("review/<uuid:uuid>/", views.review_decide, name="review_decide"),
    path("log/", views.access_log, name="log"),
]
