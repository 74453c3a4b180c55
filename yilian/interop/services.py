"""Receiving, processing, fixing and replaying inbound messages; CSV import jobs.

Every channel goes through `message_store` (kept as sent, one row per distinct content per
institution: a second delivery finds the first and changes nothing) and `message_process` (parse →
items → MPI and records in ONE transaction; on any refusal nothing is written and the message
becomes a dead letter with its reason and the answer the sender got).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import IntegrityError, OperationalError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from yilian.accounts.actors import Actor
from yilian.accounts.models import ApiKey
from yilian.accounts.roles import Permission
from yilian.core.rows import insert, update
from yilian.interop import csvimport, hl7v2
from yilian.interop.apply import Applied, Applier, MessageRefused, apply_messages
from yilian.interop.fhir import mapping
from yilian.interop.items import Item, MergeItem, ParseError
from yilian.interop.models import Channel, ImportJob, ImportKind, ImportStatus, InboundMessage, MessageStatus
from yilian.organizations.models import Institution

MAX_REASON = 4000
MAX_STORED_ERRORS = 500
IMPORT_CHUNK = 200


def content_key(channel: str, raw: bytes) -> str:
    """What makes two deliveries the same: the channel family and the exact content."""
    family = "hl7" if channel in {Channel.HL7_HTTP, Channel.HL7_MLLP} else channel
    return hashlib.sha256(family.encode() + b"\x00" + raw).hexdigest()


def _issues_text(issues: list[tuple[str, str]]) -> str:
    return "；".join(f"{where}：{what}" if where else what for where, what in issues)[:MAX_REASON]


def validation_issues(exc: ValidationError) -> list[tuple[str, str]]:
    if hasattr(exc, "error_dict"):
        return [("" if name == "__all__" else name, str(m)) for name, messages in exc.message_dict.items() for m in messages]
    return [("", str(m)) for m in exc.messages]


@dataclass
class Result:
    """What processing a message gave: accepted or not, what was written, the problems, and the
    sender's answer (ACK bytes for HL7, a JSON document for FHIR)."""

    message: InboundMessage
    accepted: bool
    duplicate: bool = False
    applied: list[Applied] = field(default_factory=list)
    issues: list[tuple[str, str]] = field(default_factory=list)
    response: Any = None


def message_store(
    *,
    institution: Institution,
    api_key: ApiKey | None,
    channel: str,
    raw: bytes,
    kind: str = "",
    control_id: str = "",
    charset: str = "",
) -> tuple[InboundMessage, bool]:
    """Keep a message as it arrived; (message, created). The same content again returns the first row."""
    key = content_key(channel, raw)
    message = InboundMessage(
        institution=institution,
        api_key=api_key,
        channel=channel,
        kind=kind[:40],
        control_id=control_id[:64],
        charset=charset[:20],
        raw=raw,
        content_key=key,
    )
    if _insert_unless_kept(message):
        return message, True
    # This content was kept before (or by a concurrent delivery, whose insert this one waited for).
    return InboundMessage.objects.get(institution=institution, content_key=key), False


def _insert_unless_kept(message: InboundMessage) -> bool:
    """INSERT a new message unless its institution already keeps the same content (unique on
    institution and content key): one statement that cannot fail on the duplicate (so no savepoint
    inside a caller's transaction, and no read before it). True when inserted (the message then has
    its primary key)."""
    return insert(message, skip_conflict=True)


def _finish(message: InboundMessage, *, accepted: bool, reason: str, response: str) -> None:
    message.status = MessageStatus.ACCEPTED if accepted else MessageStatus.REJECTED
    message.reason = "" if accepted else reason[:MAX_REASON]
    message.response = response
    message.attempts += 1
    message.processed_at = timezone.now()
    update(message, ["status", "kind", "reason", "response", "attempts", "processed_at", "updated_at"])


def _actor_for(message: InboundMessage, actor: Actor | None) -> Actor | None:
    if actor is not None:
        return actor
    return Actor(user=None, api_key=message.api_key) if message.api_key is not None else None


def _apply_all(message: InboundMessage, items: list[Item], actor: Actor | None) -> list[Applied]:
    applier = Applier(institution=message.institution, actor=_actor_for(message, actor))
    return [done for done in applier.apply_all(items) if done is not None]


