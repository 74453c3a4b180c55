"""The API as a whole: offline docs, the OpenAPI document, authentication, the one error shape,
pagination, and bad input that must never give a 5xx."""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from typing import Any

import pytest
from django.contrib.staticfiles import finders
from django.test import Client
from django.utils import timezone

from yilian.accounts.actors import Actor
from yilian.accounts.models import ApiKey
from yilian.accounts.services import api_key_create
from yilian.organizations.models import Institution
from yilian.testing.matrix import snapshot
from yilian.testing.world import World

# A response that pydantic cannot serialise faithfully, or a deprecated ninja idiom, fails the test.
pytestmark = pytest.mark.filterwarnings("error:Pydantic serializer warnings", "error::DeprecationWarning:ninja.operation")


ERROR_KEYS = {"code", "message", "message_en", "fields"}
STRUCTURE = (
    "organizations.Institution",
    "organizations.Consortium",
    "organizations.ConsortiumMembership",
    "organizations.Department",
    "organizations.ServiceGrid",
    "accounts.Membership",
    "accounts.User",
)


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == ERROR_KEYS
    assert body["code"] == code
    assert body["message"] and body["message_en"]
    assert re.search(r"[\u4e00-\u9fff]", body["message"]), "message must be Chinese"
    assert not re.search(r"[\u4e00-\u9fff]", body["message_en"]), "message_en must be English"
    return body  # type: ignore[no-any-return]


def post_json(client: Client, url: str, data: Any, **extra: Any) -> Any:
    return client.post(url, data=json.dumps(data), content_type="application/json", **extra)


def issue_key(world: World, institution: Institution, **kwargs: Any) -> tuple[ApiKey, str]:
    return api_key_create(actor=Actor(user=world.user("system_admin")), institution=institution, name="HIS", **kwargs)


# --- Docs and the OpenAPI document ----------------------------------------------------------


def test_docs_page_loads_no_asset_from_the_internet(client: Client) -> None:
    response = client.get("/api/v1/docs")
    assert response.status_code == 200
    html = response.content.decode()
    assets = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)
    assert any("swagger-ui-bundle.js" in a for a in assets) and any("swagger-ui.css" in a for a in assets)
    for asset in assets:
        assert not re.match(r"^(https?:)?//", asset), f"remote asset {asset}"
        assert asset.startswith("/static/")
        assert finders.find(asset.removeprefix("/static/")), f"{asset} is not a local static file"
    assert not re.search(r"https?://", html), "the docs page names a remote address"
    # Swagger UI would fetch a validator badge from the public validator unless told not to.
    settings_json = re.search(r'<script type="application/json" id="swagger-settings">(.*?)</script>', html, re.S)
    assert settings_json is not None
    swagger = json.loads(settings_json.group(1))
    assert "validatorUrl" in swagger and swagger["validatorUrl"] is None
    assert swagger["url"] == "/api/v1/openapi.json"


