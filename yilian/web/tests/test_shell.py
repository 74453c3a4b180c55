"""The page shell: role-aware navigation, the active section, error pages."""

from __future__ import annotations

import re

import pytest


def nav_links(body: str) -> dict[str, bool]:
    """href -> whether it is marked active, for the side navigation."""
    nav = body.split('data-testid="main-nav"', 1)[1].split("</ul>", 1)[0]
    return {href: "active" in classes for classes, href in re.findall(r'class="nav-link([^"]*)" href="([^"]+)"', nav)}


@pytest.mark.parametrize(
    ("persona", "present", "absent"),
    [
        (
            "township_clinician",
            {"/patients/", "/patients/break-glass/", "/structure/institutions/"},
            {"/access/review/", "/admin/"},
        ),
        ("consortium_manager", {"/structure/consortia/", "/accounts/staff/", "/accounts/api-keys/"}, {"/patients/"}),
        ("bureau_supervisor", {"/structure/consortia/"}, {"/patients/", "/accounts/api-keys/", "/access/log/"}),
        ("privacy_officer", {"/access/review/", "/access/log/"}, {"/patients/", "/patients/break-glass/"}),
        ("system_admin", {"/admin/", "/access/review/"}, {"/patients/"}),
    ],
)
def test_navigation_follows_permissions(login, world, persona, present, absent) -> None:
    links = nav_links(login(persona).get("/").content.decode())
    assert present <= set(links) and not (absent & set(links))


def test_the_section_stays_active_on_detail_pages(login, world) -> None:
    client = login("township_clinician")
    detail = nav_links(client.get(f"/patients/{world.patients['at_b'].uuid}/").content.decode())
    assert detail["/patients/"] and not detail["/"] and not detail["/patients/break-glass/"]
    glass = nav_links(client.get("/patients/break-glass/").content.decode())
    assert glass["/patients/break-glass/"] and not glass["/patients/"]
    assert nav_links(client.get("/").content.decode())["/"]


def test_forbidden_page_is_in_the_shell_and_explains(login, world) -> None:
    response = login("bureau_supervisor").get("/patients/")
    assert response.status_code == 403
    body = response.content.decode()
    assert "无权访问" in body and "您当前的角色无权执行此操作。" in body and 'data-testid="main-nav"' in body


def test_not_found_page_says_the_same_for_missing_and_forbidden(login, world) -> None:
    client = login("lead_clinician")
    forbidden = client.get(f"/patients/{world.patients['at_b'].uuid}/")
    missing = client.get("/patients/00000000-0000-0000-0000-000000000000/")
    assert forbidden.status_code == missing.status_code == 404
    # Identical apart from the per-response CSRF masking and the page's own address.
    unmasked = [
        re.sub(r'(X-CSRFToken": "|csrfmiddlewaretoken" value=")[^"]+', r"\1", r.content.decode()).replace(
            r.request["PATH_INFO"], ""
        )
        for r in (forbidden, missing)
    ]
    assert unmasked[0] == unmasked[1]
    assert "未找到，或您无权访问。" in missing.content.decode()


def test_switching_institution_returns_to_the_section_not_the_record(login, world) -> None:
    body = login("township_clinician").get(f"/patients/{world.patients['at_b'].uuid}/").content.decode()
    switcher = body.split('data-testid="institution-switcher"', 1)[1].split("</form>", 1)[0]
    assert '<input type="hidden" name="next" value="/patients/">' in switcher


def test_login_page_leads_residents_to_their_portal(client) -> None:
    body = client.get("/accounts/login/").content.decode()
    assert 'href="/me/sign-in/"' in body and "我是居民" in body
    assert client.get("/me/sign-in/").status_code == 200
