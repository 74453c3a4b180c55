"""Chinese first, English through the header's language switch (Chinese msgids, English catalogue)."""

from __future__ import annotations

import re

from django.conf import settings

NAV = re.compile(r'data-testid="main-nav">(.*?)</ul>', re.S)


def nav_labels(body: str) -> list[str]:
    match = NAV.search(body)
    assert match is not None
    return re.findall(r"<span>([^<]+)</span>", match.group(1))


def test_home_is_chinese_by_default(login, world) -> None:
    body = login("township_clinician").get("/").content.decode()
    assert nav_labels(body)[:3] == ["工作台", "居民档案", "紧急授权"]
    assert '<html lang="zh-hans">' in body


def test_switching_to_english_translates_the_shell(login, world) -> None:
    client = login("township_clinician")
    response = client.post("/i18n/setlang/", {"language": "en", "next": "/"})
    assert response.status_code == 302 and response["Location"] == "/"
    assert client.cookies[settings.LANGUAGE_COOKIE_NAME].value == "en"
    body = client.get("/").content.decode()
    assert '<html lang="en">' in body
    assert nav_labels(body)[:3] == ["Home", "Residents", "Emergency access"]
    assert "Residents registered here" in body and "Log out" in body and "Clinician" in body
    # And back to Chinese.
    client.post("/i18n/setlang/", {"language": "zh-hans", "next": "/"})
    assert nav_labels(client.get("/").content.decode())[0] == "工作台"


def test_login_page_in_english(client, world) -> None:
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "en"
    body = client.get("/accounts/login/").content.decode()
    assert "Medical Consortium Platform" in body and "Username" in body and "Password" in body


def _catalogue() -> list[tuple[str, str, bool]]:
    """(msgid, msgstr, fuzzy) for each singular entry of the English .po file."""
    import ast
    from pathlib import Path

    text = (Path(settings.BASE_DIR) / "yilian/locale/en/LC_MESSAGES/django.po").read_text(encoding="utf-8")
    entries = []
    for block in text.split("\n\n"):
        lines = block.strip().splitlines()
        fields: dict[str, str] = {}
        current = None
        for line in lines:
            if line.startswith(("msgid ", "msgstr ", "msgid_plural ", "msgstr[")):
                current, _, literal = line.partition(" ")
                fields[current] = ast.literal_eval(literal)
            elif line.startswith('"') and current:
                fields[current] += ast.literal_eval(line)
        if fields.get("msgid"):
            entries.append((fields["msgid"], fields.get("msgstr", fields.get("msgstr[0]", "")), "fuzzy" in block))
    return entries


def test_every_catalogue_entry_is_translated_and_compiled() -> None:
    import gettext
    from pathlib import Path

    entries = _catalogue()
    assert len(entries) > 500
    untranslated = [msgid for msgid, msgstr, fuzzy in entries if not msgstr or fuzzy]
    assert not untranslated, f"translate these in yilian/locale/en (then compilemessages): {untranslated[:10]}"
    compiled = gettext.GNUTranslations((Path(settings.BASE_DIR) / "yilian/locale/en/LC_MESSAGES/django.mo").open("rb"))
    stale = [msgid for msgid, msgstr, _fuzzy in entries if compiled.gettext(msgid) != msgstr]
    assert not stale, f"django.mo is older than django.po; run compilemessages: {stale[:10]}"


def test_an_english_browser_still_gets_chinese_until_english_is_chosen(login, world) -> None:
    client = login("township_clinician")
    body = client.get("/", HTTP_ACCEPT_LANGUAGE="en-US,en;q=0.9").content.decode()
    assert '<html lang="zh-hans">' in body and nav_labels(body)[0] == "工作台"
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "en"
    assert nav_labels(client.get("/", HTTP_ACCEPT_LANGUAGE="zh-CN").content.decode())[0] == "Home"
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "xx"  # unknown: back to Chinese
    assert nav_labels(client.get("/").content.decode())[0] == "工作台"
