"""Validation against the official FHIR R4 JSON schema (vendored, see r4/README.md).

One validator per resource type, compiled on first use. The schema's `ResourceList` (every
resource type in a `oneOf`) is replaced by a stub; contained resources and Bundle entries are
validated by their own type instead, so errors name the element that is wrong.
"""

from __future__ import annotations

import gzip
import json
import re
import threading
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import fastjsonschema

SCHEMA_PATH = Path(__file__).parent / "r4" / "fhir.schema.json.gz"
SCHEMA_ID = "http://hl7.org/fhir/json-schema/4.0"

_lock = threading.Lock()


@cache
def _definitions() -> dict[str, Any]:
    with gzip.open(SCHEMA_PATH, "rt", encoding="utf-8") as handle:
        schema = json.load(handle)
    if schema.get("id") != SCHEMA_ID:
        raise RuntimeError(f"{SCHEMA_PATH} is not the FHIR R4 JSON schema")
    definitions: dict[str, Any] = schema["definitions"]
    definitions["ResourceList"] = {
        "type": "object",
        "properties": {"resourceType": {"type": "string"}},
        "required": ["resourceType"],
    }
    return definitions


def resource_types() -> frozenset[str]:
    """Every resource type R4 defines."""
    mapping = _discriminator()
    return frozenset(mapping)


@cache
def _discriminator() -> dict[str, str]:
    with gzip.open(SCHEMA_PATH, "rt", encoding="utf-8") as handle:
        return dict(json.load(handle)["discriminator"]["mapping"])


_compiled: dict[str, Callable[[Any], Any]] = {}


def _validator(resource_type: str) -> Callable[[Any], Any]:
    found = _compiled.get(resource_type)
    if found is not None:
        return found
    with _lock:
        if resource_type not in _compiled:
            schema = {
                "$schema": "http://json-schema.org/draft-06/schema#",
                "definitions": _definitions(),
                "$ref": f"#/definitions/{resource_type}",
            }
            _compiled[resource_type] = fastjsonschema.compile(schema)
    return _compiled[resource_type]


_PATTERN_NAMES = {
    "date": "日期（YYYY、YYYY-MM 或 YYYY-MM-DD）",
    "dateTime": "时间（如 2026-01-31T08:00:00+08:00）",
    "instant": "时刻（含时区的完整时间）",
    "decimal": "数字",
    "integer": "整数",
    "positiveInt": "正整数",
    "unsignedInt": "非负整数",
    "id": "id（1–64 个字母、数字、-、.）",
    "code": "代码",
    "uri": "URI",
    "time": "时间（hh:mm:ss）",
}


def _location(resource_type: str, path: list[Any] | None) -> str:
    parts = [str(p) for p in (path or [])][1:]
    out = resource_type
    for part in parts:
        out += f"[{part}]" if part.isdigit() else f".{part}"
    return out


def _chinese(exc: fastjsonschema.JsonSchemaValueException) -> str:
    rule = exc.rule or ""
    message = exc.message
    if rule == "enum":
        return f"取值不在 FHIR R4 允许的范围内（{message.split('must be ', 1)[-1]}）。"
    if rule == "additionalProperties":
        names = re.findall(r"'([^']+)'", message)
        return f"不是 FHIR R4 中此处的元素：{', '.join(names)}。"
    if rule == "pattern":
        definition = exc.definition or {}
        for name, label in _PATTERN_NAMES.items():
            if definition.get("pattern") == _definitions().get(name, {}).get("pattern"):
                return f"格式不正确，应为{label}。"
        return "格式不符合 FHIR R4 的要求。"
    if rule == "type":
        return f"数据类型错误（{message.split('must be ', 1)[-1]}）。"
    if rule == "const":
        return "resourceType 与资源类型不符。"
    if rule == "required":
        return "缺少必需的元素。"
    if rule in {"minItems", "maxItems"}:
        return "数组元素个数不符合要求（FHIR 中的空数组须省略）。"
    if rule in {"minLength"}:
        return "不能为空字符串。"
    return f"不符合 FHIR R4（{message}）。"


def validate(resource: Any, *, location: str = "") -> list[tuple[str, str]]:
    """Problems of `resource` against R4, as (FHIRPath-like location, Chinese message) pairs; empty
    when it conforms. Contained resources and Bundle entries are checked by their own types."""
    if not isinstance(resource, dict):
        return [(location or "", "应为 JSON 对象。")]
    resource_type = resource.get("resourceType")
    if not isinstance(resource_type, str) or resource_type not in _discriminator():
        return [(location or "resourceType", f"不是 FHIR R4 的资源类型：{str(resource_type)[:40]}。")]
    prefix = location or resource_type
    try:
        _validator(resource_type)(resource)
    except fastjsonschema.JsonSchemaValueException as exc:
        return [(prefix + _location(resource_type, exc.path)[len(resource_type) :], _chinese(exc))]
    problems: list[tuple[str, str]] = []
    for index, contained in enumerate(resource.get("contained") or []):
        problems += validate(contained, location=f"{prefix}.contained[{index}]")
    if resource_type == "Bundle":
        for index, entry in enumerate(resource.get("entry") or []):
            if "resource" in entry:
                problems += validate(entry["resource"], location=f"{prefix}.entry[{index}].resource")
    return problems
