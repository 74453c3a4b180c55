from django.urls import path

from yilian.scheduling import views

app_name = "scheduling"

urlpatterns: list = [
    path("", views.schedule_list, name="schedule_list"),
    path("schedules/<uuid:uuid>/", views.schedule_detail, name="schedule_detail"),
    path("slots/", views.slot_list, name="slot_list"),
    path("bookings/", views.booking_list, name="booking_list"),
    path("bookings/<uuid:uuid>/cancel/", views.booking_cancel, name="booking_cancel"),
    path("bookings/<uuid:uuid>/no-show/", views.booking_no_show, name="booking_no_show"),
    path("patients/<uuid:uuid>/book/", views.patient_book, name="patient_book"),
    path("wards/", views.ward_board, name="ward_board"),
    path("schedules/new/", views.schedule_new, name="schedule_new"),
    path("schedules/<uuid:uuid>/templates/", views.schedule_template_add, name="schedule_template_add"),
    path("schedules/<uuid:uuid>/quotas/", views.schedule_quota_add, name="schedule_quota_add"),
    path("schedules/<uuid:uuid>/generate/", views.schedule_generate, name="schedule_generate"),
    path("schedules/<uuid:uuid>/leave/", views.schedule_leave, name="schedule_leave"),
    path("wards/new/", views.ward_new, name="ward_new"),
    path("beds/<uuid:uuid>/", views.bed_state, name="bed_state"),
]
