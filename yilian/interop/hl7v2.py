"""HL7 v2.x (ER7) → items, and the ACK/NAK that answers it. Parsed with python-hl7.

Supported: ADT^A01/A03/A04/A08 (identity + encounter + one Condition per DG1), ADT^A28/A31 (identity), ADT^A40 (merge,
PID = survivor, MRG-1 = merged) and ORU^R01 (identity, optional encounter, one DiagnosticReport per
OBR, one Observation per OBX). Text is decoded by MSH-18 (UNICODE UTF-8, GB 18030, GB2312, ASCII,
8859/1), else by the configured default. The sending institution's API key may be sent in MSH-8
(Security): it is never stored, MSH-8 is blanked before the message is kept.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from typing import Any

import hl7
from django.conf import settings
from django.utils import timezone
from hl7.parser import create_parse_plan

from yilian.interop.items import IdentityItem, Item, MergeItem, ParseError, RecordItem
from yilian.interop.values import MAX_MEASUREMENT, bounded, check_id_number, parse_date, parse_datetime, parse_decimal
from yilian.patients.identities import IdentityData
from yilian.patients.models import IdentityDocumentType, Sex

START_BLOCK, END_BLOCK, CARRIAGE_RETURN = b"\x0b", b"\x1c", b"\x0d"

CHARSETS = {
    "UNICODE UTF-8": "utf-8",
    "UTF-8": "utf-8",
    "UTF8": "utf-8",
    "GB 18030-2000": "gb18030",
    "GB18030": "gb18030",
    "GB 18030": "gb18030",
    "GB2312": "gb18030",
    "GB 2312": "gb18030",
    "GBK": "gb18030",
    "ASCII": "ascii",
    "8859/1": "latin-1",
}

SEX = {"M": Sex.MALE, "F": Sex.FEMALE, "O": Sex.UNSPECIFIED, "A": Sex.UNSPECIFIED, "U": Sex.UNKNOWN, "N": Sex.UNSPECIFIED}
PATIENT_CLASS = {"O": "AMB", "E": "EMER", "I": "IMP", "P": "PRENC", "R": "AMB", "B": "AMB"}
ENCOUNTER_EVENTS = {"A01", "A03", "A04", "A08"}
IDENTITY_EVENTS = {"A28", "A31"}
SUPPORTED = ("ADT^A01", "ADT^A03", "ADT^A04", "ADT^A08", "ADT^A28", "ADT^A31", "ADT^A40", "ORU^R01")
DIAGNOSTIC_SECTIONS = {
    "LAB": "LAB",
    "CH": "LAB",
    "HM": "LAB",
    "MB": "LAB",
    "RAD": "RAD",
    "CT": "RAD",
    "US": "RAD",
    "EC": "EC",
    "PAT": "PAT",
    "SP": "PAT",
}


def frame(message: bytes) -> bytes:
    """An MLLP block."""
    return START_BLOCK + message + END_BLOCK + CARRIAGE_RETURN


def _normalise(raw: bytes) -> bytes:
    return raw.strip(b"\x0b\x1c\r\n ").replace(b"\r\n", b"\r").replace(b"\n", b"\r")


@dataclass
class Header:
    """What the MSH segment says, read before the body is decoded."""

    field_separator: str = "|"
    sending_application: str = ""
    sending_facility: str = ""
    receiving_application: str = ""
    receiving_facility: str = ""
    security: str = ""
    message_type: str = ""
    control_id: str = ""
    sent_at: str = ""  # MSH-7 as written
    processing_id: str = "P"
    version: str = "2.5.1"
    charset_field: str = ""
    charset: str = ""


def read_header(raw: bytes) -> Header:
    """MSH read byte-wise (ASCII delimiters), so the charset can be chosen before decoding."""
    text = _normalise(raw)
    if not text.startswith(b"MSH") or len(text) < 8:
        raise ParseError("消息不以 MSH 段开头，不是 HL7 v2 消息。", code="structure")
    separator = text[3:4]
    msh = text.split(b"\r", 1)[0].split(separator)
    # MSH-1 is the separator itself, so MSH-n is msh[n - 1].

    def at(n: int) -> str:
        return msh[n - 1].decode("latin-1").strip() if len(msh) >= n else ""

    header = Header(
        field_separator=separator.decode("latin-1"),
        sending_application=at(3),
        sending_facility=at(4),
        receiving_application=at(5),
        receiving_facility=at(6),
        security=at(8),
        message_type="^".join(at(9).split("^")[:2]),
        control_id=at(10)[:64],
        sent_at=at(7)[:40],
        processing_id=at(11) or "P",
        version=at(12).split("^")[0] or "2.5.1",
        charset_field=at(18).split("~")[0],
    )
    if header.charset_field:
        charset = CHARSETS.get(header.charset_field.upper())
        if charset is None:
            raise ParseError(f"不支持的字符集（MSH-18）：{header.charset_field[:30]}。", code="encoding")
        header.charset = charset
    else:
        header.charset = getattr(settings, "INTEROP_HL7_DEFAULT_CHARSET", "utf-8")
    return header


def redact_security(raw: bytes) -> bytes:
    """The message with MSH-8 (where an API key may travel) blanked."""
    text = _normalise(raw)
    if not text.startswith(b"MSH") or len(text) < 8:
        return raw
    separator = text[3:4]
    first, _, rest = text.partition(b"\r")
    fields = first.split(separator)
    if len(fields) >= 8 and fields[7]:
        fields[7] = b""
    return separator.join(fields) + (b"\r" + rest if rest else b"")


@dataclass
class Parsed:
    header: Header
    items: list[Item] = field(default_factory=list)


def _decode(raw: bytes, header: Header) -> str:
    try:
        return _normalise(raw).decode(header.charset)
    except UnicodeDecodeError as exc:
        raise ParseError(
            f"消息无法按 {header.charset_field or header.charset} 解码（第 {exc.start} 字节）：请核对 MSH-18 字符集。",
            code="encoding",
        ) from None


class _Message:
    """A message's segments, split on the encoding characters python-hl7 reads from its MSH
    (`create_parse_plan`); python-hl7 also unescapes. Splitting a field only when it is read keeps
    an ORU^R01 at a fraction of a millisecond instead of the ~1.5 ms of building every container."""

    def __init__(self, text: str) -> None:
        plan = create_parse_plan(text)
        # "\r", field, repetition, component, subcomponent
        self.separators: str = plan.separators
        self.escapes = hl7.Message(esc=plan.esc, separators=plan.separators)
        self.segments: list[list[str]] = [line.split(self.separators[1]) for line in text.split("\r")]

    def __iter__(self) -> Any:
        return iter(self.segments)

    def unescape(self, text: str) -> str:
        return str(self.escapes.unescape(text))


class _Segment:
    """Field access by HL7 numbering with unescaping; missing parts are ''."""

    def __init__(self, message: _Message, segment: list[str], name: str) -> None:
        self.message, self.segment, self.name = message, segment, name
        self._split: dict[int, list[list[str]]] = {}

    def field(self, n: int) -> str:
        return self.segment[n] if n < len(self.segment) else ""

    def repetitions(self, n: int) -> list[list[str]]:
        """Field n split into repetitions of unescaped components (split once, then remembered:
        callers must not change the lists)."""
        if n in self._split:
            return self._split[n]
        text = self.field(n)
        if not text:
            self._split[n] = []
            return []
        repetition, component = self.message.separators[2], self.message.separators[3]
        unescape = self.message.unescape
        self._split[n] = [[unescape(c) for c in rep.split(component)] for rep in text.split(repetition)]
        return self._split[n]

    def component(self, n: int, c: int = 1, r: int = 1) -> str:
        reps = self.repetitions(n)
        if len(reps) < r or len(reps[r - 1]) < c:
            return ""
        return reps[r - 1][c - 1].split(self.message.separators[4])[0].strip()


def _segments(message: _Message, name: str) -> list[_Segment]:
    return [_Segment(message, s, name) for s in message.segments if s[0] == name]


def _has(message: _Message, name: str) -> bool:
    return any(s[0] == name for s in message.segments)


def _one(message: _Message, name: str, event: str) -> _Segment:
    found = _segments(message, name)
    if not found:
        raise ParseError("", issues=[(name, f"{event} 消息缺少 {name} 段。")], code="structure")
    return found[0]


def _identity(pid: _Segment) -> IdentityData:
    local_id = record_number = id_number = insurance = health_card = ""
    id_type = IdentityDocumentType.RESIDENT_ID
    for rep in pid.repetitions(3):
        value, kind = rep[0].strip(), (rep[4].strip().upper() if len(rep) > 4 else "")
        if kind in {"NNCHN", "NI"} and not id_number:
            id_number = value
        elif kind == "PPN" and not id_number:
            id_number, id_type = value, IdentityDocumentType.PASSPORT
        elif kind == "MR" and not record_number:
            record_number = value
        elif kind in {"SB", "MC"} and not insurance:
            insurance = value
        elif kind == "HC" and not health_card:
            health_card = value
        if kind in {"PI", ""} and not local_id:
            local_id = value
    local_id = local_id or record_number
    if not local_id:
        raise ParseError("", issues=[("PID-3", "缺少本机构患者标识（PID-3，类型 PI 或 MR）。")])
    if not id_number and (ssn := pid.component(19)):
        id_number = ssn
    name_parts = pid.repetitions(5)[0] if pid.repetitions(5) else []
    name = "".join(p.strip() for p in name_parts[:2])
    if not name:
        raise ParseError("", issues=[("PID-5", "缺少患者姓名。")])
    address_parts = pid.repetitions(11)[0] if pid.repetitions(11) else []

    def part(i: int) -> str:
        return address_parts[i].strip() if len(address_parts) > i else ""

    # XAD: street ^ other ^ city ^ state ^ zip ^ country ^ type ^ other geographic ^ county
    address = "".join([part(3), part(2), part(8), part(1), part(0)])
    return IdentityData(
        local_id=bounded(local_id, 64, "PID-3"),
        name=bounded(name, 50, "PID-5"),
        sex=SEX.get(pid.component(8).upper(), Sex.UNKNOWN),
        birth_date=parse_date(pid.component(7)[:8], "PID-7"),
        id_type=id_type,
        id_number=check_id_number(id_type, bounded(id_number, 30, "PID-3"), "PID-3"),
        phone=bounded(pid.component(13), 20, "PID-13"),
        address=bounded(address, 200, "PID-11"),
        town=bounded(part(1), 50, "PID-11.2"),
        record_number=bounded(record_number, 64, "PID-3"),
        health_card_number=bounded(health_card, 64, "PID-3"),
        insurance_number=bounded(insurance, 64, "PID-3"),
    )


def _encounter(pv1: _Segment, local_id: str, event: str, control_id: str) -> RecordItem | None:
    visit = pv1.component(19)
    if not visit:
        if event in ENCOUNTER_EVENTS:
            raise ParseError("", issues=[("PV1-19", "缺少就诊号（PV1-19），无法保证重复发送时不产生重复就诊。")])
        return None
    patient_class = pv1.component(2).upper()
    attending = pv1.repetitions(7)[0] if pv1.repetitions(7) else []
    values = {
        "class_code": PATIENT_CLASS.get(patient_class, patient_class),
        "type": "",
        "status": "finished" if event == "A03" else "in-progress",
        "start": parse_datetime(pv1.component(44), "PV1-44"),
        "end": parse_datetime(pv1.component(45), "PV1-45"),
        "department": bounded(pv1.component(3), 100, "PV1-3"),
        "practitioner": bounded("".join(attending[1:3]).strip(), 100, "PV1-7"),
        "payer_type": bounded(pv1.component(20), 30, "PV1-20"),
        "admission_source": pv1.component(14),
        "discharge_disposition": pv1.component(36),
        "reason": "",
    }
    return RecordItem(resource="Encounter", source_id=bounded(visit, 64, "PV1-19"), patient_local_id=local_id, values=values)


def _diagnoses(message: _Message, local_id: str, encounter: RecordItem, sent_at: str) -> list[Item]:
    """DG1 → Condition: DG1-3 the ICD-10 code, DG1-5 when, DG1-15 = 1 the primary diagnosis; the
    row's id is DG1-20 (diagnosis identifier) or <visit>-DG<set id>."""
    items: list[Item] = []
    for index, dg1 in enumerate(_segments(message, "DG1"), start=1):
        where = f"DG1[{index}]"
        code = dg1.component(3).strip()
        if not code:
            raise ParseError("", issues=[(f"{where}-3", "诊断须有 ICD-10 编码（DG1-3）。")])
        row_id = dg1.component(20) or f"{encounter.source_id}-DG{dg1.component(1) or index}"
        recorded = (
            parse_datetime(dg1.component(5), f"{where}-5") or encounter.values.get("start") or parse_datetime(sent_at, "MSH-7")
        )
        items.append(
            RecordItem(
                resource="Condition",
                source_id=bounded(row_id, 64, f"{where}-20"),
                patient_local_id=local_id,
                values={
                    "code": bounded(code, 30, f"{where}-3").upper(),
                    "code_system": dg1.component(3, 3),
                    "text": bounded(dg1.component(3, 2) or dg1.component(4), 200, f"{where}-3.2"),
                    "primary": dg1.component(15) == "1",
                    "recorded": recorded,
                    "encounter_source_id": encounter.source_id,
                },
            )
        )
    return items