def _resolve(schema: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in schema:
        return components[schema["$ref"].split("/")[-1]]  # type: ignore[no-any-return]
    return schema


def _leaves(schema: dict[str, Any], components: dict[str, Any], path: str) -> list[tuple[str, dict[str, Any]]]:
    schema = _resolve(schema, components)
    found: list[tuple[str, dict[str, Any]]] = []
    for option in schema.get("anyOf", []):
        found += _leaves(option, components, path)
    if schema.get("type") == "object" or "properties" in schema:
        for name, prop in schema.get("properties", {}).items():
            found += _leaves(prop, components, f"{path}.{name}")
    elif schema.get("type") == "array":
        found += _leaves(schema.get("items", {}), components, f"{path}[]")
    elif schema.get("type") in {"string", "integer"}:
        found.append((path, schema))
    return found


def test_openapi_bounds_every_text_and_number_a_client_sends(client: Client) -> None:
    document = client.get("/api/v1/openapi.json").json()
    components = document["components"]["schemas"]
    inputs: list[tuple[str, dict[str, Any]]] = []
    operations = 0
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            operations += 1
            assert operation["operationId"], f"{method} {path}"
            assert re.search(r"[\u4e00-\u9fff]", operation["summary"]), f"{method} {path} has no Chinese summary"
            assert "401" in operation["responses"] and "422" in operation["responses"]
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "query":
                    inputs += _leaves(parameter["schema"], components, f"{method} {path} ?{parameter['name']}")
            body = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            if body:
                inputs += _leaves(body, components, f"{method} {path} body")
    assert operations >= 27
    assert len(inputs) > 80  # the walk reaches the fields (a walk that finds nothing proves nothing)
    unbounded = []
    for where, schema in inputs:
        if schema.get("format") in {"uuid", "date", "date-time", "time"} or "enum" in schema:
            continue
        if schema["type"] == "string" and "maxLength" not in schema:
            unbounded.append(where)
        if schema["type"] == "integer" and "maximum" not in schema:
            unbounded.append(where)
    assert not unbounded, f"unbounded inputs: {unbounded}"
    error_schema = components["ErrorOut"]
    assert set(error_schema["properties"]) == ERROR_KEYS


def test_no_delete_route_anywhere(client: Client, world: World) -> None:
    document = client.get("/api/v1/openapi.json").json()
    assert not [p for p, methods in document["paths"].items() if "delete" in methods]
    response = Client().delete(f"/api/v1/institutions/{world.b.uuid}")
    body = assert_error(response, 405, "method_not_allowed")
    assert "DELETE" not in response["Allow"] and "GET" in response["Allow"]
    assert body["fields"] == {}
    assert Institution.objects.filter(pk=world.b.pk, is_active=True).exists()


# --- Authentication -------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["/api/v1/me", "/api/v1/consortia", "/api/v1/patients", "/api/v1/staff"])
def test_anonymous_requests_get_401_in_the_error_shape(world: World, url: str) -> None:
    assert_error(Client().get(url), 401, "unauthenticated")


def test_session_post_without_csrf_token_is_refused(world: World) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(world.user("consortium_manager"))
    before = snapshot(STRUCTURE)
    url = f"/api/v1/consortia/{world.k1.uuid}/members"
    response = post_json(client, url, {"institution": str(world.d.uuid)})
    assert_error(response, 403, "csrf_failed")
    assert snapshot(STRUCTURE) == before
    # Reads need no token; with the token from the cookie the same write goes through.
    assert client.get("/api/v1/me").status_code == 200
    docs = client.get("/api/v1/docs").content.decode()  # the docs page hands Swagger UI the token
    token = re.search(r'data-csrf-token="([^"]+)"', docs).group(1)  # type: ignore[union-attr]
    response = post_json(client, url, {"institution": str(world.d.uuid)}, HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 201, response.content


def test_api_key_requests_need_no_csrf_token(world: World) -> None:
    _key, raw = issue_key(world, world.b)
    client = Client(enforce_csrf_checks=True)
    response = post_json(
        client, "/api/v1/access/break-glass", {"id_number": "x", "reason": "急诊抢救需要"}, HTTP_AUTHORIZATION=f"Bearer {raw}"
    )
    assert_error(response, 403, "permission_denied")  # authenticated, but a member system may not break glass


@pytest.mark.parametrize("header", ["Authorization", "X-API-Key"])
def test_api_key_sees_its_consortium_structure_and_nothing_else(world: World, header: str) -> None:
    key, raw = issue_key(world, world.b)
    client = Client(headers={header: f"Bearer {raw}" if header == "Authorization" else raw})

    me = client.get("/api/v1/me").json()
    assert me["user"] is None and me["memberships"] == []
    assert me["api_key"]["prefix"] == key.prefix and me["api_key"]["institution"]["id"] == str(world.b.uuid)
    assert me["permissions"] == ["structure.view"]

    consortia = client.get("/api/v1/consortia").json()
    assert [c["id"] for c in consortia["items"]] == [str(world.k1.uuid)]
    institutions = {i["id"] for i in client.get("/api/v1/institutions?page_size=100").json()["items"]}
    assert institutions == {str(i.uuid) for i in (world.a, world.b, world.c, world.v)}
    assert client.get(f"/api/v1/consortia/{world.k1.uuid}").status_code == 200
    assert client.get(f"/api/v1/grids/{world.grid_b.uuid}").status_code == 200
    assert client.get(f"/api/v1/departments/{world.cardiology.uuid}").status_code == 200
    # Outside its consortium: not found.
    for url in (
        f"/api/v1/consortia/{world.k2.uuid}",
        f"/api/v1/institutions/{world.t.uuid}",
        f"/api/v1/institutions/{world.d.uuid}/departments",
    ):
        assert_error(client.get(url), 404, "not_found")
    # No people, no patients, no keys.
    for url in ("/api/v1/staff", "/api/v1/patients", "/api/v1/api-keys"):
        assert_error(client.get(url), 403, "permission_denied")
    assert_error(client.get(f"/api/v1/patients/{world.patients['at_b'].uuid}"), 404, "not_found")


def test_api_key_cannot_write_structure(world: World) -> None:
    _key, raw = issue_key(world, world.a)  # the lead hospital's own key
    client = Client(HTTP_X_API_KEY=raw)
    before = snapshot(STRUCTURE)
    writes = [
        ("patch", f"/api/v1/consortia/{world.k1.uuid}", {"short_name": "改名"}, 404),
        ("post", f"/api/v1/consortia/{world.k1.uuid}/members", {"institution": str(world.d.uuid)}, 404),
        ("post", f"/api/v1/consortia/{world.k1.uuid}/members/{world.c.uuid}/end", {}, 404),
        ("post", "/api/v1/institutions", {"name": "新机构", "kind": "township_centre", "consortium": str(world.k1.uuid)}, 403),
        ("patch", f"/api/v1/institutions/{world.a.uuid}", {"phone": "1"}, 404),
        ("post", f"/api/v1/institutions/{world.a.uuid}/deactivate", {}, 404),
        ("post", f"/api/v1/institutions/{world.a.uuid}/departments", {"name": "新科室", "code": "9999"}, 403),
        ("patch", f"/api/v1/departments/{world.cardiology.uuid}", {"beds": 1}, 404),
        (
            "post",
            "/api/v1/grids",
            {"consortium": str(world.k1.uuid), "responsible_institution": str(world.b.uuid), "name": "新村", "town": "水步镇"},
            403,
        ),
        ("patch", f"/api/v1/grids/{world.grid_b.uuid}", {"population": 1}, 404),
        (
            "post",
            "/api/v1/staff",
            {
                "username": "x",
                "full_name": "x",
                "password": "Long-Enough-2026",
                "role": "nurse",
                "institution": str(world.a.uuid),
            },
            403,
        ),
        ("post", "/api/v1/api-keys", {"institution": str(world.a.uuid), "name": "another"}, 403),
    ]
    for method, url, data, status in writes:
        response = getattr(client, method)(url, data=json.dumps(data), content_type="application/json")
        assert response.status_code == status, (method, url, response.content)
        assert set(response.json()) == ERROR_KEYS
    assert snapshot(STRUCTURE) == before
    assert ApiKey.objects.count() == 1


def test_revoked_expired_unknown_and_deactivated_keys_get_401(world: World) -> None:
    revoked_key, revoked = issue_key(world, world.b)
    revoked_key.revoked_at = timezone.now()
    revoked_key.save()
    _expired_key, expired = issue_key(world, world.b, expires_at=timezone.now() - dt.timedelta(minutes=1))
    _c_key, of_c = issue_key(world, world.c)
    Institution.objects.filter(pk=world.c.pk).update(is_active=False)
    for raw in (revoked, expired, of_c, "yl_00000000.not-a-key", "x" * 10_000):
        assert_error(Client(HTTP_AUTHORIZATION=f"Bearer {raw}").get("/api/v1/consortia"), 401, "unauthenticated")
        assert_error(Client(HTTP_X_API_KEY=raw).get("/api/v1/consortia"), 401, "unauthenticated")


def test_a_key_in_use_stops_at_once_when_revoked_expired_or_its_institution_deactivated(world: World) -> None:
    """The key each process keeps loaded is reused only while its deciding columns are unchanged,
    even when they change without a signal (an UPDATE from elsewhere)."""
    for change in (
        lambda key: ApiKey.objects.filter(pk=key.pk).update(revoked_at=timezone.now()),
        lambda key: ApiKey.objects.filter(pk=key.pk).update(expires_at=timezone.now() + dt.timedelta(milliseconds=1)),
        lambda key: Institution.objects.filter(pk=key.institution_id).update(is_active=False),
    ):
        Institution.objects.filter(pk=world.b.pk).update(is_active=True)
        key, raw = issue_key(world, world.b)
        client = Client(HTTP_X_API_KEY=raw)
        assert client.get("/api/v1/consortia").status_code == 200
        assert client.get("/api/v1/consortia").status_code == 200  # the kept key
        change(key)
        time.sleep(0.01)
        assert_error(client.get("/api/v1/consortia"), 401, "unauthenticated")


def test_a_wrong_key_is_refused_even_with_a_session(world: World, login) -> None:  # type: ignore[no-untyped-def]
    client = login("consortium_manager")
    assert_error(client.get("/api/v1/me", HTTP_X_API_KEY="wrong"), 401, "unauthenticated")
    assert client.get("/api/v1/me").status_code == 200


def test_a_user_without_membership_is_authenticated_but_may_do_nothing(world: World) -> None:
    from yilian.testing.world import make_user

    client = Client()
    client.force_login(make_user("drifter", "无任职"))
    me = client.get("/api/v1/me").json()
    assert me["acting_membership"] is None and me["permissions"] == []
    assert_error(client.get("/api/v1/consortia"), 403, "permission_denied")
    assert_error(client.get(f"/api/v1/institutions/{world.a.uuid}"), 404, "not_found")


# --- The error shape and bad input ----------------------------------------------------------


def test_unknown_address_and_malformed_ids_are_404(world: World, login) -> None:  # type: ignore[no-untyped-def]
    client = login("consortium_manager")
    assert_error(client.get("/api/v1/no-such-thing"), 404, "not_found")
    for url in (
        "/api/v1/institutions/not-a-uuid",
        "/api/v1/consortia/123",
        f"/api/v1/grids/{'9' * 5000}",
        "/api/v1/staff/%00",
        "/api/v1/patients/'; DROP TABLE x;--",
    ):
        assert_error(client.get(url), 404, "not_found")
    assert_error(client.patch("/api/v1/departments/nope", data="{}", content_type="application/json"), 404, "not_found")


def test_malformed_json_and_wrong_types(world: World, login) -> None:  # type: ignore[no-untyped-def]
    client = login("consortium_manager")
    url = f"/api/v1/grids/{world.grid_b.uuid}"
    for raw in ("{bad", "", "\xff\xfe", "[" * 100_000):
        response = client.patch(
            url, data=raw.encode("latin-1") if raw.startswith("\xff") else raw, content_type="application/json"
        )
        assert response.status_code in {400, 422}, (raw[:10], response.content)
        assert set(response.json()) == ERROR_KEYS
    assert_error(client.patch(url, data="{bad", content_type="application/json"), 400, "bad_request")
    body = assert_error(client.patch(url, data=json.dumps([1, 2]), content_type="application/json"), 422, "validation_error")
    assert body["fields"] == {} or body["message"]
    body = assert_error(
        client.patch(
            url, data=json.dumps({"population": "many", "is_active": "maybe", "name": 5}), content_type="application/json"
        ),
        422,
        "validation_error",
    )
    assert set(body["fields"]) == {"population", "is_active", "name"}
    assert body["fields"]["population"] == ["应为整数。"]
    body = assert_error(
        client.patch(url, data=json.dumps({"name": None}), content_type="application/json"), 422, "validation_error"
    )
    assert "name" in body["fields"]
    body = assert_error(
        client.patch(url, data=json.dumps({"colour": "red"}), content_type="application/json"), 422, "validation_error"
    )
    assert body["fields"] == {"colour": ["不允许的字段。"]}
    world.grid_b.refresh_from_db()
    assert world.grid_b.name == "石龙村" and world.grid_b.population == 2380


def test_oversized_text_huge_numbers_and_nul_characters(world: World, login) -> None:  # type: ignore[no-untyped-def]
    client = login("consortium_manager")
    before = snapshot(STRUCTURE)
    cases = [
        (
            "post",
            "/api/v1/institutions",
            {"name": "院" * 100_000, "kind": "township_centre", "consortium": str(world.k1.uuid)},
            "name",
        ),
        ("patch", f"/api/v1/grids/{world.grid_b.uuid}", {"population": 10**30}, "population"),
        ("patch", f"/api/v1/grids/{world.grid_b.uuid}", {"population": 10_000_001}, "population"),
        ("patch", f"/api/v1/grids/{world.grid_b.uuid}", {"population": -1}, "population"),
        ("patch", f"/api/v1/departments/{world.cardiology.uuid}", {"beds": 10**30}, "beds"),
        ("patch", f"/api/v1/grids/{world.grid_b.uuid}", {"name": "石龙\x00村"}, "name"),
        (
            "post",
            "/api/v1/access/break-glass",
            {"id_number": "4" * 100_000, "reason": "x" * 100_000, "hours": 10**30},
            "id_number",
        ),
    ]
    for method, url, data, field in cases:
        response = getattr(client, method)(url, data=json.dumps(data), content_type="application/json")
        body = assert_error(response, 422, "validation_error")
        assert field in body["fields"], (url, body)
    assert snapshot(STRUCTURE) == before


def test_a_body_over_the_upload_limit_is_413(world: World, login) -> None:  # type: ignore[no-untyped-def]
    client = login("consortium_manager")
    big = json.dumps({"name": "x" * (3 * 1024 * 1024)})
    assert_error(
        client.patch(f"/api/v1/grids/{world.grid_b.uuid}", data=big, content_type="application/json"), 413, "payload_too_large"
    )
    assert_error(client.post("/api/v1/institutions", data={"name": "x" * (3 * 1024 * 1024)}), 413, "payload_too_large")


def test_duplicate_credit_code_is_a_field_error(world: World, login) -> None:  # type: ignore[no-untyped-def]
    client = login("consortium_manager")
    code = "12440781MB0000001A"
    from yilian.core.validators import credit_code_check_character

    code = code[:17] + credit_code_check_character(code[:17])
    Institution.objects.filter(pk=world.c.pk).update(credit_code=code)
    data = {"name": "新登记卫生院", "kind": "township_centre", "consortium": str(world.k1.uuid), "credit_code": code.lower()}
    body = assert_error(post_json(client, "/api/v1/institutions", data), 422, "validation_error")
    assert list(body["fields"]) == ["credit_code"]
    assert not Institution.objects.filter(name="新登记卫生院").exists()
    # Editing another institution to the same code is refused the same way.
    response = client.patch(
        f"/api/v1/institutions/{world.b.uuid}", data=json.dumps({"credit_code": code}), content_type="application/json"
    )
    assert list(assert_error(response, 422, "validation_error")["fields"]) == ["credit_code"]


def test_service_messages_keep_chinese_and_get_english_from_the_catalogue(world: World, login) -> None:  # type: ignore[no-untyped-def]
    client = login("consortium_manager")
    # In English the page would be English; the API still answers Chinese with English beside it.
    response = client.get("/api/v1/patients", HTTP_ACCEPT_LANGUAGE="en")
    body = assert_error(response, 403, "permission_denied")
    assert body["message"] == "您当前的角色无权执行此操作。"
    assert body["message_en"] != "Your current role may not do this."  # the catalogue's translation, not the fallback


# --- Pagination -----------------------------------------------------------------------------


def test_pagination_shape_bounds_and_pages_past_the_end(world: World, login) -> None:  # type: ignore[no-untyped-def]
    client = login("system_admin")
    first = client.get("/api/v1/institutions?page=1&page_size=2").json()
    assert set(first) == {"items", "count", "page", "page_size"}
    assert first["count"] == 6 and first["page"] == 1 and first["page_size"] == 2 and len(first["items"]) == 2
    third = client.get("/api/v1/institutions?page=3&page_size=2").json()
    assert len(third["items"]) == 2
    names = [
        i["name"] for i in first["items"] + client.get("/api/v1/institutions?page=2&page_size=2").json()["items"] + third["items"]
    ]
    assert len(set(names)) == 6
    past = client.get("/api/v1/institutions?page=99&page_size=2").json()
    assert past["items"] == [] and past["count"] == 6
    assert client.get("/api/v1/institutions").json()["page_size"] == 20
    for query in ("page_size=101", "page_size=100000", f"page_size={10**30}"):
        body = assert_error(client.get(f"/api/v1/institutions?{query}"), 400, "bad_request")
        assert list(body["fields"]) == ["page_size"]
    for query in ("page=0", "page_size=0", f"page={10**30}", "page=abc", "page_size=-5"):
        assert_error(client.get(f"/api/v1/institutions?{query}"), 422, "validation_error")
    assert client.get("/api/v1/institutions?page_size=100").status_code == 200


def test_nul_characters_in_queries_are_refused_not_sent_to_the_database(world: World, login) -> None:  # type: ignore[no-untyped-def]
    client = login("township_clinician")
    for url in (
        "/api/v1/institutions?q=%00",
        "/api/v1/institutions?town=a%00b",
        "/api/v1/consortia?q=%00",
        "/api/v1/grids?q=%00",
        "/api/v1/staff?q=%00",
        "/api/v1/patients?q=%00",
        f"/api/v1/institutions/{world.a.uuid}/departments?q=%00",
    ):
        body = assert_error(client.get(url), 422, "validation_error")
        assert body["fields"], url


def test_lone_surrogates_in_json_are_refused(world: World, login) -> None:  # type: ignore[no-untyped-def]
    client = login("consortium_manager")
    url = f"/api/v1/grids/{world.grid_b.uuid}"
    response = client.patch(url, data='{"name": "\\ud800村"}', content_type="application/json")
    assert response.status_code in {400, 422}, response.content
    assert set(response.json()) == ERROR_KEYS
    response = client.get("/api/v1/institutions?q=%ED%A0%80")  # the same, UTF-8-encoded in the query string
    assert response.status_code in {200, 400, 422}, response.content
