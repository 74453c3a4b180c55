"""CSV imports (患者、就诊、诊断、检查检验结果、医保结算) with Chinese headers: templates, decoding,
and row → items. Each row is checked on its own; a row's problems are (column, Chinese message)."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from yilian.interop.items import IdentityItem, Item, ParseError, RecordItem
from yilian.interop.models import ImportKind
from yilian.interop.values import MAX_MEASUREMENT, bounded, check_id_number, parse_date, parse_datetime, parse_decimal
from yilian.patients.identities import IdentityData
from yilian.patients.models import IdentityDocumentType, Sex

MAX_ROWS = 200_000
MAX_FIELD = 4000

REQUIRED = "*"

# kind -> [(header, key)], a header ending in * is required.
COLUMNS: dict[str, list[tuple[str, str]]] = {
    ImportKind.PATIENTS: [
        ("患者标识*", "local_id"),
        ("姓名*", "name"),
        ("性别", "sex"),
        ("出生日期", "birth_date"),
        ("证件类型", "id_type"),
        ("证件号码", "id_number"),
        ("联系电话", "phone"),
        ("现住址", "address"),
        ("乡镇/街道", "town"),
        ("病案号", "record_number"),
        ("居民健康卡号", "health_card_number"),
        ("医保号", "insurance_number"),
    ],
    ImportKind.ENCOUNTERS: [
        ("就诊标识*", "source_id"),
        ("患者标识*", "patient"),
        ("就诊类型*", "class"),
        ("科室", "department"),
        ("医生", "practitioner"),
        ("开始时间*", "start"),
        ("结束时间", "end"),
        ("医保类型", "payer_type"),
        ("总费用", "total_cost"),
        ("医保支付", "insurance_paid"),
    ],
    ImportKind.DIAGNOSES: [
        ("诊断标识*", "source_id"),
        ("患者标识*", "patient"),
        ("就诊标识", "encounter"),
        ("ICD-10编码*", "code"),
        ("诊断名称", "text"),
        ("主要诊断", "primary"),
        ("诊断日期", "recorded"),
    ],
    ImportKind.RESULTS: [
        ("结果标识*", "source_id"),
        ("患者标识*", "patient"),
        ("就诊标识", "encounter"),
        ("类别", "category"),
        ("项目编码*", "code"),
        ("项目名称", "text"),
        ("结果值", "value"),
        ("单位", "unit"),
        ("参考范围", "reference_range"),
        ("异常标志", "abnormal_flag"),
        ("结果时间*", "effective"),
    ],
    ImportKind.SETTLEMENTS: [
        ("结算标识*", "source_id"),
        ("患者标识*", "patient"),
        ("就诊标识", "encounter"),
        ("结算时间*", "settled"),
        ("总费用*", "total"),
        ("统筹支付", "fund_paid"),
        ("个人支付", "self_paid"),
        ("就诊机构名称", "provider_name"),
        ("就诊机构编码", "provider_code"),
        ("就诊地区编码", "provider_region"),
    ],
}

EXAMPLES: dict[str, list[str]] = {
    ImportKind.PATIENTS: [
        "P0001",
        "伍国华",
        "男",
        "1958-03-07",
        "居民身份证",
        "440781195803070012",
        "13800000000",
        "水步镇石龙村1号",
        "水步镇",
        "BA0001",
        "",
        "",
    ],
    ImportKind.ENCOUNTERS: [
        "V0001",
        "P0001",
        "门诊",
        "全科医学科",
        "黄晓敏",
        "2026-01-05 09:30",
        "2026-01-05 10:00",
        "居民医保",
        "256.50",
        "180.00",
    ],
    ImportKind.DIAGNOSES: ["D0001", "P0001", "V0001", "I10.x00x002", "高血压", "是", "2026-01-05"],
    ImportKind.RESULTS: [
        "R0001",
        "P0001",
        "V0001",
        "检验",
        "GLU",
        "空腹血糖",
        "6.8",
        "mmol/L",
        "3.9-6.1",
        "H",
        "2026-01-05 09:45",
    ],
    ImportKind.SETTLEMENTS: [
        "S0001",
        "P0001",
        "V0001",
        "2026-01-05 10:05",
        "256.50",
        "180.00",
        "76.50",
        "台山市人民医院",
        "",
        "440781",
    ],
}

SEX_WORDS = {"男": Sex.MALE, "女": Sex.FEMALE, "未知": Sex.UNKNOWN, "未说明": Sex.UNSPECIFIED, **{v: v for v in Sex.values}}
ID_TYPE_WORDS = {str(label): value for value, label in IdentityDocumentType.choices} | {v: v for v in IdentityDocumentType.values}
CLASS_WORDS = {"门诊": "AMB", "急诊": "EMER", "住院": "IMP", "体检": "CHECKUP", "随访": "FOLLOWUP"}
CATEGORY_WORDS = {
    "检验": "laboratory",
    "检查": "imaging",
    "影像": "imaging",
    "心电": "ECG",
    "病理": "pathology",
    "生命体征": "vital-signs",
}
YES = {"是", "1", "Y", "y", "true", "主要"}


def template(kind: str) -> bytes:
    """The CSV template of `kind`: Chinese headers and one example row, UTF-8 with BOM (opens in Excel)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([header for header, _ in COLUMNS[kind]])
    writer.writerow(EXAMPLES[kind])
    return ("\ufeff" + buffer.getvalue()).encode("utf-8")


