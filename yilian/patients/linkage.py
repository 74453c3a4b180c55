"""Record linkage for the master patient index (主索引匹配): the comparisons that fit Chinese
demographics and Fellegi–Sunter scoring with stored m/u probabilities.

Pure Python, no database: the online matcher (services.identity_ingest) blocks candidates with
indexed keys and scores them here; bench/linkage.py and the Splink trainer use the same
comparisons so the weights learnt offline are the weights applied online.

A comparison maps a pair of records to a level (0 = disagree … highest = exact); None means one
side is missing and the comparison contributes nothing (weight 0), as in Splink's null level.
"""

from __future__ import annotations

import datetime as dt
import math
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import jellyfish
from pypinyin import lazy_pinyin

from yilian.core.validators import is_valid_national_id

# Characters the member systems write differently for the same name: traditional → simplified for
# the common surnames and given-name characters (pypinyin already reads both the same; this makes
# the *exact name* level survive a traditional form too).
_TRADITIONAL = str.maketrans(
    "張陳黃劉楊趙吳周徐孫馬朱鄭謝韓馮鄧蕭許葉蘇盧蔣蔡賈魏薛閻餘譚陸鐘錢湯龐華國偉強麗軍紅東慶貴鳳榮興來學愛寶義順傑龍",
    "张陈黄刘杨赵吴周徐孙马朱郑谢韩冯邓萧许叶苏卢蒋蔡贾魏薛阎余谭陆钟钱汤庞华国伟强丽军红东庆贵凤荣兴来学爱宝义顺杰龙",
)


@lru_cache(maxsize=262144)
def normalise_name(name: str) -> str:
    """Full-width to half-width, no spaces or middle dots, traditional forms folded to simplified."""
    folded = unicodedata.normalize("NFKC", name or "")
    return "".join(c for c in folded if not c.isspace() and c not in "·•.").translate(_TRADITIONAL).upper()


@lru_cache(maxsize=32768)
def _char_pinyin(char: str) -> str:
    return "".join(lazy_pinyin(char, errors="default")).lower()


@lru_cache(maxsize=262144)
def name_pinyin(name: str) -> str:
    """Toneless pinyin of a name, letters only ("张伟" → "zhangwei"); the blocking key. Character
    by character (the commonest reading), so online and batch always agree and 1,000,000 names
    take seconds."""
    return "".join(_char_pinyin(c) for c in normalise_name(name)).replace(" ", "")[:120]


@lru_cache(maxsize=262144)
def given_pinyin(name: str) -> str:
    """Toneless pinyin of the given name (all but the first character)."""
    return "".join(_char_pinyin(c) for c in normalise_name(name)[1:]).replace(" ", "")


@lru_cache(maxsize=65536)
def surname_pinyin(name: str) -> str:
    normalised = normalise_name(name)
    return _char_pinyin(normalised[0]) if normalised else ""


def phone_key(phone: str) -> str:
    """The last 8 digits: mobiles with or without +86, landlines with or without the area code."""
    digits = "".join(c for c in phone or "" if c.isdigit())
    return digits[-8:] if len(digits) >= 7 else ""


def id_number_normalised(value: str) -> str:
    return "".join((value or "").split()).upper()


@dataclass(frozen=True)
class Record:
    """What the comparisons need of a source identity, a golden patient or a benchmark row."""

    name: str
    sex: str = ""
    birth_date: dt.date | None = None
    id_number: str = ""
    phone: str = ""
    town: str = ""

    @property
    def pinyin(self) -> str:
        return name_pinyin(self.name)


JARO_WINKLER_NAME = 0.88

# --- comparisons ---------------------------------------------------------------------------------


def compare_name(a: Record, b: Record) -> int | None:
    """4 exact (after folding), 3 same toneless pinyin (homophones), 2 pinyin Jaro–Winkler ≥ 0.88
    for the whole name and for the given name alone, 1 same surname only, 0 else. The surname is a
    level of the name, not a comparison of its own, so an exact name is not counted twice; and the
    given name must be close on its own, or twins 沈丰/沈永 ("shenfeng"/"shenyong") would pass on
    their shared surname."""
    if not a.name or not b.name:
        return None
    if normalise_name(a.name) == normalise_name(b.name):
        return 4
    pa, pb = a.pinyin, b.pinyin
    if pa == pb:
        return 3
    if (
        jellyfish.jaro_winkler_similarity(pa, pb) >= JARO_WINKLER_NAME
        and jellyfish.jaro_winkler_similarity(given_pinyin(a.name), given_pinyin(b.name)) >= JARO_WINKLER_NAME
    ):
        return 2
    if surname_pinyin(a.name) == surname_pinyin(b.name):
        return 1
    return 0


