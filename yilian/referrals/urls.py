from django.urls import path

from yilian.referrals import views

app_name = "referrals"

urlpatterns: list = [
    path("<uuid:uuid>/", views.detail, name="detail"),
]
