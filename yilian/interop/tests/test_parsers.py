"""The parsers on their own: HL7 v2 in UTF-8 and GB18030, FHIR R4 validation, CSV rows."""

from __future__ import annotations

import datetime as dt

import pytest

from yilian.interop import csvimport, hl7v2
from yilian.interop.fhir import mapping
from yilian.interop.fhir.schema import validate
from yilian.interop.items import IdentityItem, MergeItem, ParseError, RecordItem
from yilian.interop.models import ImportKind
from yilian.interop.tests.conftest import PID, SAMPLES, hl7
from yilian.patients.models import Sex


@pytest.mark.parametrize("charset_field, codec", [("UNICODE UTF-8", "utf-8"), ("GB 18030-2000", "gb18030")])
@pytest.mark.parametrize("kind", sorted(SAMPLES))
def test_every_hl7_message_type_parses_with_chinese_names(kind: str, charset_field: str, codec: str) -> None:
    raw = hl7(kind, SAMPLES[kind], charset_field=charset_field).encode(codec)
    parsed = hl7v2.parse(raw)
    identity = parsed.items[0]
    assert isinstance(identity, IdentityItem)
    assert identity.data.name == "伍国华"
    assert identity.data.local_id == "P0001"
    assert identity.data.id_number == "440781195803070012"
    assert identity.data.sex == Sex.MALE
    assert identity.data.birth_date == dt.date(1958, 3, 7)
    kinds = [type(i).__name__ + ":" + getattr(i, "resource", "") for i in parsed.items]
    expected = {
        "ADT^A28": ["IdentityItem:"],
        "ADT^A31": ["IdentityItem:"],
        "ADT^A40": ["IdentityItem:", "MergeItem:"],
        "ORU^R01": ["IdentityItem:", "RecordItem:Encounter", "RecordItem:DiagnosticReport", "RecordItem:Observation"],
    }.get(kind, ["IdentityItem:", "RecordItem:Encounter"])
    assert kinds == expected


def test_oru_carries_values_units_flags_and_the_conclusion() -> None:
    parsed = hl7v2.parse(hl7("ORU^R01", SAMPLES["ORU^R01"], charset_field="GB 18030-2000").encode("gb18030"))
    report = next(i for i in parsed.items if isinstance(i, RecordItem) and i.resource == "DiagnosticReport")
    observation = next(i for i in parsed.items if isinstance(i, RecordItem) and i.resource == "Observation")
    assert report.values["conclusion"] == "血糖偏高，建议复查"
    assert str(observation.values["value_number"]) == "6.8"
    assert observation.values["unit"] == "mmol/L"
    assert observation.values["abnormal_flag"] == "H"


def test_a40_names_survivor_and_merged() -> None:
    parsed = hl7v2.parse(hl7("ADT^A40", SAMPLES["ADT^A40"]).encode())
    assert parsed.items[1] == MergeItem(survivor_local_id="P0001", merged_local_id="P0009")


def test_wrong_charset_is_refused_with_a_reason() -> None:
    raw = hl7("ADT^A04", SAMPLES["ADT^A04"], charset_field="UNICODE UTF-8").encode("gb18030")
    with pytest.raises(ParseError, match="解码"):
        hl7v2.parse(raw)


@pytest.mark.parametrize(
    "body, where",
    [
        (PID.replace("19580307", "19580231"), "PID-7"),
        (PID.replace("440781195803070012", "440781195803070013"), "PID-3"),
        (PID.replace("伍^国华", ""), "PID-5"),
        (PID.replace("P0001^^^SB^PI~", "").replace("~BA01^^^SB^MR", ""), "PID-3"),
    ],
)
def test_bad_pid_fields_name_where(body: str, where: str) -> None:
    with pytest.raises(ParseError) as caught:
        hl7v2.parse(hl7("ADT^A28", body).encode())
    assert caught.value.issues[0][0].startswith(where)


@pytest.mark.parametrize("raw", [b"", b"garbage", b"MSH|^~\\&|A|B|C|D|2026||ZZZ^Z01|1|P|2.5.1\rPID|1"])
def test_broken_messages_are_refused(raw: bytes) -> None:
    with pytest.raises(ParseError):
        hl7v2.parse(raw)


def test_security_field_is_blanked() -> None:
    raw = hl7("ADT^A28", PID, security="yl_secret.key").encode()
    assert b"yl_secret" not in hl7v2.redact_security(raw)
    assert hl7v2.read_header(raw).security == "yl_secret.key"


