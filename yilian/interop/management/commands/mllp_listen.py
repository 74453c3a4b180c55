"""`manage.py mllp_listen --port 2575`: receive HL7 v2 over MLLP and answer each message with its
ACK (AA) or NAK (AE/AR with the reason). The sending institution is authenticated by its API key
in MSH-8 (blanked before the message is kept), or BHS-8 / FHS-8 for a batch.

A block holding a batch (FHS/BHS … BTS/FTS) is answered with a batch of ACKs. Blocks a sender
sends without waiting for each answer (pipelining) are applied together: those already received
when one is read are taken with it (up to MAX_TOGETHER) through `hl7_receive_many`, the batch path,
and answered one by one in order. A sender that waits for each ACK gets exactly the one-message path."""

from __future__ import annotations

import asyncio
from typing import Any

from asgiref.sync import sync_to_async
from django.core.management.base import BaseCommand
from django.db import close_old_connections

from yilian.interop import hl7v2
from yilian.interop.models import Channel
from yilian.interop.services import hl7_receive, hl7_receive_batch, hl7_receive_many

MAX_MESSAGE_BYTES = 2 * 1024 * 1024
MAX_TOGETHER = 100
TRAILER = hl7v2.END_BLOCK + hl7v2.CARRIAGE_RETURN


def _handle(raws: list[bytes]) -> list[bytes]:
    """The answers to blocks received together, in order."""
    close_old_connections()
    try:
        if len(raws) == 1 and not hl7v2.is_batch(raws[0]):
            ack, _message = hl7_receive(raw=raws[0], channel=Channel.HL7_MLLP, api_key=None)
            return [ack]
        answers: list[bytes] = []
        run: list[bytes] = []
        for raw in [*raws, b""]:
            if raw and not hl7v2.is_batch(raw):
                run.append(raw)
                continue
            answers += [ack for ack, _message in hl7_receive_many(raws=run, channel=Channel.HL7_MLLP, api_key=None)]
            run = []
            if raw:
                answers.append(hl7_receive_batch(raw=raw, channel=Channel.HL7_MLLP, api_key=None)[0])
        return answers
    finally:
        close_old_connections()


def _block_waiting(reader: asyncio.StreamReader) -> bool:
    """Whether a whole block has already arrived (so reading it will not wait)."""
    buffered = getattr(reader, "_buffer", b"")
    return hl7v2.START_BLOCK in buffered and TRAILER in buffered


async def serve_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Read MLLP blocks (VT … FS CR) one after another and answer each (blocks already waiting together)."""
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
            blocks = [block[: -len(TRAILER)]]
            while len(blocks) < MAX_TOGETHER and _block_waiting(reader):
                await reader.readuntil(hl7v2.START_BLOCK)
                blocks.append((await reader.readuntil(TRAILER))[: -len(TRAILER)])
            for ack in await handle(blocks):
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
