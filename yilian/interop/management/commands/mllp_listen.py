"""`manage.py mllp_listen --port 2575`: receive HL7 v2 over MLLP and answer each message with its
ACK (AA) or NAK (AE/AR with the reason). The sending institution is authenticated by its API key
in MSH-8 (blanked before the message is kept). One transaction per message."""

from __future__ import annotations

import asyncio
from typing import Any

from asgiref.sync import sync_to_async
from django.core.management.base import BaseCommand
from django.db import close_old_connections

from yilian.interop import hl7v2
from yilian.interop.models import Channel
from yilian.interop.services import hl7_receive

MAX_MESSAGE_BYTES = 2 * 1024 * 1024


def _handle(raw: bytes) -> bytes:
    close_old_connections()
    try:
        ack, _message = hl7_receive(raw=raw, channel=Channel.HL7_MLLP, api_key=None)
        return ack
    finally:
        close_old_connections()


async def serve_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Read MLLP blocks (VT … FS CR) one after another and answer each."""
    handle = sync_to_async(_handle, thread_sensitive=True)
    try:
        while True:
            try:
                await reader.readuntil(hl7v2.START_BLOCK)
                block = await reader.readuntil(hl7v2.END_BLOCK + hl7v2.CARRIAGE_RETURN)
            except (asyncio.IncompleteReadError, ConnectionError):
                break
            except asyncio.LimitOverrunError:
                writer.write(hl7v2.frame(hl7v2.acknowledgement(None, code="AR", text="消息过大。")))
                await writer.drain()
                break
            ack = await handle(block[: -len(hl7v2.END_BLOCK + hl7v2.CARRIAGE_RETURN)])
            writer.write(hl7v2.frame(ack))
            await writer.drain()
    finally:
        writer.close()


async def serve(host: str, port: int, ready: Any = None) -> None:
    server = await asyncio.start_server(serve_connection, host, port, limit=MAX_MESSAGE_BYTES)
    if ready is not None:
        ready(server)
    async with server:
        await server.serve_forever()


class Command(BaseCommand):
    help = "Receive HL7 v2 messages over MLLP and answer each with an ACK or NAK."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=2575)

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write(f"MLLP listening on {options['host']}:{options['port']}")
        asyncio.run(serve(options["host"], options["port"]))
