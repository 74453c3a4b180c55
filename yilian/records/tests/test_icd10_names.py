"""What a diagnosis shows in Chinese and in English: the source's text and the shipped Chinese name
in Chinese, the WHO English title in English; a stored WHO English fallback never shows in Chinese."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.utils import translation

from yilian.records.icd10 import ConditionNames, condition_names, icd10_lookup
from yilian.records.models import Condition
from yilian.records.testing import make_identity, make_visit
from yilian.testing.world import World

HYPERTENSION_WHO = "Essential (primary) hypertension"
REFLUX_WHO = "Gastro-oesophageal reflux disease without oesophagitis"
STAGE_2 = "高血压2级（很高危）"


def test_the_catalogue_keeps_the_chinese_name_and_the_who_title_apart() -> None:
    entry = icd10_lookup("I10.x00x002")
    assert entry is not None
    assert (entry.who_code, entry.chinese_name, entry.who_name, entry.name) == (
        "I10",
        "原发性高血压",
        HYPERTENSION_WHO,
        "原发性高血压",
    )
    reflux = icd10_lookup("K21.9")
    assert reflux is not None
    assert (reflux.chinese_name, reflux.who_name, reflux.name) == ("", REFLUX_WHO, REFLUX_WHO)


@pytest.mark.parametrize(
    ("code", "stored", "chinese", "english"),
    [
        # The source's own text, more precise than the stem: shown in Chinese with the standard name beside it.
        (
            "I10.x00x002",
            "高血压2级（很高危）",
            ("高血压2级（很高危）", "原发性高血压"),
            (HYPERTENSION_WHO, "高血压2级（很高危）"),
        ),
        # No text from the source: the shipped Chinese name was stored.
        ("I10", "原发性高血压", ("原发性高血压", ""), (HYPERTENSION_WHO, "")),
        # No text and no Chinese name: the WHO title was stored; in Chinese the code stands alone.
        ("K21.9", REFLUX_WHO, ("", ""), (REFLUX_WHO, "")),
        # A source text for a code without a Chinese name.
        ("K21.9", "胃食管反流病", ("胃食管反流病", ""), (REFLUX_WHO, "胃食管反流病")),
        # Stored before a Chinese name was shipped (the WHO title): the Chinese name now shows.
        ("I10", HYPERTENSION_WHO, ("原发性高血压", ""), (HYPERTENSION_WHO, "")),
        # A code outside the catalogue (kept from before a check): shown as stored in both languages.
        ("ZZZ", "旧系统诊断", ("旧系统诊断", ""), ("旧系统诊断", "")),
    ],
)
def test_condition_names_per_language(code: str, stored: str, chinese: tuple[str, str], english: tuple[str, str]) -> None:
    with translation.override("zh-hans"):
        assert condition_names(code, stored) == ConditionNames(*chinese)
    with translation.override("en"):
        assert condition_names(code, stored) == ConditionNames(*english)


def test_the_360_view_shows_the_names_of_the_chosen_language(world: World, login) -> None:  # type: ignore[no-untyped-def]
    identity = make_identity(world.patients["at_a"], world.a, "A-0001")
    make_visit(identity, "A-MZ-1", icd10="I10.x00x002", display="高血压2级（很高危）")
    make_visit(identity, "A-MZ-2", days_ago=2, icd10="K21.9")
    assert set(Condition.objects.values_list("display", flat=True)) == {"高血压2级（很高危）", REFLUX_WHO}
    client = login("lead_clinician")
    url = f"/records/patients/{world.patients['at_a'].uuid}/?kind=condition"

    chinese = client.get(url).content.decode()
    assert "高血压2级（很高危）" in chinese and "原发性高血压" in chinese and "K21.9" in chinese
    assert HYPERTENSION_WHO not in chinese and REFLUX_WHO not in chinese

    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "en"
    english = client.get(url).content.decode()
    assert HYPERTENSION_WHO in english and REFLUX_WHO in english
    assert "高血压2级（很高危）" in english  # the source's words stay beside the WHO title
    assert "原发性高血压" not in english


def test_the_timeline_api_speaks_chinese(world: World, login) -> None:  # type: ignore[no-untyped-def]
    identity = make_identity(world.patients["at_a"], world.a, "A-0001")
    make_visit(identity, "A-MZ-1", icd10="K21.9")
    response = login("lead_clinician").get(f"/api/v1/patients/{world.patients['at_a'].uuid}/timeline?kind=condition")
    assert response.status_code == 200
    (item,) = response.json()["items"]
    assert item["code"] == "K21.9" and item["title"] == "" and REFLUX_WHO not in response.content.decode()