# --- HL7 v2 --------------------------------------------------------------------------------


def hl7_receive(*, raw: bytes, channel: str, api_key: ApiKey | None) -> tuple[bytes, InboundMessage | None]:
    """One HL7 v2 message from a member system → its ACK. The key comes from the HTTP headers or,
    over MLLP, from MSH-8; without a usable key the answer is AR and nothing is kept (we do not
    know whose it is)."""
    from yilian.accounts.services import api_key_authenticate

    try:
        header = hl7v2.read_header(raw)
    except ParseError as exc:
        header = None
        reason = exc.message
    if api_key is None and header is not None and header.security:
        api_key = api_key_authenticate(header.security)
    if api_key is None:
        return hl7v2.acknowledgement(
            header, code="AR", text=_("未认证：请提供有效的机构接口密钥（MSH-8 或 HTTP 请求头）。")
        ), None
    stored = hl7v2.redact_security(raw)
    message, created = message_store(
        institution=api_key.institution,
        api_key=api_key,
        channel=channel,
        raw=stored,
        kind=header.message_type if header else "",
        control_id=header.control_id if header else "",
        charset=header.charset if header else "",
    )
    if not created and message.status in {MessageStatus.ACCEPTED, MessageStatus.DISCARDED} and message.response:
        return message.response.encode(message.charset or "utf-8", errors="replace"), message
    if header is None:
        ack = hl7v2.acknowledgement(None, code="AR", text=reason)
        _finish(message, accepted=False, reason=reason, response=ack.decode("utf-8"))
        return ack, message
    result = hl7_process(message=message)
    return result.response, message


def hl7_process(*, message: InboundMessage, actor: Actor | None = None) -> Result:
    """Parse and apply a stored HL7 message in one transaction; the ACK (AA / AE / AR) is kept."""
    raw = bytes(message.raw)
    header: hl7v2.Header | None = None
    try:
        header = hl7v2.read_header(raw)
        parsed = hl7v2.parse(raw)
        with transaction.atomic():
            applied = _apply_all(message, parsed.items, actor)
            ack = hl7v2.acknowledgement(header, code="AA", text=_("已接收"))
            _finish(message, accepted=True, reason="", response=ack.decode(header.charset, errors="replace"))
        return Result(message, True, applied=applied, response=ack)
    except ParseError as exc:
        issues, code = exc.issues, "AR" if exc.code in {"structure", "encoding"} else "AE"
    except ValidationError as exc:
        issues, code = validation_issues(exc), "AE"
    except PermissionDenied as exc:
        issues, code = [("", str(exc) or _("无权执行此操作。"))], "AE"
    reason = _issues_text(issues)
    charset = header.charset if header else "utf-8"
    ack = hl7v2.acknowledgement(header, code=code, text=reason, error_location=issues[0][0] if issues else "", charset=charset)
    _finish(message, accepted=False, reason=reason, response=ack.decode(charset, errors="replace"))
    return Result(message, False, issues=issues, response=ack)


# --- HL7 v2: several messages at once (the batch protocol, MLLP blocks that arrive together) ---


# Messages per HL7 batch (one transaction applies them): a bigger batch is refused whole (AR).
MAX_BATCH_MESSAGES = 1000
BATCH_FIELDS = ["status", "reason", "response", "attempts", "processed_at", "updated_at"]


def hl7_receive_batch(*, raw: bytes, channel: str, api_key: ApiKey | None) -> tuple[bytes, str]:
    """An HL7 v2 batch (FHS / BHS … BTS / FTS) → the batch of its ACKs, one per message in order.
    Each message is kept, answered and dead-lettered on its own, exactly as if it had come alone
    (`hl7_receive`); the key comes from the HTTP headers or, over MLLP, from BHS-8 / FHS-8 or each
    MSH-8. Returns the answer and its charset (the messages' own when they share one, else '')."""
    from yilian.accounts.services import api_key_authenticate

    try:
        batch = hl7v2.split_batch(raw)
        if len(batch.messages) > MAX_BATCH_MESSAGES:
            raise ParseError(
                f"一个批量最多 {MAX_BATCH_MESSAGES} 条消息（收到 {len(batch.messages)} 条），请拆分后发送。", code="structure"
            )
    except ParseError as exc:
        return hl7v2.acknowledgement(None, code="AR", text=exc.message), "utf-8"
    if api_key is None and batch.security:
        api_key = api_key_authenticate(batch.security)
    answers = hl7_receive_many(raws=batch.messages, channel=channel, api_key=api_key)
    charsets = {(message.charset if message is not None else "") or "utf-8" for _ack, message in answers}
    return hl7v2.batch_acknowledgement(batch, [ack for ack, _message in answers]), charsets.pop() if len(charsets) == 1 else ""


