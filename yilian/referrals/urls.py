from django.urls import path

from yilian.referrals import views

app_name = "referrals"

urlpatterns: list = [
    path("outbox/", views.outbox, name="outbox"),
    path("inbox/", views.inbox, name="inbox"),
    path("board/", views.board, name="board"),
    path("follow-ups/", views.follow_ups, name="follow_ups"),
    path("follow-ups/<uuid:uuid>/done/", views.follow_up_done, name="follow_up_done"),
    path("suggest/", views.suggest, name="suggest"),
    path("patients/<uuid:uuid>/new/", views.create, name="create"),
    path("<uuid:uuid>/", views.detail, name="detail"),
    path("<uuid:uuid>/accept/", views.accept, name="accept"),
    path("<uuid:uuid>/schedule/", views.schedule, name="schedule"),
    path("<uuid:uuid>/reject/", views.reject, name="reject"),
    path("<uuid:uuid>/cancel/", views.cancel, name="cancel"),
    path("<uuid:uuid>/arrive/", views.arrive, name="arrive"),
    path("<uuid:uuid>/complete/", views.complete, name="complete"),
    path("<uuid:uuid>/follow-ups/", views.follow_up_add, name="follow_up_add"),
    path("<uuid:uuid>/pdf/", views.pdf, name="pdf"),
]
