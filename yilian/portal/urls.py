from django.urls import path

from yilian.portal import views

app_name = "portal"

urlpatterns: list = [
    path("", views.summary, name="summary"),
    path("access-log/", views.access_log, name="access_log"),
    path("sign-in/", views.sign_in, name="sign_in"),
    path("sign-in/code/", views.code, name="code"),
    path("sign-in/resend/", views.resend, name="resend"),
    path("sign-out/", views.sign_out, name="sign_out"),
]