def hl7_receive_many(*, raws: list[bytes], channel: str, api_key: ApiKey | None) -> list[tuple[bytes, InboundMessage | None]]:
    """`hl7_receive` for consecutive messages, with the same answers and stored rows, in a few
    round trips: the messages are kept with one INSERT, and those of one sender applied together
    (`hl7_process_many`). A content sent twice in the same call is processed once; the second gets
    the first's answer."""
    from yilian.accounts.services import api_key_authenticate

    answers: list[tuple[bytes, InboundMessage | None] | None] = [None] * len(raws)
    keys: dict[str, ApiKey | None] = {}
    pending: list[tuple[int, ApiKey, bytes, hl7v2.Header | None, str]] = []
    for position, raw in enumerate(raws):
        reason = ""
        header: hl7v2.Header | None
        try:
            header = hl7v2.read_header(raw)
        except ParseError as exc:
            header, reason = None, exc.message
        key = api_key
        if key is None and header is not None and header.security:
            if header.security not in keys:
                keys[header.security] = api_key_authenticate(header.security)
            key = keys[header.security]
        if key is None:
            text = _("未认证：请提供有效的机构接口密钥（MSH-8 或 HTTP 请求头）。")
            answers[position] = (hl7v2.acknowledgement(header, code="AR", text=text), None)
            continue
        pending.append((position, key, hl7v2.redact_security(raw), header, reason))
    stored = _store_many(channel, [(key, raw, header) for _position, key, raw, header, _reason in pending])
    to_process: list[InboundMessage] = []
    queued: set[int] = set()
    later: list[tuple[int, InboundMessage]] = []
    for (position, _key, _raw, header, reason), (message, created) in zip(pending, stored, strict=True):
        if id(message) in queued:
            later.append((position, message))
            continue
        if not created and message.status in {MessageStatus.ACCEPTED, MessageStatus.DISCARDED} and message.response:
            answers[position] = (message.response.encode(message.charset or "utf-8", errors="replace"), message)
            continue
        if header is None:
            ack = hl7v2.acknowledgement(None, code="AR", text=reason)
            _finish(message, accepted=False, reason=reason, response=ack.decode("utf-8"))
            answers[position] = (ack, message)
            continue
        queued.add(id(message))
        to_process.append(message)
        later.append((position, message))
    results = {id(result.message): result for result in hl7_process_many(messages=to_process)}
    for position, message in later:
        result = results[id(message)]
        answers[position] = (result.response, message)
    return [answer for answer in answers if answer is not None]


def _store_many(channel: str, items: list[tuple[ApiKey, bytes, hl7v2.Header | None]]) -> list[tuple[InboundMessage, bool]]:
    """`message_store` for several messages: one read of the contents already kept (per sending
    institution) and one INSERT of the new ones. The same content twice gives the same row."""
    out: list[tuple[InboundMessage, bool] | None] = [None] * len(items)
    by_institution: dict[int, list[int]] = {}
    for position, (key, _raw, _header) in enumerate(items):
        by_institution.setdefault(key.institution_id, []).append(position)
    for positions in by_institution.values():
        institution = items[positions[0]][0].institution
        content = {position: content_key(channel, items[position][1]) for position in positions}
        known = {
            message.content_key: message
            for message in InboundMessage.objects.filter(institution=institution, content_key__in=set(content.values()))
        }
        new: dict[str, InboundMessage] = {}
        for position in positions:
            key, raw, header = items[position]
            found = known.get(content[position])
            if found is not None:
                out[position] = (found, False)
            elif content[position] in new:
                out[position] = (new[content[position]], False)
            else:
                new[content[position]] = InboundMessage(
                    institution=institution,
                    api_key=key,
                    channel=channel,
                    kind=(header.message_type if header else "")[:40],
                    control_id=(header.control_id if header else "")[:64],
                    charset=(header.charset if header else "")[:20],
                    raw=raw,
                    content_key=content[position],
                )
                out[position] = (new[content[position]], True)
        try:
            InboundMessage.objects.bulk_create(list(new.values()))
        except IntegrityError:
            # A concurrent delivery of one of them stored it first: one by one, as message_store does.
            for position in positions:
                key, raw, header = items[position]
                out[position] = message_store(
                    institution=institution,
                    api_key=key,
                    channel=channel,
                    raw=raw,
                    kind=header.message_type if header else "",
                    control_id=header.control_id if header else "",
                    charset=header.charset if header else "",
                )
    return [stored for stored in out if stored is not None]