def decode(content: bytes) -> tuple[str, str]:
    """(text, charset): UTF-8 (with or without BOM), else GB18030 (files saved by Excel on Chinese Windows)."""
    for charset in ("utf-8-sig", "gb18030"):
        try:
            return content.decode(charset), "utf-8" if charset == "utf-8-sig" else charset
        except UnicodeDecodeError:
            continue
    raise ParseError("文件既不是 UTF-8 也不是 GB18030 编码。", code="encoding")


@dataclass(frozen=True)
class Row:
    number: int  # 1-based line number in the file, header is line 1
    values: dict[str, str]
    raw: list[str]


def read(kind: str, text: str) -> tuple[list[str], Iterator[Row]]:
    """The header and the rows; ParseError when the header does not match the template."""
    csv.field_size_limit(MAX_FIELD * 4)
    reader = csv.reader(io.StringIO(text))
    try:
        header = [h.strip().lstrip("\ufeff") for h in next(reader)]
    except StopIteration:
        raise ParseError("文件是空的。", code="structure") from None
    except csv.Error as exc:
        raise ParseError(f"CSV 格式错误：{exc}", code="structure") from None
    columns = COLUMNS[kind]
    expected = {h.rstrip(REQUIRED): key for h, key in columns}
    given = [h.rstrip(REQUIRED) for h in header]
    missing = [h for h, _ in columns if h.endswith(REQUIRED) and h.rstrip(REQUIRED) not in given]
    unknown = [h for h in given if h and h not in expected]
    if missing or unknown:
        parts = []
        if missing:
            parts.append("缺少必填列：" + "、".join(missing))
        if unknown:
            parts.append("无法识别的列：" + "、".join(unknown[:10]))
        raise ParseError("表头与模板不符：" + "；".join(parts) + "。请下载模板。", code="structure")

    def rows() -> Iterator[Row]:
        try:
            for index, raw in enumerate(reader, start=2):
                if not any(cell.strip() for cell in raw):
                    continue
                values = {expected[h]: (raw[i] if i < len(raw) else "") for i, h in enumerate(given) if h}
                yield Row(number=index, values=values, raw=raw)
        except csv.Error as exc:
            raise ParseError(f"CSV 格式错误（第 {reader.line_num} 行）：{exc}", code="structure") from None

    return header, rows()


def _label(kind: str, key: str) -> str:
    return next(h.rstrip(REQUIRED) for h, k in COLUMNS[kind] if k == key)


def _required(kind: str, row: Row) -> None:
    missing = [
        (h.rstrip(REQUIRED), "必填。") for h, key in COLUMNS[kind] if h.endswith(REQUIRED) and not row.values.get(key, "").strip()
    ]
    too_long = [(_label(kind, k), f"最多 {MAX_FIELD} 个字符。") for k, v in row.values.items() if len(v) > MAX_FIELD]
    if missing or too_long:
        raise ParseError("", issues=missing + too_long)


def _patients(row: Row, label: Callable[[str], str]) -> list[Item]:
    v = row.values
    sex = v.get("sex", "").strip()
    if sex and sex not in SEX_WORDS:
        raise ParseError("", issues=[(label("sex"), f"无法识别的性别：{sex[:10]}（男/女/未知/未说明 或 GB/T 2261.1 代码）。")])
    id_type_word = v.get("id_type", "").strip()
    if id_type_word and id_type_word not in ID_TYPE_WORDS:
        raise ParseError("", issues=[(label("id_type"), f"无法识别的证件类型：{id_type_word[:20]}。")])
    id_type = ID_TYPE_WORDS.get(id_type_word, IdentityDocumentType.RESIDENT_ID)
    data = IdentityData(
        local_id=bounded(v["local_id"], 64, label("local_id")),
        name=bounded(v["name"], 50, label("name")),
        sex=SEX_WORDS.get(sex, Sex.UNKNOWN),
        birth_date=parse_date(v.get("birth_date", ""), label("birth_date")),
        id_type=id_type,
        id_number=check_id_number(id_type, bounded(v.get("id_number", ""), 30, label("id_number")), label("id_number")),
        phone=bounded(v.get("phone", ""), 20, label("phone")),
        address=bounded(v.get("address", ""), 200, label("address")),
        town=bounded(v.get("town", ""), 50, label("town")),
        record_number=bounded(v.get("record_number", ""), 64, label("record_number")),
        health_card_number=bounded(v.get("health_card_number", ""), 64, label("health_card_number")),
        insurance_number=bounded(v.get("insurance_number", ""), 64, label("insurance_number")),
    )
    return [IdentityItem(data=data)]


