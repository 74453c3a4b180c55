"""/api/v1 for interop: HL7 v2 over HTTP (the body is the ER7 message, the answer its ACK; or a batch,
FHS/BHS … BTS/FTS, answered with a batch of ACKs)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from ninja import Router

from yilian.core.api import ERRORS, BearerKeyAuth, ErrorOut, HeaderKeyAuth, actor_of
from yilian.interop import hl7v2, services
from yilian.interop.models import Channel

router = Router(tags=["interop"])

MAX_HL7_BYTES = 2 * 1024 * 1024


@router.post(
    "/interop/hl7",
    auth=[BearerKeyAuth(), HeaderKeyAuth()],
    response={200: None, ERRORS: ErrorOut},
    openapi_extra={"requestBody": {"content": {"x-application/hl7-v2+er7": {"schema": {"type": "string"}}}}},
)
def hl7_receive(request: HttpRequest) -> HttpResponse:
    """接收一条 HL7 v2 消息（ER7，字符集按 MSH-18）：返回 ACK（AA 接收、AE 内容错误、AR 结构错误）。
    也接收批量消息（HL7 批处理协议 FHS/BHS … BTS/FTS）：每条消息各自保存、各自应答，返回按顺序排列的批量 ACK。"""
    actor = actor_of(request)
    if hl7v2.is_batch(request.body):
        answer, charset = services.hl7_receive_batch(raw=request.body, channel=Channel.HL7_HTTP, api_key=actor.api_key)
        content_type = "x-application/hl7-v2+er7" + (f"; charset={charset}" if charset else "")
        return HttpResponse(answer, content_type=content_type)
    ack, message = services.hl7_receive(raw=request.body, channel=Channel.HL7_HTTP, api_key=actor.api_key)
    charset = message.charset if message is not None and message.charset else "utf-8"
    return HttpResponse(ack, content_type=f"x-application/hl7-v2+er7; charset={charset}")
