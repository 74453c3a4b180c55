from django.urls import path

from yilian.organizations import views

app_name = "organizations"

urlpatterns: list = [
    path("consortia/", views.consortium_list, name="consortium_list"),
    path("consortia/<uuid:uuid>/", views.consortium_detail, name="consortium_detail"),
    path("consortia/<uuid:uuid>/members/add/", views.consortium_member_add, name="consortium_member_add"),
    path(
        "consortia/<uuid:uuid>/members/<uuid:institution_uuid>/end/",
        views.consortium_member_end,
        name="consortium_member_end",
    ),
    path("institutions/", views.institution_list, name="institution_list"),
    path("institutions/new/", views.institution_create, name="institution_create"),
    path("institutions/<uuid:uuid>/", views.institution_detail, name="institution_detail"),
    path("institutions/<uuid:uuid>/edit/", views.institution_edit, name="institution_edit"),
    path("institutions/<uuid:uuid>/deactivate/", views.institution_deactivate, name="institution_deactivate"),
    path("institutions/<uuid:uuid>/reactivate/", views.institution_reactivate, name="institution_reactivate"),
    path("departments/", views.department_list, name="department_list"),
    path("departments/new/", views.department_create, name="department_create"),
    path("departments/<uuid:uuid>/", views.department_detail, name="department_detail"),
    path("departments/<uuid:uuid>/edit/", views.department_edit, name="department_edit"),
    path("departments/<uuid:uuid>/deactivate/", views.department_deactivate, name="department_deactivate"),
    path("departments/<uuid:uuid>/reactivate/", views.department_reactivate, name="department_reactivate"),
    path("grids/", views.grid_list, name="grid_list"),
    path("grids/new/", views.grid_create, name="grid_create"),
    path("grids/<uuid:uuid>/", views.grid_detail, name="grid_detail"),
    path("grids/<uuid:uuid>/edit/", views.grid_edit, name="grid_edit"),
    path("grids/<uuid:uuid>/deactivate/", views.grid_deactivate, name="grid_deactivate"),
    path("grids/<uuid:uuid>/reactivate/", views.grid_reactivate, name="grid_reactivate"),
]
