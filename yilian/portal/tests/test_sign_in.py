"""Resident sign-in through HTTP: phone + ID number → SMS code → resident session.

The SMS gateway is the console one (the only mock: the edge of the world); everything else is
the real pages, services and database.
"""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.db.models import F
from django.test import Client
from django.utils import timezone

from yilian.access.models import AccessLog
from yilian.notifications.sms import ConsoleSmsGateway
from yilian.portal.access import CHALLENGE_COOKIE, SESSION_COOKIE
from yilian.portal.models import ResidentSession, SignInChallenge
from yilian.portal.testing import last_code_sent_to, request_code, resident_client

UNKNOWN_ID = "11010519491231002X"  # valid GB 11643, nobody in the world


def _wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


def _shift_back(queryset, **delta: int) -> None:  # type: ignore[no-untyped-def]
    """Pretend the rows were written `delta` earlier."""
    shift = dt.timedelta(**delta)
    queryset.update(created_at=F("created_at") - shift, expires_at=F("expires_at") - shift)


def test_sign_in_happy_path(world) -> None:
    patient = world.patients["at_b"]
    client = Client()
    assert client.get("/me/")["Location"] == "/me/sign-in/"
    assert client.get("/me/sign-in/").status_code == 200

    request_code(client, patient)
    sms = ConsoleSmsGateway.messages(phone="13800000000")
    assert len(sms) == 1 and "居民端登录验证码" in sms[0].text
    code = last_code_sent_to(patient.phone)
    challenge = SignInChallenge.objects.get()
    assert challenge.patient == patient
    assert code not in challenge.code_digest and patient.id_number not in challenge.subject_digest  # stored as digests

    page = client.get("/me/sign-in/code/")
    assert page.status_code == 200 and "138****0000" in page.content.decode()
    response = client.post("/me/sign-in/code/", {"code": code})
    assert response.status_code == 302 and response["Location"] == "/me/"
    cookie = response.cookies[SESSION_COOKIE]
    assert cookie["httponly"] and cookie["path"] == "/me/" and cookie["samesite"] == "Lax"
    session = ResidentSession.objects.get()
    assert session.patient == patient and cookie.value not in session.token_digest

    body = client.get("/me/").content.decode()
    assert "黄美玲" in body and "4407**********0029" in body and patient.id_number not in body
    assert AccessLog.objects.count() == 0  # a resident reading their own record is not staff access


def test_wrong_code_counts_an_attempt_and_the_right_one_still_works(world) -> None:
    patient = world.patients["at_b"]
    client = Client()
    request_code(client, patient)
    code = last_code_sent_to(patient.phone)
    response = client.post("/me/sign-in/code/", {"code": _wrong(code)})
    assert response.status_code == 400
    assert "验证码错误，还可以再试4次" in response.content.decode()
    assert SignInChallenge.objects.get().attempts == 1
    assert not ResidentSession.objects.exists()
    assert client.post("/me/sign-in/code/", {"code": code})["Location"] == "/me/"


def test_malformed_code_is_refused_without_using_an_attempt(world) -> None:
    client = Client()
    request_code(client, world.patients["at_b"])
    for bad in ("12345", "abcdef", "1" * 10_000, ""):
        response = client.post("/me/sign-in/code/", {"code": bad})
        assert response.status_code == 400
    assert "验证码为6位数字" in client.post("/me/sign-in/code/", {"code": "12a456"}).content.decode()
    assert SignInChallenge.objects.get().attempts == 0


def test_five_wrong_codes_kill_the_code(world) -> None:
    patient = world.patients["at_b"]
    client = Client()
    request_code(client, patient)
    code = last_code_sent_to(patient.phone)
    for left in (4, 3, 2, 1):
        assert f"还可以再试{left}次" in client.post("/me/sign-in/code/", {"code": _wrong(code)}).content.decode()
    assert "错误次数过多" in client.post("/me/sign-in/code/", {"code": _wrong(code)}).content.decode()
    response = client.post("/me/sign-in/code/", {"code": code})  # the right code, too late
    assert response.status_code == 400 and "错误次数过多" in response.content.decode()
    assert SignInChallenge.objects.get().attempts == 5
    assert not ResidentSession.objects.exists()


def test_expired_code_is_refused(world) -> None:
    patient = world.patients["at_b"]
    client = Client()
    request_code(client, patient)
    code = last_code_sent_to(patient.phone)
    _shift_back(SignInChallenge.objects.all(), minutes=5, seconds=1)
    response = client.post("/me/sign-in/code/", {"code": code})
    assert response.status_code == 400 and "验证码已过期" in response.content.decode()
    assert not ResidentSession.objects.exists()


