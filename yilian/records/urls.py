from django.urls import path

from yilian.records import views

app_name = "records"

urlpatterns: list = [
    path("patients/<uuid:uuid>/", views.patient_record, name="patient_record"),
    path("patients/<uuid:uuid>/order/", views.order_test, name="order_test"),
    path("patients/<uuid:uuid>/recognise/", views.recognise_result, name="recognise_result"),
]
