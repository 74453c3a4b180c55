"""The SMS interface: dispatch to the configured gateway; the console gateway prints and keeps."""

from __future__ import annotations

import pytest

from yilian.notifications.sms import ConsoleSmsGateway, sms_send


class RecordingGateway:
    """A second gateway, to show the setting chooses where messages go."""

    sent: list[tuple[str, str]] = []

    def send(self, *, phone: str, text: str) -> None:
        self.sent.append((phone, text))


def test_console_gateway_prints_and_keeps_the_last_messages(capsys) -> None:
    ConsoleSmsGateway.clear()
    for n in range(ConsoleSmsGateway.KEEP + 3):
        sms_send(phone=" 13800000000 ", text=f"第{n}条")
    assert "[短信 → 13800000000] 第0条" in capsys.readouterr().out
    kept = ConsoleSmsGateway.messages(phone="13800000000")
    assert len(kept) == ConsoleSmsGateway.KEEP and kept[-1].text == f"第{ConsoleSmsGateway.KEEP + 2}条"
    assert ConsoleSmsGateway.messages(phone="13900000000") == []
    ConsoleSmsGateway.clear()


def test_the_setting_names_the_gateway(settings) -> None:
    ConsoleSmsGateway.clear()
    settings.YILIAN_SMS_GATEWAY = f"{__name__}.RecordingGateway"
    sms_send(phone="13800000000", text="验证码123456")
    assert RecordingGateway.sent == [("13800000000", "验证码123456")]
    assert ConsoleSmsGateway.messages() == []


@pytest.mark.parametrize(("phone", "text"), [("", "x"), ("not a phone", "x"), ("13800000000", ""), ("13800000000", "长" * 501)])
def test_nonsense_is_refused_before_any_gateway(phone, text) -> None:
    ConsoleSmsGateway.clear()
    with pytest.raises(ValueError):
        sms_send(phone=phone, text=text)
    assert ConsoleSmsGateway.messages() == []