def test_code_cannot_be_used_twice(world) -> None:
    patient = world.patients["at_b"]
    client = Client()
    request_code(client, patient)
    code = last_code_sent_to(patient.phone)
    replay = Client()
    replay.cookies[CHALLENGE_COOKIE] = client.cookies[CHALLENGE_COOKIE].value
    assert client.post("/me/sign-in/code/", {"code": code})["Location"] == "/me/"
    response = replay.post("/me/sign-in/code/", {"code": code})
    assert response.status_code == 400 and "已使用" in response.content.decode()
    assert ResidentSession.objects.count() == 1


def _page_text(response) -> str:  # type: ignore[no-untyped-def]
    """The page with its per-render CSRF tokens blanked."""
    text = response.content.decode()
    text = re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "", text)
    return re.sub(r'"X-CSRFToken": "[^"]+"', "", text)


def _observable(response) -> dict[str, object]:  # type: ignore[no-untyped-def]
    """What a caller can see of a response, minus the random challenge id in the cookie."""
    cookie = response.cookies[CHALLENGE_COOKIE]
    return {
        "status": response.status_code,
        "location": response.get("Location"),
        "cookies": sorted(response.cookies),
        "cookie_attributes": {k: cookie[k] for k in ("path", "max-age", "httponly", "samesite", "secure")},
        "cookie_length": len(cookie.value),
    }


@pytest.mark.parametrize(
    ("phone", "id_number"),
    [
        ("13900000000", "440781196205120029"),  # a resident's ID number, another phone
        ("13800000000", UNKNOWN_ID),  # a resident's phone, an unknown ID number
        ("13912345678", UNKNOWN_ID),  # nobody
    ],
)
def test_no_match_answers_exactly_like_a_match(world, django_capture_on_commit_callbacks, phone, id_number) -> None:
    known, unknown = Client(), Client()
    with django_capture_on_commit_callbacks(execute=True):
        known_response = known.post("/me/sign-in/", {"phone": "13800000000", "id_number": "440781196205120029"})
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        unknown_response = unknown.post("/me/sign-in/", {"phone": phone, "id_number": id_number})
    assert not callbacks  # nothing will be sent
    assert _observable(unknown_response) == _observable(known_response)
    assert len(ConsoleSmsGateway.messages()) == 1  # only the resident's code went out
    assert SignInChallenge.objects.filter(patient__isnull=True).count() == 1  # and it is throttled alike

    known_page, unknown_page = known.get("/me/sign-in/code/"), unknown.get("/me/sign-in/code/")
    masked = f"{phone[:3]}****{phone[-4:]}"
    assert masked in unknown_page.content.decode()  # what they typed, never what the record holds
    assert _page_text(unknown_page).replace(masked, "PHONE") == _page_text(known_page).replace("138****0000", "PHONE")

    wrong = "000000" if last_code_sent_to("13800000000") != "000000" else "000001"
    known_wrong = known.post("/me/sign-in/code/", {"code": wrong})
    unknown_wrong = unknown.post("/me/sign-in/code/", {"code": wrong})
    assert unknown_wrong.status_code == known_wrong.status_code == 400
    assert "验证码错误，还可以再试4次" in unknown_wrong.content.decode()
    assert "验证码错误，还可以再试4次" in known_wrong.content.decode()


def test_asking_again_within_a_minute_sends_nothing_new(world, django_capture_on_commit_callbacks) -> None:
    patient = world.patients["at_b"]
    client = Client()
    request_code(client, patient)
    first = last_code_sent_to(patient.phone)
    with django_capture_on_commit_callbacks(execute=True):
        again = client.post("/me/sign-in/", {"phone": patient.phone, "id_number": patient.id_number}, follow=True)
    assert "验证码刚刚已发送" in again.content.decode()
    assert len(ConsoleSmsGateway.messages()) == 1 and SignInChallenge.objects.count() == 1
    assert client.post("/me/sign-in/code/", {"code": first})["Location"] == "/me/"


def test_resend_is_throttled_per_minute_and_per_hour(world, django_capture_on_commit_callbacks) -> None:
    patient = world.patients["at_b"]
    client = Client()
    request_code(client, patient)
    response = client.post("/me/sign-in/resend/", follow=True)
    assert "获取验证码过于频繁，请在" in response.content.decode()
    assert SignInChallenge.objects.count() == 1 and len(ConsoleSmsGateway.messages()) == 1

    for sent in range(2, 6):
        _shift_back(SignInChallenge.objects.all(), seconds=61)
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post("/me/sign-in/resend/", follow=True)
        assert "新的验证码已发送" in response.content.decode()
        assert len(ConsoleSmsGateway.messages()) == sent
    # Five codes within the hour: the sixth waits even though a minute has passed.
    _shift_back(SignInChallenge.objects.all(), seconds=61)
    response = client.post("/me/sign-in/resend/", follow=True)
    assert "获取验证码过于频繁" in response.content.decode()
    assert SignInChallenge.objects.count() == 5
    # The newest code is the one that signs in.
    assert client.post("/me/sign-in/code/", {"code": last_code_sent_to(patient.phone)})["Location"] == "/me/"


