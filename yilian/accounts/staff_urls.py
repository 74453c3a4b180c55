"""Pages for staff, memberships and API keys (namespace "accounts")."""

from django.urls import path

from yilian.accounts import staff_views

urlpatterns: list = [
    path("staff/", staff_views.staff_list, name="staff_list"),
    path("staff/new/", staff_views.staff_create, name="staff_create"),
    path("staff/people/<uuid:uuid>/", staff_views.staff_detail, name="staff_detail"),
    path("staff/people/<uuid:uuid>/memberships/new/", staff_views.membership_create, name="membership_create"),
    path("staff/memberships/<uuid:uuid>/edit/", staff_views.membership_edit, name="membership_edit"),
    path("staff/memberships/<uuid:uuid>/end/", staff_views.membership_end, name="membership_end"),
    path("api-keys/", staff_views.api_key_list, name="api_key_list"),
    path("api-keys/new/", staff_views.api_key_create, name="api_key_create"),
    path("api-keys/<uuid:uuid>/revoke/", staff_views.api_key_revoke, name="api_key_revoke"),
]