def _record(resource: str, row: Row, label: Callable[[str], str], values: dict[str, Any]) -> list[Item]:
    v = row.values
    return [
        RecordItem(
            resource=resource,
            source_id=bounded(v["source_id"], 64, label("source_id")),
            patient_local_id=bounded(v["patient"], 64, label("patient")),
            values=values,
        )
    ]


def _encounters(row: Row, label: Callable[[str], str]) -> list[Item]:
    v = row.values
    word = v["class"].strip()
    if word not in CLASS_WORDS:
        raise ParseError("", issues=[(label("class"), f"就诊类型应为 门诊/急诊/住院/体检/随访，收到：{word[:10]}。")])
    return _record(
        "Encounter",
        row,
        label,
        {
            "class_code": CLASS_WORDS[word],
            "status": "finished" if v.get("end", "").strip() else "in-progress",
            "department": bounded(v.get("department", ""), 100, label("department")),
            "practitioner": bounded(v.get("practitioner", ""), 100, label("practitioner")),
            "start": parse_datetime(v["start"], label("start")),
            "end": parse_datetime(v.get("end", ""), label("end")),
            "payer_type": bounded(v.get("payer_type", ""), 30, label("payer_type")),
            "total_cost": parse_decimal(v.get("total_cost"), label("total_cost")),
            "insurance_paid": parse_decimal(v.get("insurance_paid"), label("insurance_paid")),
        },
    )


def _diagnoses(row: Row, label: Callable[[str], str]) -> list[Item]:
    v = row.values
    return _record(
        "Condition",
        row,
        label,
        {
            "code": bounded(v["code"], 30, label("code")).upper(),
            "code_system": "http://hl7.org/fhir/sid/icd-10-cn",
            "text": bounded(v.get("text", ""), 200, label("text")),
            "primary": v.get("primary", "").strip() in YES,
            "recorded": parse_datetime(v.get("recorded", ""), label("recorded")),
            "encounter_source_id": bounded(v.get("encounter", ""), 64, label("encounter")),
        },
    )


def _results(row: Row, label: Callable[[str], str]) -> list[Item]:
    v = row.values
    value = v.get("value", "").strip()
    try:
        number = parse_decimal(value, label("value"), maximum=MAX_MEASUREMENT)
    except ParseError:
        number = None
    category = v.get("category", "").strip()
    if category and category not in CATEGORY_WORDS:
        raise ParseError("", issues=[(label("category"), f"类别应为 {'/'.join(CATEGORY_WORDS)}，收到：{category[:10]}。")])
    return _record(
        "Observation",
        row,
        label,
        {
            "category": CATEGORY_WORDS.get(category, "laboratory"),
            "code": bounded(v["code"], 64, label("code")),
            "text": bounded(v.get("text", ""), 200, label("text")),
            "value_number": number,
            "value_text": "" if number is not None else bounded(value, 500, label("value")),
            "unit": bounded(v.get("unit", ""), 30, label("unit")),
            "reference_range": bounded(v.get("reference_range", ""), 60, label("reference_range")),
            "abnormal_flag": bounded(v.get("abnormal_flag", ""), 10, label("abnormal_flag")),
            "status": "final",
            "effective": parse_datetime(v["effective"], label("effective")),
            "encounter_source_id": bounded(v.get("encounter", ""), 64, label("encounter")),
        },
    )


def _settlements(row: Row, label: Callable[[str], str]) -> list[Item]:
    v = row.values
    return _record(
        "InsuranceSettlement",
        row,
        label,
        {
            "settled": parse_datetime(v["settled"], label("settled")),
            "total": parse_decimal(v["total"], label("total")),
            "fund_paid": parse_decimal(v.get("fund_paid"), label("fund_paid")),
            "self_paid": parse_decimal(v.get("self_paid"), label("self_paid")),
            "provider_name": bounded(v.get("provider_name", ""), 100, label("provider_name")),
            "provider_code": bounded(v.get("provider_code", ""), 30, label("provider_code")),
            "provider_region": bounded(v.get("provider_region", ""), 12, label("provider_region")),
            "encounter_source_id": bounded(v.get("encounter", ""), 64, label("encounter")),
        },
    )


PARSERS: dict[str, Callable[[Row, Callable[[str], str]], list[Item]]] = {
    ImportKind.PATIENTS: _patients,
    ImportKind.ENCOUNTERS: _encounters,
    ImportKind.DIAGNOSES: _diagnoses,
    ImportKind.RESULTS: _results,
    ImportKind.SETTLEMENTS: _settlements,
}


def row_items(kind: str, row: Row) -> list[Item]:
    """The items of one row; ParseError with (column, message) issues otherwise."""
    _required(kind, row)
    return PARSERS[kind](row, lambda key: _label(kind, key))


def row_bytes(header: list[str], row: Row) -> bytes:
    """A one-row CSV (header + the row) as kept in the dead-letter list."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerow(row.raw)
    return buffer.getvalue().encode("utf-8")