def _results(message: _Message, local_id: str, encounter_id: str) -> list[Item]:
    items: list[Item] = []
    order: _Segment | None = None
    report_index = 0
    observations: list[RecordItem] = []
    conclusions: list[str] = []

    def close() -> None:
        if order is None:
            return
        filler = order.component(3) or order.component(2)
        if not filler:
            raise ParseError("", issues=[(f"OBR[{report_index}]-3", "缺少检查/检验单号（OBR-3 或 OBR-2）。")])
        section = order.component(24).upper()
        items.append(
            RecordItem(
                resource="DiagnosticReport",
                source_id=bounded(filler, 64, "OBR-3"),
                patient_local_id=local_id,
                values={
                    "category": DIAGNOSTIC_SECTIONS.get(section, section or "LAB"),
                    "code": bounded(order.component(4) or order.component(4, 2), 64, "OBR-4"),
                    "text": bounded(order.component(4, 2), 200, "OBR-4.2"),
                    "conclusion": "\n".join(conclusions)[:4000],
                    "performer": bounded("".join(order.repetitions(32)[0][1:3]) if order.repetitions(32) else "", 100, "OBR-32"),
                    "status": "final" if order.component(25) in {"F", ""} else "preliminary",
                    "effective": parse_datetime(order.component(7), "OBR-7"),
                    "issued": parse_datetime(order.component(22), "OBR-22"),
                    "result_source_ids": [o.source_id for o in observations],
                    "encounter_source_id": encounter_id,
                },
            )
        )
        items.extend(observations)

    for segment in message:
        name = segment[0]
        if name == "OBR":
            close()
            report_index += 1
            order = _Segment(message, segment, "OBR")
            observations, conclusions = [], []
        elif name == "OBX":
            obx = _Segment(message, segment, "OBX")
            if order is None:
                raise ParseError("", issues=[("OBX", "OBX 段须跟在 OBR 段之后。")], code="structure")
            value_type = obx.component(2).upper()
            value = "~".join("^".join(r) for r in obx.repetitions(5)) if value_type not in {"NM", "SN"} else obx.component(5)
            if value_type in {"TX", "FT"} and obx.component(3) in {"", "CONCLUSION", "IMP"}:
                conclusions.append(value)
                continue
            filler = order.component(3) or order.component(2)
            code = obx.component(3) or obx.component(3, 2)
            where = f"OBR[{report_index}] OBX-{obx.component(1) or '?'}"
            observations.append(
                RecordItem(
                    resource="Observation",
                    source_id=bounded(f"{filler}-{obx.component(1) or code}", 64, f"{where}-1"),
                    patient_local_id=local_id,
                    values={
                        "category": "laboratory",
                        "code": bounded(code, 64, f"{where}-3"),
                        "code_system": obx.component(3, 3),
                        "text": bounded(obx.component(3, 2), 200, f"{where}-3.2"),
                        "value_number": parse_decimal(value, f"{where}-5", maximum=MAX_MEASUREMENT)
                        if value_type == "NM"
                        else None,
                        "value_text": bounded(value if value_type != "NM" else "", 500, f"{where}-5"),
                        "unit": bounded(obx.component(6), 30, f"{where}-6"),
                        "reference_range": bounded(obx.component(7), 60, f"{where}-7"),
                        "abnormal_flag": bounded(obx.component(8), 10, f"{where}-8"),
                        "status": "final" if obx.component(11) in {"F", ""} else "preliminary",
                        "effective": parse_datetime(obx.component(14) or order.component(7), f"{where}-14"),
                        "encounter_source_id": encounter_id,
                    },
                )
            )
    close()
    if not items:
        raise ParseError("", issues=[("OBR", "ORU^R01 消息缺少 OBR 段。")], code="structure")
    return items


