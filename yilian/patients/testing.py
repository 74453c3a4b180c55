"""Synthetic Chinese identities with realistic noise, labelled with the true person: the test and
benchmark set of the master patient index, and the duplicates of the demo county.

Noise, per source record (rates in `Noise`): a given-name character replaced by a homophone
(玲→龄) or a look-alike (己→已), traditional forms (张→張), adjacent birth-date digits swapped or
day and month swapped, the ID number missing or one digit mistyped (its check digit then fails),
a changed or missing phone, a move to another town, sex unknown. 1 % of people have a twin: same
surname, birth date, town and phone, a different given name and ID number.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
from collections.abc import Iterator
from dataclasses import dataclass

from yilian.core.validators import national_id_check_character

SURNAMES = (
    "陈李黄张梁刘林吴何伍邝甄雷谭朱周郑余罗赵马胡郭杨许钟冯邓蔡曾彭萧潘袁叶苏卢蒋江"
    "王孙徐高宋谢韩唐董程魏薛阎汤陆龙贾丁沈姚方金石廖邹熊任崔秦白孟侯邱范"
)
HOMOPHONES = (
    "玲龄铃伶",
    "伟玮炜韦",
    "明鸣铭",
    "华桦骅",
    "丽莉俐",
    "英瑛莹",
    "芳方",
    "红宏虹鸿",
    "军君均",
    "平萍苹",
    "兰岚澜",
    "梅玫媚",
    "燕艳彦雁",
    "杰洁捷",
    "娟鹃",
    "涛滔韬",
    "斌彬",
    "勇永涌",
    "霞侠",
    "静敬靖",
    "敏民闽",
    "辉晖徽",
    "刚钢纲",
    "峰锋丰枫",
    "建健剑",
    "志智治",
    "文雯闻",
    "金锦津",
    "新欣鑫馨",
    "思斯丝",
    "佳嘉家",
)
LOOK_ALIKES = {"己": "已", "未": "末", "玉": "王", "天": "夭", "士": "土", "本": "木", "日": "曰", "千": "干"}
EXTRA_GIVEN = "国强秀兴荣达成德福寿庆贵祥春秋冬雪云雨东南北海山林森玉天士本日千己未宝龙凤珍慧"
TRADITIONAL = dict(
    zip(
        "张陈黄刘杨赵吴郑谢韩冯邓萧许叶苏卢蒋贾阎谭陆钟汤庞华国伟强丽军红东庆贵凤荣兴学爱宝顺杰龙",
        "張陳黃劉楊趙吳鄭謝韓馮鄧蕭許葉蘇盧蔣賈閻譚陸鐘湯龐華國偉強麗軍紅東慶貴鳳榮興學愛寶順傑龍",
        strict=True,
    )
)
TOWNS = (
    "台城街道",
    "大江镇",
    "水步镇",
    "四九镇",
    "白沙镇",
    "三合镇",
    "冲蒌镇",
    "斗山镇",
    "都斛镇",
    "赤溪镇",
    "端芬镇",
    "广海镇",
    "海宴镇",
    "汶村镇",
    "深井镇",
    "北陡镇",
    "川岛镇",
)
_GIVEN_POOL = "".join(HOMOPHONES) + EXTRA_GIVEN
_HOMOPHONE_OF = {c: group for group in HOMOPHONES for c in group}


@dataclass(frozen=True)
class Noise:
    homophone: float = 0.08
    look_alike: float = 0.02
    traditional: float = 0.05
    birth_swap: float = 0.03
    birth_missing: float = 0.01
    id_missing: float = 0.25
    id_typo: float = 0.03
    phone_changed: float = 0.15
    phone_missing: float = 0.10
    moved: float = 0.08
    sex_unknown: float = 0.01
    twins: float = 0.01


@dataclass(frozen=True)
class Person:
    key: int
    name: str
    sex: str
    birth_date: dt.date
    id_number: str
    phone: str
    town: str


@dataclass(frozen=True)
class SyntheticRecord:
    """One source record and the person it truly belongs to."""

    person: int
    name: str
    sex: str
    birth_date: dt.date | None
    id_number: str
    phone: str
    town: str

    def as_row(self, unique_id: int) -> dict[str, object]:
        return {
            "unique_id": unique_id,
            "name": self.name,
            "sex": self.sex,
            "birth_date": self.birth_date,
            "id_number": self.id_number,
            "phone": self.phone,
            "town": self.town,
        }


def national_id(rng: random.Random, birth: dt.date, male: bool, region: str = "440781") -> str:
    sequence = rng.randrange(0, 500) * 2 + (1 if male else 0)
    first17 = f"{region}{birth:%Y%m%d}{sequence:03d}"
    return first17 + national_id_check_character(first17)


def person(rng: random.Random, key: int) -> Person:
    male = rng.random() < 0.5
    name = rng.choice(SURNAMES) + "".join(rng.choice(_GIVEN_POOL) for _ in range(rng.choice((1, 2, 2, 2))))
    birth = dt.date(1930, 1, 1) + dt.timedelta(days=rng.randrange(0, 33000))
    phone = f"1{rng.choice('3578')}{rng.randrange(10**9):09d}"
    return Person(key, name, "1" if male else "2", birth, national_id(rng, birth, male), phone, rng.choice(TOWNS))


def twin_of(rng: random.Random, sibling: Person, key: int) -> Person:
    male = rng.random() < 0.5
    given = "".join(rng.choice(_GIVEN_POOL) for _ in range(max(1, len(sibling.name) - 1)))
    number = sibling.id_number
    while number == sibling.id_number:  # two people never share a national ID
        number = national_id(rng, sibling.birth_date, male)
    return Person(key, sibling.name[0] + given, "1" if male else "2", sibling.birth_date, number, sibling.phone, sibling.town)


def _noisy_name(rng: random.Random, name: str, noise: Noise) -> str:
    chars = list(name)
    if len(chars) > 1 and rng.random() < noise.homophone:
        i = rng.randrange(1, len(chars))
        group = _HOMOPHONE_OF.get(chars[i])
        if group:
            chars[i] = rng.choice([c for c in group if c != chars[i]])
    if rng.random() < noise.look_alike:
        for i, c in enumerate(chars):
            if c in LOOK_ALIKES:
                chars[i] = LOOK_ALIKES[c]
                break
    if rng.random() < noise.traditional:
        chars = [TRADITIONAL.get(c, c) for c in chars]
    return "".join(chars)


def _noisy_birth(rng: random.Random, birth: dt.date, noise: Noise) -> dt.date | None:
    roll = rng.random()
    if roll < noise.birth_missing:
        return None
    if roll < noise.birth_missing + noise.birth_swap:
        text = birth.strftime("%Y%m%d")
        for _ in range(10):
            if rng.random() < 0.3:
                candidate = f"{text[:4]}{text[6:8]}{text[4:6]}"  # day and month swapped
            else:
                i = rng.randrange(2, 7)  # never the century
                candidate = text[:i] + text[i + 1] + text[i] + text[i + 2 :]
            try:
                swapped = dt.datetime.strptime(candidate, "%Y%m%d").date()  # noqa: DTZ007 (a date, no time)
            except ValueError:
                continue
            if swapped != birth:
                return swapped
    return birth


def _noisy_id(rng: random.Random, id_number: str, noise: Noise) -> str:
    roll = rng.random()
    if roll < noise.id_missing:
        return ""
    if roll < noise.id_missing + noise.id_typo:
        i = rng.randrange(6, 17)
        digit = str((int(id_number[i]) + rng.randrange(1, 10)) % 10)
        typo = id_number[:i] + digit + id_number[i + 1 :]
        if national_id_check_character(typo[:17]) != typo[17]:
            return typo
    return id_number


def source_record(rng: random.Random, who: Person, noise: Noise = Noise()) -> SyntheticRecord:
    phone_roll = rng.random()
    phone = who.phone
    if phone_roll < noise.phone_missing:
        phone = ""
    elif phone_roll < noise.phone_missing + noise.phone_changed:
        phone = f"1{rng.choice('3578')}{rng.randrange(10**9):09d}"
    town = rng.choice(TOWNS) if rng.random() < noise.moved else who.town
    return SyntheticRecord(
        person=who.key,
        name=_noisy_name(rng, who.name, noise),
        sex="0" if rng.random() < noise.sex_unknown else who.sex,
        birth_date=_noisy_birth(rng, who.birth_date, noise),
        id_number=_noisy_id(rng, who.id_number, noise),
        phone=phone,
        town=town,
    )


def _unique_id(rng: random.Random, who: Person, used: set[str]) -> Person:
    """Two people never share a national ID (the issuing office numbers each day's births)."""
    while who.id_number in used:
        who = dataclasses.replace(who, id_number=national_id(rng, who.birth_date, who.sex == "1"))
    used.add(who.id_number)
    return who


def people(rng: random.Random, count: int, noise: Noise = Noise()) -> Iterator[Person]:
    key = 0
    used: set[str] = set()
    while key < count:
        first = _unique_id(rng, person(rng, key), used)
        yield first
        key += 1
        if key < count and rng.random() < noise.twins:
            yield _unique_id(rng, twin_of(rng, first, key), used)
            key += 1


def labelled_records(seed: int, records: int, *, duplicates: float = 0.8, noise: Noise = Noise()) -> list[SyntheticRecord]:
    """About `records` source records of `records / (1 + duplicates)` people: every person once
    (clean, as registered) and `duplicates` further noisy records per person on average."""
    rng = random.Random(seed)  # noqa: S311 (synthetic test data, not secrets)
    out: list[SyntheticRecord] = []
    for who in people(rng, max(1, int(records / (1 + duplicates))), noise):
        out.append(source_record(rng, who, Noise(**dict.fromkeys(Noise.__dataclass_fields__, 0.0))))
        extra = int(duplicates) + (1 if rng.random() < duplicates - int(duplicates) else 0)
        out.extend(source_record(rng, who, noise) for _ in range(extra))
        if len(out) >= records:
            break
    return out[:records]