def hl7_process_many(*, messages: list[InboundMessage]) -> list[Result]:
    """`hl7_process` for several stored messages, with the same outcome for each: the messages of
    one sender are applied together in one transaction (`apply.apply_messages`). When one is refused
    the transaction rolls back, the messages before it are applied together again, the refused one
    goes through `hl7_process` alone (so its NAK and dead letter are what it would have got alone),
    and the rest continue together. ADT^A40 (a merge) always goes alone. One result per message, in order."""
    results: dict[int, Result] = {}
    ready: list[tuple[InboundMessage, hl7v2.Header, list[Item]]] = []
    for message in messages:
        raw = bytes(message.raw)
        try:
            header = hl7v2.read_header(raw)
            items = hl7v2.parse(raw).items
        except ParseError:
            results[id(message)] = hl7_process(message=message)  # refused again there, with its AR / AE
            continue
        ready.append((message, header, items))
    start = 0
    while start < len(ready):
        message = ready[start][0]
        end = start
        while (
            end < len(ready)
            and ready[end][0].institution_id == message.institution_id
            and not any(isinstance(item, MergeItem) for item in ready[end][2])
        ):
            end += 1
        if end == start:
            results[id(message)] = hl7_process(message=message)
            start += 1
            continue
        while end > start:
            try:
                for result in _apply_together(ready[start:end]):
                    results[id(result.message)] = result
                break
            except MessageRefused as exc:
                refused = start + exc.index
                if refused > start:
                    end = refused  # the ones before it, together; then it alone
                    continue
                results[id(ready[refused][0])] = hl7_process(message=ready[refused][0])
                end = refused + 1
                break
            except (IntegrityError, OperationalError) as exc:
                if isinstance(exc, OperationalError) and getattr(exc.__cause__, "sqlstate", "") not in {"40P01", "40001"}:
                    raise
                # A concurrent delivery wrote one of the same rows first (or took their locks in another
                # order): one by one, each retried as usual.
                for one, _header, _items in ready[start:end]:
                    results[id(one)] = hl7_process(message=one)
                break
        start = end
    return [results[id(message)] for message in messages]


def _save_outcomes(messages: list[InboundMessage]) -> None:
    """Save what `_apply_together` set on accepted messages in one statement. On PostgreSQL an
    UPDATE … FROM (VALUES …): Django's bulk_update builds a CASE per field and row, which cost more
    CPU than applying the messages."""
    connection = transaction.get_connection()
    if connection.vendor != "postgresql":
        InboundMessage.objects.bulk_update(messages, BATCH_FIELDS)
        return
    first = messages[0]
    table = connection.ops.quote_name(InboundMessage._meta.db_table)
    values = ", ".join(["(%s::bigint, %s::text, %s::integer)"] * len(messages))
    sql = (
        f"UPDATE {table} AS m SET status = %s, reason = %s, response = v.response, attempts = v.attempts, "  # noqa: S608 - table name only
        f"processed_at = %s, updated_at = %s FROM (VALUES {values}) AS v(id, response, attempts) WHERE m.id = v.id"
    )
    parameters: list[Any] = [first.status, first.reason, first.processed_at, first.updated_at]
    for message in messages:
        parameters += [message.pk, message.response, message.attempts]
    with connection.cursor() as cursor:
        cursor.execute(sql, parameters)


