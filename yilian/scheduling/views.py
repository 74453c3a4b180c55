from django.http import HttpRequest, HttpResponse


def _todo(request: HttpRequest, uuid: str = "") -> HttpResponse:
    return HttpResponse("")


schedule_list = schedule_detail = slot_list = booking_list = booking_cancel = booking_no_show = patient_book = ward_board = _todo