def parse(raw: bytes) -> Parsed:
    """The items of an HL7 v2 message; ParseError (with a location such as PID-7) otherwise."""
    header = read_header(raw)
    text = _decode(raw, header)
    try:
        message = _Message(text.strip())
    except (hl7.ParseException, IndexError, ValueError) as exc:
        raise ParseError(f"HL7 消息结构错误：{str(exc)[:120]}", code="structure") from None
    for segment in message:
        name = segment[0]
        if not re.fullmatch(r"[A-Z][A-Z0-9]{2}", name):
            raise ParseError(f"不是有效的 HL7 段：{name[:20]}", code="structure")
    parsed = Parsed(header=header)
    kind = header.message_type
    if kind not in SUPPORTED:
        raise ParseError(f"不接收的消息类型（MSH-9）：{kind or '空'}（可接收：{', '.join(SUPPORTED)}）。", code="not-supported")
    event = kind.split("^")[1]
    if not header.control_id:
        raise ParseError("", issues=[("MSH-10", "缺少消息控制号。")], code="structure")
    pid = _one(message, "PID", kind)
    identity = _identity(pid)
    if event == "A40":
        mrg = _one(message, "MRG", kind)
        merged = mrg.component(1)
        if not merged:
            raise ParseError("", issues=[("MRG-1", "缺少被合并患者的标识（MRG-1）。")])
        parsed.items = [
            IdentityItem(identity),
            MergeItem(survivor_local_id=identity.local_id, merged_local_id=bounded(merged, 64, "MRG-1")),
        ]
        return parsed
    parsed.items = [IdentityItem(identity)]
    encounter_id = ""
    pv1s = _segments(message, "PV1")
    if event in ENCOUNTER_EVENTS and not pv1s:
        raise ParseError("", issues=[("PV1", f"{kind} 消息缺少 PV1 段。")], code="structure")
    if pv1s and event not in IDENTITY_EVENTS:
        encounter = _encounter(pv1s[0], identity.local_id, event, header.control_id)
        if encounter is not None:
            parsed.items.append(encounter)
            encounter_id = encounter.source_id
            if event in ENCOUNTER_EVENTS:
                parsed.items += _diagnoses(message, identity.local_id, encounter, header.sent_at)
    if event == "R01":
        parsed.items += _results(message, identity.local_id, encounter_id)
    return parsed