def _apply_together(ready: list[tuple[InboundMessage, hl7v2.Header, list[Item]]]) -> list[Result]:
    with transaction.atomic():
        applied = apply_messages(institution=ready[0][0].institution, messages=[items for _message, _header, items in ready])
        now = timezone.now()
        acks = [hl7v2.acknowledgement(header, code="AA", text=_("已接收")) for _message, header, _items in ready]
        for (message, header, _items), ack in zip(ready, acks, strict=True):
            message.status, message.reason = MessageStatus.ACCEPTED, ""
            message.response = ack.decode(header.charset, errors="replace")
            message.attempts += 1
            message.processed_at = message.updated_at = now
        messages = [entry[0] for entry in ready]
        _save_outcomes(messages)
    return [Result(message, True, applied=done, response=ack) for message, done, ack in zip(messages, applied, acks, strict=True)]


# --- FHIR ----------------------------------------------------------------------------------


def fhir_receive(*, raw: bytes, api_key: ApiKey, kind: str = "") -> Result:
    """A FHIR resource or Bundle from a member system. The same body twice returns the first answer."""
    message, created = message_store(
        institution=api_key.institution, api_key=api_key, channel=Channel.FHIR, raw=raw, kind=kind, charset="utf-8"
    )
    if not created and message.status in {MessageStatus.ACCEPTED, MessageStatus.DISCARDED} and message.response:
        return Result(message, True, duplicate=True, response=json.loads(message.response))
    return fhir_process(message=message)


def _outcome(issues: list[tuple[str, str]], *, severity: str = "error", code: str = "invalid") -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [
            {"severity": severity, "code": code, "diagnostics": what, **({"expression": [where]} if where else {})}
            for where, what in issues
        ]
        or [{"severity": severity, "code": code}],
    }


def _location(applied: Applied) -> str:
    return f"{applied.resource}/{applied.uuid}"


def _entry_response(applied: list[Applied]) -> dict[str, Any]:
    if not applied:
        return {"status": "200 OK"}
    last = applied[-1]
    return {"status": "201 Created" if last.created else "200 OK", "location": _location(last)}


def _bundle_items(bundle: dict[str, Any]) -> list[tuple[int, list[Item]]]:
    """(entry index, items) per entry of a checked Bundle, references resolved across entries."""
    refs = mapping.References()
    entries = bundle.get("entry") or []
    for entry in entries:
        if isinstance(entry.get("resource"), dict):
            mapping.register(refs, entry["resource"], entry.get("fullUrl", ""))
    out = []
    # Patients first, then encounters, then the rest: an entry may refer to one further down.
    order = {"Patient": 0, "Encounter": 1}
    indexed = sorted(enumerate(entries), key=lambda pair: order.get(str((pair[1].get("resource") or {}).get("resourceType")), 2))
    for index, entry in indexed:
        where = f"Bundle.entry[{index}]"
        resource = entry.get("resource")
        method = (entry.get("request") or {}).get("method", "")
        if resource is None:
            raise ParseError("", issues=[(where, "条目缺少 resource（仅接收 POST / PUT 写入）。")], code="not-supported")
        if method not in {"", "POST", "PUT"}:
            raise ParseError(
                "", issues=[(f"{where}.request.method", f"不支持的操作：{method}（仅接收 POST / PUT）。")], code="not-supported"
            )
        if resource.get("resourceType") not in mapping.SUPPORTED:
            raise ParseError(
                "", issues=[(f"{where}.resource", f"不接收的资源类型：{resource.get('resourceType')}。")], code="not-supported"
            )
        out.append((index, mapping.resource_items(resource, refs, where=f"{where}.resource", full_url=entry.get("fullUrl", ""))))
    return out


