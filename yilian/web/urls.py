from django.urls import path

from yilian.web import views

app_name = "web"

urlpatterns: list = [
    path("", views.home, name="home"),
]
