"""The SMS interface (短信): the one door through which Yilian sends text messages to phones.

`sms_send(phone=..., text=...)` hands the message to the gateway named by the setting
`YILIAN_SMS_GATEWAY` (a dotted path to a class implementing `SmsGateway`). A real operator's
gateway (the hospital's SMS platform) is outside this repository; the console gateway is used in
the demo and the tests: it prints each message to standard output, where the person running the
demo reads the code, and keeps the last messages in memory so tests can read them back.

Callers send after their transaction commits (`transaction.on_commit`), like every side effect.
"""

from __future__ import annotations

import re
import sys
import threading
from collections import deque
from dataclasses import dataclass
from functools import cache
from typing import Protocol

from django.conf import settings
from django.utils import timezone
from django.utils.module_loading import import_string

CONSOLE_GATEWAY = "yilian.notifications.sms.ConsoleSmsGateway"
MAX_TEXT_LENGTH = 500  # an SMS of up to 7 concatenated parts; longer texts are a caller's bug
PHONE_PATTERN = re.compile(r"^\+?\d{5,20}$")


class SmsGateway(Protocol):
    """What a gateway does: deliver one text to one phone number, or raise."""

    def send(self, *, phone: str, text: str) -> None: ...


@dataclass(frozen=True)
class SentSms:
    phone: str
    text: str
    at: object  # an aware datetime


class ConsoleSmsGateway:
    """Prints messages instead of sending them, and remembers the last `KEEP` of them.

    The memory is per process and shared by its threads, so a test and the live server it drives
    see the same outbox.
    """

    KEEP = 100
    _outbox: deque[SentSms] = deque(maxlen=KEEP)
    _lock = threading.Lock()

    def send(self, *, phone: str, text: str) -> None:
        message = SentSms(phone=phone, text=text, at=timezone.now())
        with self._lock:
            self._outbox.append(message)
        print(f"[短信 → {phone}] {text}", file=sys.stdout, flush=True)

    @classmethod
    def messages(cls, *, phone: str | None = None) -> list[SentSms]:
        """Messages kept so far, oldest first (only those to `phone` when given)."""
        with cls._lock:
            kept = list(cls._outbox)
        return [m for m in kept if phone is None or m.phone == phone]

    @classmethod
    def clear(cls) -> None:
        with cls._lock:
            cls._outbox.clear()


@cache
def _gateway(path: str) -> SmsGateway:
    gateway: SmsGateway = import_string(path)()
    return gateway


def sms_gateway() -> SmsGateway:
    """The configured gateway (one instance per process)."""
    return _gateway(getattr(settings, "YILIAN_SMS_GATEWAY", CONSOLE_GATEWAY))


def sms_send(*, phone: str, text: str) -> None:
    """Send `text` to `phone` through the configured gateway."""
    phone = phone.strip()
    if not PHONE_PATTERN.match(phone):
        raise ValueError("not a phone number")
    if not text or len(text) > MAX_TEXT_LENGTH:
        raise ValueError("SMS text empty or too long")
    sms_gateway().send(phone=phone, text=text)