def fhir_process(*, message: InboundMessage, actor: Actor | None = None) -> Result:
    """Validate against R4, map and apply. A transaction Bundle is one transaction; a batch is one
    per entry (the message is a dead letter if any entry failed; replay is idempotent)."""
    try:
        document = mapping.loads(bytes(message.raw))
        resource = (
            mapping.check(document) if not (isinstance(document, dict) and document.get("resourceType") == "Bundle") else document
        )
        if resource.get("resourceType") == "Bundle":
            problems = mapping.validate(resource)
            if problems:
                raise ParseError("Bundle 不符合 FHIR R4。", issues=problems, code="structure")
            kind = f"Bundle/{resource.get('type')}"
            if resource.get("type") not in {"transaction", "batch"}:
                raise ParseError(
                    "", issues=[("Bundle.type", "只接收 transaction 或 batch 类型的 Bundle。")], code="not-supported"
                )
            _set_kind(message, kind)
            if resource["type"] == "batch":
                return _batch(message, resource, actor)
            entries = _bundle_items(resource)
            with transaction.atomic():
                # All entries at once: the Bundle is one transaction, so an identity met in one entry
                # holds for the next and the rows of all entries are written together (a batch
                # applies entry by entry: each may roll back alone).
                applier = Applier(institution=message.institution, actor=_actor_for(message, actor))
                flat = [(index, item) for index, items in entries for item in items]
                per_entry: dict[int, list[Applied]] = {index: [] for index, _items in entries}
                all_applied: list[Applied] = []
                for (index, _item), done in zip(flat, applier.apply_all([item for _index, item in flat]), strict=True):
                    if done is not None:
                        per_entry[index].append(done)
                        all_applied.append(done)
                responses = {index: {"response": _entry_response(applied)} for index, applied in per_entry.items()}
                body = {
                    "resourceType": "Bundle",
                    "type": "transaction-response",
                    "entry": [responses[i] for i in sorted(responses)],
                }
                _finish(message, accepted=True, reason="", response=json.dumps(body, ensure_ascii=False))
            return Result(message, True, applied=all_applied, response=body)
        _set_kind(message, resource["resourceType"])
        with transaction.atomic():
            items = mapping.resource_items(resource, mapping.References())
            applied = _apply_all(message, items, actor)
            note = f"{_('已接收。')} {_location(applied[-1])}" if applied else _("已接收。")
            body = _outcome([("", note)], severity="information", code="informational")
            _finish(message, accepted=True, reason="", response=json.dumps(body, ensure_ascii=False))
        return Result(message, True, applied=applied, response=body)
    except ParseError as exc:
        issues, code = exc.issues, {"structure": "structure", "not-supported": "not-supported"}.get(exc.code, "invalid")
    except ValidationError as exc:
        issues, code = validation_issues(exc), "business-rule"
    except PermissionDenied as exc:
        issues, code = [("", str(exc) or _("无权执行此操作。"))], "forbidden"
    body = _outcome(issues, code=code)
    _finish(message, accepted=False, reason=_issues_text(issues), response=json.dumps(body, ensure_ascii=False))
    return Result(message, False, issues=issues, response=body)


def _set_kind(message: InboundMessage, kind: str) -> None:
    """Name what the message turned out to be; saved with its outcome by `_finish`."""
    message.kind = kind[:40]


def _batch(message: InboundMessage, bundle: dict[str, Any], actor: Actor | None) -> Result:
    refs = mapping.References()
    entries = bundle.get("entry") or []
    for entry in entries:
        if isinstance(entry.get("resource"), dict):
            mapping.register(refs, entry["resource"], entry.get("fullUrl", ""))
    responses: list[dict[str, Any]] = []
    issues: list[tuple[str, str]] = []
    applied_all: list[Applied] = []
    for index, entry in enumerate(entries):
        where = f"Bundle.entry[{index}]"
        try:
            resource = entry.get("resource")
            if not isinstance(resource, dict):
                raise ParseError("", issues=[(where, "条目缺少 resource。")])
            mapping.check(resource, f"{where}.resource")
            with transaction.atomic():
                applied = _apply_all(message, mapping.resource_items(resource, refs, where=f"{where}.resource"), actor)
            applied_all += applied
            responses.append({"response": _entry_response(applied)})
        except (ParseError, ValidationError, PermissionDenied) as exc:
            entry_issues = (
                exc.issues
                if isinstance(exc, ParseError)
                else validation_issues(exc)
                if isinstance(exc, ValidationError)
                else [("", str(exc))]
            )
            entry_issues = [
                (w if w.startswith("Bundle") else f"{where}.resource{('.' + w) if w and not w[0].isupper() else ''}", m)
                for w, m in entry_issues
            ]
            issues += entry_issues
            responses.append({"response": {"status": "422 Unprocessable Entity", "outcome": _outcome(entry_issues)}})
    body = {"resourceType": "Bundle", "type": "batch-response", "entry": responses}
    _finish(message, accepted=not issues, reason=_issues_text(issues), response=json.dumps(body, ensure_ascii=False))
    return Result(message, not issues, applied=applied_all, issues=issues, response=body)


# --- The dead-letter list ------------------------------------------------------------------


