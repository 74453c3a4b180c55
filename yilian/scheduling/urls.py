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
]