def acknowledgement(
    header: Header | None, *, code: str, text: str = "", error_location: str = "", charset: str | None = None
) -> bytes:
    """An ACK: AA accepted, AE application error (content refused), AR rejected (structure, auth)."""
    header = header or Header()
    now = timezone.localtime().strftime("%Y%m%d%H%M%S")
    trigger = header.message_type.split("^")[1] if "^" in header.message_type else ""
    clean = re.sub(r"[|^~\\&\r\n]", " ", text)[:400]
    segments = [
        "|".join(
            [
                "MSH",
                "^~\\&",
                "YILIAN",
                "YILIAN",
                header.sending_application,
                header.sending_facility,
                now,
                "",
                f"ACK^{trigger}^ACK" if trigger else "ACK",
                "ACK" + secrets.token_hex(8),
                header.processing_id or "P",
                header.version or "2.5.1",
                "",
                "",
                "",
                "",
                "",
                header.charset_field,
            ]
        ).rstrip("|"),
        f"MSA|{code}|{header.control_id}|{clean}",
    ]
    if code != "AA":
        location = re.sub(r"[|^~\\&\r\n]", " ", error_location)[:80]
        severity = "E"
        segments.append(f"ERR||{location}|{'207' if code == 'AE' else '100'}^{clean[:200]}|{severity}")
    body = "\r".join(segments) + "\r"
    return body.encode(charset or header.charset or "utf-8", errors="replace")