def test_throttling_is_identical_for_unknown_people(world) -> None:
    client = Client()
    client.post("/me/sign-in/", {"phone": "13912345678", "id_number": UNKNOWN_ID})
    response = client.post("/me/sign-in/resend/", follow=True)
    assert "获取验证码过于频繁，请在" in response.content.decode()
    for _ in range(4):
        _shift_back(SignInChallenge.objects.all(), seconds=61)
        assert "新的验证码已发送" in client.post("/me/sign-in/resend/", follow=True).content.decode()
    _shift_back(SignInChallenge.objects.all(), seconds=61)
    response = client.post("/me/sign-in/", {"phone": "13912345678", "id_number": UNKNOWN_ID})
    assert response.status_code == 429 and "获取验证码过于频繁" in response.content.decode()
    assert not ConsoleSmsGateway.messages()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"phone": "13800000000", "id_number": "440781196205120028"}, "校验码错误"),
        ({"phone": "13800000000", "id_number": "4407811962051200"}, "身份证号应为18位"),
        ({"phone": "13800000000", "id_number": "440781196202300021"}, "出生日期不存在"),
        ({"phone": "0750-5512345", "id_number": "440781196205120029"}, "请输入11位手机号码"),
        ({"phone": "1" * 5000, "id_number": "4" * 5000}, "不超过"),
        ({"phone": "", "id_number": ""}, "这个字段是必填项"),
    ],
)
def test_bad_sign_in_input_is_refused_in_chinese(world, data, message) -> None:
    response = Client().post("/me/sign-in/", data)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not SignInChallenge.objects.exists()


def test_code_page_without_a_pending_code_goes_back(world) -> None:
    client = Client()
    assert client.get("/me/sign-in/code/")["Location"] == "/me/sign-in/"
    assert client.post("/me/sign-in/code/", {"code": "123456"})["Location"] == "/me/sign-in/"
    client.cookies[CHALLENGE_COOKIE] = "forged|138****0000"
    assert client.get("/me/sign-in/code/")["Location"] == "/me/sign-in/"
    assert client.post("/me/sign-in/resend/")["Location"] == "/me/sign-in/"


def test_sign_out_ends_the_session_at_once(world) -> None:
    client = resident_client(world.patients["at_b"])
    token = client.cookies[SESSION_COOKIE].value
    response = client.post("/me/sign-out/")
    assert response["Location"] == "/me/sign-in/"
    assert response.cookies[SESSION_COOKIE].value == ""
    assert ResidentSession.objects.get().ended_at is not None
    stolen = Client()
    stolen.cookies[SESSION_COOKIE] = token  # the old cookie value no longer opens anything
    assert stolen.get("/me/")["Location"] == "/me/sign-in/"


def test_sessions_expire_when_idle_and_at_their_maximum_age(world, settings) -> None:
    client = resident_client(world.patients["at_b"])
    assert client.get("/me/").status_code == 200
    ResidentSession.objects.update(
        last_seen_at=timezone.now() - dt.timedelta(minutes=settings.PORTAL_SESSION_IDLE_MINUTES, seconds=1)
    )
    assert client.get("/me/")["Location"] == "/me/sign-in/"

    client = resident_client(world.patients["at_v"])
    # Signed in two hours ago and used all along: the maximum age still ends it.
    _shift_back(
        ResidentSession.objects.filter(patient=world.patients["at_v"]), hours=settings.PORTAL_SESSION_MAX_HOURS, seconds=1
    )
    assert client.get("/me/")["Location"] == "/me/sign-in/"


def test_recent_use_keeps_the_session_alive(world, settings) -> None:
    client = resident_client(world.patients["at_b"])
    ResidentSession.objects.update(last_seen_at=timezone.now() - dt.timedelta(minutes=settings.PORTAL_SESSION_IDLE_MINUTES - 1))
    assert client.get("/me/").status_code == 200
    assert (timezone.now() - ResidentSession.objects.get().last_seen_at) < dt.timedelta(minutes=1)


def test_sign_in_forms_need_the_csrf_token(world) -> None:
    client = Client(enforce_csrf_checks=True)
    assert client.post("/me/sign-in/", {"phone": "13800000000", "id_number": "440781196205120029"}).status_code == 403
    assert not SignInChallenge.objects.exists()