def _require_manage(actor: Actor) -> None:
    if not actor.can(Permission.INTEROP_MANAGE):
        raise PermissionDenied(_("您当前的角色无权管理数据接入。"))


def message_process(*, message: InboundMessage, actor: Actor | None = None) -> Result:
    """Process a stored message by its channel (FHIR, HL7 v2, or a CSV row)."""
    if message.channel == Channel.FHIR:
        return fhir_process(message=message, actor=actor)
    if message.channel == Channel.CSV:
        return csv_row_process(message=message, actor=actor)
    return hl7_process(message=message, actor=actor)


def message_edit(*, actor: Actor, message: InboundMessage, text: str) -> InboundMessage:
    """Fix a dead letter's content (kept in its charset). Only rejected messages may be edited."""
    _require_manage(actor)
    if message.status != MessageStatus.REJECTED:
        raise ValidationError(_("只有已拒收的消息可以修改。"))
    charset = message.charset or "utf-8"
    if message.channel != Channel.CSV and message.channel != Channel.FHIR:
        text = text.replace("\r\n", "\r").replace("\n", "\r")
    try:
        raw = text.encode(charset)
    except (UnicodeEncodeError, LookupError):
        raise ValidationError({"text": [_("内容含有无法用 %(charset)s 编码的字符。") % {"charset": charset}]}) from None
    key = content_key(message.channel, raw)
    if InboundMessage.objects.filter(institution=message.institution, content_key=key).exclude(pk=message.pk).exists():
        raise ValidationError({"text": [_("修改后的内容与另一条已接收的消息相同。")]}, code="conflict")
    message.raw, message.content_key = raw, key
    message.edited_by, message.edited_at = actor.user, timezone.now()
    message.save(update_fields=["raw", "content_key", "edited_by", "edited_at", "updated_at"])
    return message


def message_replay(*, actor: Actor, message: InboundMessage) -> Result:
    """Process a dead letter again (after a fix, or once what it needed exists)."""
    _require_manage(actor)
    if message.status != MessageStatus.REJECTED:
        raise ValidationError(_("只有已拒收的消息可以重放。"))
    return message_process(message=message, actor=actor)


def message_discard(*, actor: Actor, message: InboundMessage) -> InboundMessage:
    """Take a dead letter off the list without applying it (kept for audit)."""
    _require_manage(actor)
    if message.status != MessageStatus.REJECTED:
        raise ValidationError(_("只有已拒收的消息可以作废。"))
    message.status = MessageStatus.DISCARDED
    message.edited_by, message.edited_at = actor.user, timezone.now()
    message.save(update_fields=["status", "edited_by", "edited_at", "updated_at"])
    return message


# --- CSV -----------------------------------------------------------------------------------


def _csv_kind(message: InboundMessage) -> str:
    return message.kind.removeprefix("csv:")


def csv_row_process(*, message: InboundMessage, actor: Actor | None = None) -> Result:
    """A refused CSV row kept as a one-row CSV, processed again."""
    try:
        text, _charset = csvimport.decode(bytes(message.raw))
        _header, rows = csvimport.read(_csv_kind(message), text)
        items: list[Item] = []
        for row in rows:
            items += csvimport.row_items(_csv_kind(message), row)
        with transaction.atomic():
            applied = _apply_all(message, items, actor)
            _finish(message, accepted=True, reason="", response="")
        return Result(message, True, applied=applied)
    except ParseError as exc:
        issues = exc.issues
    except ValidationError as exc:
        issues = validation_issues(exc)
    _finish(message, accepted=False, reason=_issues_text(issues), response="")
    return Result(message, False, issues=issues)