def compare_birth_date(a: Record, b: Record) -> int | None:
    """2 exact, 1 one digit mistyped or two adjacent digits swapped (or day and month swapped), 0 else."""
    if a.birth_date is None or b.birth_date is None:
        return None
    if a.birth_date == b.birth_date:
        return 2
    sa, sb = _date_digits(a.birth_date), _date_digits(b.birth_date)
    if jellyfish.damerau_levenshtein_distance(sa, sb) <= 1:
        return 1
    if a.birth_date.year == b.birth_date.year and (a.birth_date.month, a.birth_date.day) == (
        b.birth_date.day,
        b.birth_date.month,
    ):
        return 1
    return 0


@lru_cache(maxsize=65536)
def _date_digits(date: dt.date) -> str:
    return date.strftime("%Y%m%d")


# Every candidate pair checks both numbers: the same few numbers, over and over.
_valid_national_id = lru_cache(maxsize=262144)(is_valid_national_id)


def compare_sex(a: Record, b: Record) -> int | None:
    if a.sex not in ("1", "2") or b.sex not in ("1", "2"):
        return None
    return 1 if a.sex == b.sex else 0


def compare_id_number(a: Record, b: Record) -> int | None:
    """3 equal; 2 within one edit when one of them fails its check digit (a typo); 1 different,
    one of them invalid; 0 both valid (GB 11643) and different — twins, not typos."""
    ia, ib = id_number_normalised(a.id_number), id_number_normalised(b.id_number)
    if not ia or not ib:
        return None
    if ia == ib:
        return 3
    valid = _valid_national_id(ia) and _valid_national_id(ib)
    if not valid and jellyfish.damerau_levenshtein_distance(ia, ib) <= 1:
        return 2
    return 0 if valid else 1


def compare_phone(a: Record, b: Record) -> int | None:
    ka, kb = phone_key(a.phone), phone_key(b.phone)
    if not ka or not kb:
        return None
    return 1 if ka == kb else 0


def compare_town(a: Record, b: Record) -> int | None:
    if not a.town or not b.town:
        return None
    return 1 if a.town == b.town else 0


COMPARISONS = {
    "name": compare_name,
    "birth_date": compare_birth_date,
    "sex": compare_sex,
    "id_number": compare_id_number,
    "phone": compare_phone,
    "town": compare_town,
}

# Hand-set starting parameters (version 0): m = P(level | same person), u = P(level | different
# people), listed from level 0 upwards. `train_model` (Splink, expectation maximisation) replaces
# them with estimates from the data; these keep a fresh install linking sensibly before training.
DEFAULT_PARAMETERS: dict[str, Any] = {
    "prior": 1e-5,
    "comparisons": {
        "name": {"m": [0.01, 0.03, 0.04, 0.05, 0.87], "u": [0.92, 0.07, 0.006, 0.003, 0.001]},
        "birth_date": {"m": [0.01, 0.06, 0.93], "u": [0.9995, 0.00035, 0.00015]},
        "sex": {"m": [0.01, 0.99], "u": [0.5, 0.5]},
        "id_number": {"m": [1e-10, 0.02, 0.05, 0.93], "u": [0.95, 0.04999, 0.000005, 0.000005]},
        "phone": {"m": [0.3, 0.7], "u": [0.9999, 0.0001]},
        "town": {"m": [0.2, 0.8], "u": [0.95, 0.05]},
    },
}
# On the match-weight scale (log2 Bayes factor including the prior): above LINK the identity joins
# the candidate, between REVIEW and LINK a new patient is created and a review item opened.
DEFAULT_LINK_THRESHOLD = 8.0
DEFAULT_REVIEW_THRESHOLD = 0.0


@dataclass(frozen=True)
class Weights:
    """log2(m/u) per comparison and level, precomputed from a parameter set."""

    prior: float
    table: Mapping[str, tuple[float, ...]]

    @classmethod
    def from_parameters(cls, parameters: Mapping[str, Any]) -> Weights:
        prior = float(parameters["prior"])
        table = {}
        for name, levels in parameters["comparisons"].items():
            table[name] = tuple(math.log2(max(m, 1e-12) / max(u, 1e-12)) for m, u in zip(levels["m"], levels["u"], strict=True))
        return cls(prior=math.log2(prior / (1 - prior)), table=table)


DEFAULT_WEIGHTS = Weights.from_parameters(DEFAULT_PARAMETERS)


def compare(a: Record, b: Record) -> dict[str, int | None]:
    return {name: function(a, b) for name, function in COMPARISONS.items()}


def match_weight(levels: Mapping[str, int | None], weights: Weights = DEFAULT_WEIGHTS) -> float:
    """The Fellegi–Sunter match weight: the prior plus log2(m/u) of each observed level."""
    total = weights.prior
    for name, level in levels.items():
        if level is not None and name in weights.table:
            total += weights.table[name][level]
    return total


def score(a: Record, b: Record, weights: Weights = DEFAULT_WEIGHTS) -> tuple[float, dict[str, int | None]]:
    levels = compare(a, b)
    return match_weight(levels, weights), levels


def match_probability(weight: float) -> float:
    return 1 / (1 + 2 ** (-weight)) if weight > -1000 else 0.0
