from django.urls import path

from yilian.notifications import views

app_name = "notifications"

urlpatterns: list = [
    path("", views.notification_list, name="list"),
    path("<int:pk>/read/", views.notification_read, name="mark_read"),
    path("read-all/", views.notification_read_all, name="mark_all_read"),
]