# --- The batch protocol (FHS / BHS … BTS / FTS) --------------------------------------------


@dataclass
class Batch:
    """An HL7 v2 batch as sent: its file and batch headers (fields as text, FHS-n / BHS-n at
    index n - 1), and each message as its own bytes (segments ending in CR)."""

    file_header: list[str] | None = None
    batch_header: list[str] | None = None
    messages: list[bytes] = field(default_factory=list)

    @property
    def security(self) -> str:
        """BHS-8 (or FHS-8): the sending institution's API key over MLLP, as MSH-8 for one message."""
        for header in (self.batch_header, self.file_header):
            if header is not None and len(header) > 7 and header[7].strip():
                return header[7].strip()
        return ""


BATCH_SEGMENTS = (b"FHS", b"BHS", b"BTS", b"FTS")


def is_batch(raw: bytes) -> bool:
    """Whether the body is a batch (starts with FHS or BHS) rather than one message."""
    return _normalise(raw)[:3] in {b"FHS", b"BHS"}


def split_batch(raw: bytes) -> Batch:
    """The messages of a batch, byte-wise (each message is decoded by its own MSH-18 later; CR
    never occurs inside a UTF-8 or GB 18030 character). Blank lines are skipped."""
    batch = Batch()
    current: list[bytes] | None = None
    for line in _normalise(raw).split(b"\r"):
        name = line[:3]
        if not line.strip():
            continue
        if name in BATCH_SEGMENTS:
            current = None
            if name in {b"FHS", b"BHS"}:
                separator = line[3:4] or b"|"
                fields = ["", *(part.decode("latin-1") for part in line.split(separator)[1:])]
                fields[0] = name.decode()
                if name == b"FHS":
                    batch.file_header = fields
                else:
                    batch.batch_header = fields
            continue
        if name == b"MSH":
            current = [line]
            batch.messages.append(b"")
        elif current is None:
            raise ParseError(f"批量消息中 {name.decode('latin-1')[:3]} 段出现在 MSH 段之前。", code="structure")
        else:
            current.append(line)
        batch.messages[-1] = b"\r".join(current) + b"\r"
    if not batch.messages:
        raise ParseError("批量消息中没有 MSH 消息。", code="structure")
    return batch