def import_job_create(
    *, actor: Actor, institution: Institution, kind: str, file_name: str, content: bytes, dry_run: bool = False
) -> ImportJob:
    """Check the file's encoding and header at once (the person sees those errors on the form),
    count its rows, and queue the import in the background."""
    from yilian.organizations.access import can_manage_institution

    if not can_manage_institution(actor, institution, Permission.INTEROP_MANAGE):
        raise PermissionDenied(_("您无权为该机构导入数据。"))
    if kind not in ImportKind.values:
        raise ValidationError({"kind": [_("不支持的数据类型。")]})
    try:
        text, charset = csvimport.decode(content)
        _header, rows = csvimport.read(kind, text)
        total = sum(1 for _row in rows)
    except ParseError as exc:
        raise ValidationError({"file": [str(exc)]}) from None
    if total == 0:
        raise ValidationError({"file": [_("文件中没有数据行。")]})
    if total > csvimport.MAX_ROWS:
        raise ValidationError({"file": [_("单个文件最多 %(n)s 行，请拆分后导入。") % {"n": csvimport.MAX_ROWS}]})
    with transaction.atomic():
        job = ImportJob.objects.create(
            institution=institution,
            created_by=actor.user,
            kind=kind,
            file_name=file_name[:200],
            content=content,
            charset=charset,
            dry_run=dry_run,
            total_rows=total,
        )
        transaction.on_commit(lambda: _enqueue(job.pk))
    return job


def _enqueue(job_id: int) -> None:
    from yilian.interop.tasks import import_job_task

    import_job_task.enqueue(job_id)


def import_job_run(
    *, job_id: int, max_chunks: int | None = None, on_chunk: Callable[[ImportJob], None] | None = None
) -> ImportJob:
    """Apply a job's rows from where it stopped, IMPORT_CHUNK rows per transaction. Each row has its
    own savepoint: a refused row rolls back alone and becomes a dead letter with its reasons.
    `processed_rows` moves in the same transaction as the rows, so a crash loses nothing and
    repeats nothing (and upserts are idempotent besides). `max_chunks` stops early (the job stays
    running and a later call resumes it)."""
    job = ImportJob.objects.select_related("institution", "created_by").get(pk=job_id)
    if job.is_finished:
        return job
    if job.status == ImportStatus.QUEUED:
        job.status, job.started_at = ImportStatus.RUNNING, timezone.now()
        job.save(update_fields=["status", "started_at", "updated_at"])
    actor = None
    text, _charset = csvimport.decode(bytes(job.content))
    header, rows = csvimport.read(job.kind, text)
    pending = [row for position, row in enumerate(rows) if position >= job.processed_rows]
    for chunks, start in enumerate(range(0, len(pending), IMPORT_CHUNK)):
        if max_chunks is not None and chunks >= max_chunks:
            return job
        chunk = pending[start : start + IMPORT_CHUNK]
        with transaction.atomic():
            locked = ImportJob.objects.select_for_update().get(pk=job.pk)
            if locked.processed_rows != job.processed_rows:  # another worker took over
                return locked
            applier = Applier(institution=job.institution, actor=actor, dry_run=job.dry_run)
            for row in chunk:
                _import_row(locked, applier, header, row)
            locked.processed_rows += len(chunk)
            locked.save(update_fields=["processed_rows", "accepted_rows", "error_rows", "errors", "updated_at"])
        job = locked
        if on_chunk is not None:
            on_chunk(job)
    job.status, job.finished_at = ImportStatus.DONE, timezone.now()
    job.save(update_fields=["status", "finished_at", "updated_at"])
    return job


def _import_row(job: ImportJob, applier: Applier, header: list[str], row: csvimport.Row) -> None:
    try:
        items = csvimport.row_items(job.kind, row)
        with transaction.atomic():
            for item in items:
                applier.apply(item)
        job.accepted_rows += 1
        return
    except ParseError as exc:
        issues = exc.issues
    except ValidationError as exc:
        issues = validation_issues(exc)
    job.error_rows += 1
    if len(job.errors) < MAX_STORED_ERRORS:
        job.errors = [*job.errors, *({"row": row.number, "field": where, "message": what} for where, what in issues)]
    if job.dry_run:
        return
    raw = csvimport.row_bytes(header, row)
    message, created = message_store(
        institution=job.institution,
        api_key=None,
        channel=Channel.CSV,
        raw=raw,
        kind=f"csv:{job.kind}",
        control_id=f"{job.file_name[:50]}#{row.number}",
        charset="utf-8",
    )
    if created or message.import_job_id is None:
        message.import_job = job
        message.save(update_fields=["import_job", "updated_at"])
    _finish(message, accepted=False, reason=_issues_text(issues), response="")


def import_job_fail(*, job_id: int, reason: str) -> None:
    ImportJob.objects.filter(pk=job_id).update(
        status=ImportStatus.FAILED, message=reason[:MAX_REASON], finished_at=timezone.now()
    )
