from django.urls import path

from yilian.accounts import views
from yilian.accounts.staff_urls import urlpatterns as staff_urlpatterns

app_name = "accounts"

# Login, logout and the institution switcher (the shell). Staff, memberships and API-key pages
# live in staff_urls.py.
urlpatterns: list = [
    path("login/", views.login_view, name="login"),
    path("logout/", views.logout_view, name="logout"),
    path("act-as/", views.act_as, name="act_as"),
    *staff_urlpatterns,
]