def batch_acknowledgement(batch: Batch, acks: list[bytes]) -> bytes:
    """The answer to a batch: a batch of ACKs in the order of the messages (each in its message's
    charset), under BHS / BTS (and FHS / FTS when the batch came in a file). BHS-12 and FHS-12
    name the sender's BHS-11 / FHS-11."""
    now = timezone.localtime().strftime("%Y%m%d%H%M%S")

    def header(name: str, sent: list[str] | None) -> bytes:
        sent = sent or []

        def at(n: int) -> str:
            return re.sub(r"[|^~\\&\r\n]", " ", sent[n - 1]) if len(sent) >= n else ""

        fields = [name, "^~\\&", "YILIAN", "YILIAN", at(3), at(4), now, "", "", "", "ACK" + secrets.token_hex(8), at(11)]
        return ("|".join(fields) + "\r").encode("ascii", errors="replace")

    out = []
    if batch.file_header is not None:
        out.append(header("FHS", batch.file_header))
    out.append(header("BHS", batch.batch_header or batch.file_header))
    out += acks
    out.append(f"BTS|{len(acks)}\r".encode())
    if batch.file_header is not None:
        out.append(b"FTS|1\r")
    return b"".join(out)


def split_acknowledgements(answer: bytes) -> list[bytes]:
    """The ACK messages of a batch answer (for tests and the bench)."""
    return list(split_batch(answer).messages) if is_batch(answer) else [answer]


def ack_code(ack: bytes) -> str:
    """The MSA-1 of an ACK (for tests and the bench)."""
    match = re.search(rb"\rMSA\|([A-Z]{2})\|", ack)
    return match.group(1).decode() if match else ""