def test_ack_echoes_control_id_and_charset() -> None:
    header = hl7v2.read_header(hl7("ADT^A28", PID, control_id="C42", charset_field="GB 18030-2000").encode("gb18030"))
    ack = hl7v2.acknowledgement(header, code="AE", text="出生日期不存在", error_location="PID-7")
    assert hl7v2.ack_code(ack) == "AE"
    assert b"|C42|" in ack
    assert "出生日期不存在" in ack.decode("gb18030")


# --- FHIR -----------------------------------------------------------------------------------

PATIENT = {
    "resourceType": "Patient",
    "id": "P0001",
    "identifier": [
        {
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "NNCHN"}]},
            "value": "440781195803070012",
        }
    ],
    "name": [{"family": "伍", "given": ["国华"]}],
    "gender": "male",
    "birthDate": "1958-03-07",
}


def test_official_style_patient_maps_to_identity() -> None:
    items = mapping.resource_items(mapping.check(PATIENT), mapping.References())
    assert isinstance(items[0], IdentityItem)
    assert items[0].data.name == "伍国华"
    assert items[0].data.id_number == "440781195803070012"


@pytest.mark.parametrize(
    "change, where",
    [
        ({"gender": "m"}, "Patient.gender"),
        ({"birthDate": "1958-13-01"}, "Patient.birthDate"),
        ({"colour": "red"}, "Patient"),
        ({"name": "伍国华"}, "Patient.name"),
    ],
)
def test_r4_schema_problems_name_the_element(change: dict[str, object], where: str) -> None:
    problems = validate({**PATIENT, **change})
    assert problems and problems[0][0] == where


def test_r4_only_resources_are_known_and_r5_ones_are_not() -> None:
    assert validate({"resourceType": "MedicinalProduct", "name": [{"productName": "阿司匹林肠溶片"}]}) == []
    assert validate({"resourceType": "Transport"})[0][1].startswith("不是 FHIR R4 的资源类型")  # R5 only


def test_impossible_date_passes_the_schema_but_not_the_mapper() -> None:
    with pytest.raises(ParseError, match="日期不存在"):
        mapping.resource_items({**PATIENT, "birthDate": "1958-02-30"}, mapping.References())


def test_observation_needs_an_id_for_idempotency() -> None:
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "血糖"},
        "subject": {"reference": "Patient/P0001"},
    }
    with pytest.raises(ParseError, match="id 或 identifier"):
        mapping.resource_items(mapping.check(observation), mapping.References())


def test_malformed_json_is_a_parse_error() -> None:
    with pytest.raises(ParseError, match="JSON"):
        mapping.loads(b'{"resourceType": "Patient",')
    with pytest.raises(ParseError):
        mapping.loads(b'{"value": NaN}')


# --- CSV ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ImportKind.values)
def test_templates_parse_back(kind: str) -> None:
    text, charset = csvimport.decode(csvimport.template(kind))
    assert charset == "utf-8"
    header, rows = csvimport.read(kind, text)
    assert header[0].endswith("*")
    items = csvimport.row_items(kind, next(rows))
    assert items


def test_gb18030_file_is_read() -> None:
    content = csvimport.template(ImportKind.PATIENTS).decode("utf-8-sig").encode("gb18030")
    text, charset = csvimport.decode(content)
    _header, rows = csvimport.read(ImportKind.PATIENTS, text)
    assert charset == "gb18030"
    item = csvimport.row_items(ImportKind.PATIENTS, next(rows))[0]
    assert isinstance(item, IdentityItem) and item.data.name == "伍国华"


def test_header_mismatch_is_refused() -> None:
    with pytest.raises(ParseError, match="缺少必填列"):
        csvimport.read(ImportKind.PATIENTS, "姓名,性别\n张三,男\n")


def test_row_errors_name_the_column() -> None:
    text = "患者标识*,姓名*,出生日期,证件号码\nP1,张三,1990-02-30,\nP2,,1990-01-01,\n"
    _header, rows = csvimport.read(ImportKind.PATIENTS, text)
    problems = []
    for row in rows:
        with pytest.raises(ParseError) as caught:
            csvimport.row_items(ImportKind.PATIENTS, row)
        problems.append(caught.value.issues[0])
    assert problems[0][0] == "出生日期"
    assert problems[1] == ("姓名", "必填。")
