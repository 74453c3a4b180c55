"""The FHIR R4 endpoint at /fhir: writes from member systems (institution API key), read and
search for authorised clients, the CapabilityStatement. Errors are OperationOutcomes."""

from __future__ import annotations

import json
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse
from django.utils import timezone, translation
from django.views.decorators.csrf import csrf_exempt

from yilian.accounts.actors import Actor
from yilian.accounts.middleware import client_ip
from yilian.accounts.services import api_key_authenticate
from yilian.interop import services
from yilian.interop.fhir import mapping, workflow
from yilian.interop.fhir.read import SEARCH_PARAMETERS, read_resource, search_resources

FHIR_JSON = "application/fhir+json; charset=utf-8"


def respond(body: dict[str, Any], status: int = 200, **headers: str) -> HttpResponse:
    response = HttpResponse(json.dumps(body, ensure_ascii=False), status=status, content_type=FHIR_JSON)
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


def outcome(status: int, code: str, message: str, where: str = "") -> HttpResponse:
    issue: dict[str, Any] = {"severity": "error", "code": code, "diagnostics": message}
    if where:
        issue["expression"] = [where]
    return respond({"resourceType": "OperationOutcome", "issue": [issue]}, status)


def _key_actor(request: HttpRequest) -> Actor | None:
    """The member system's actor from `Authorization: Bearer` or `X-API-Key`, or None."""
    header = request.headers.get("Authorization", "")
    raw = header[7:].strip() if header.lower().startswith("bearer ") else request.headers.get("X-API-Key", "").strip()
    if not raw:
        return None
    key = api_key_authenticate(raw)
    return Actor(user=None, api_key=key, ip_address=client_ip(request)) if key is not None else None


def _reader(request: HttpRequest) -> Actor | None:
    """Who may read: a member system's key, or a logged-in user acting through a membership."""
    actor = _key_actor(request)
    if actor is not None:
        return actor
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return getattr(request, "actor", None)
    return None


def _unauthenticated() -> HttpResponse:
    return outcome(401, "login", "未认证：请提供有效的机构接口密钥（Authorization: Bearer 或 X-API-Key）。")


def _body(request: HttpRequest) -> bytes | HttpResponse:
    try:
        return request.body
    except RequestDataTooBig:
        return outcome(413, "too-costly", "请求体过大，请拆分为多个 Bundle。")


def _write(request: HttpRequest, expected_type: str | None = None, expected_id: str | None = None) -> HttpResponse:
    actor = _key_actor(request)
    if actor is None or actor.api_key is None:
        return _unauthenticated()
    body = _body(request)
    if isinstance(body, HttpResponse):
        return body
    if expected_type is not None:
        # A type in the address must be the body's type, and a PUT id the body's id.
        try:
            document = mapping.loads(body)
        except mapping.ParseError as exc:
            return outcome(400, "structure", exc.message)
        if not isinstance(document, dict) or document.get("resourceType") != expected_type:
            return outcome(400, "invalid", f"请求体的 resourceType 应为 {expected_type}。", "resourceType")
        if expected_id is not None and document.get("id") != expected_id:
            return outcome(400, "invalid", "请求体的 id 与地址中的 id 不一致。", f"{expected_type}.id")
    result = services.fhir_receive(raw=body, api_key=actor.api_key)
    if result.accepted:
        headers = {}
        if result.applied and result.message.kind != "" and not result.message.kind.startswith("Bundle"):
            last = result.applied[-1]
            headers["Location"] = f"{request.build_absolute_uri('/fhir/')}{last.resource}/{last.uuid}"
        created = any(a.created for a in result.applied)
        return respond(result.response, 201 if created and not result.message.kind.startswith("Bundle") else 200, **headers)
    status = 422 if any(i.get("code") in {"business-rule", "invalid"} for i in result.response.get("issue", [])) else 400
    if result.response.get("resourceType") == "Bundle":
        status = 200  # a batch answers per entry
    return respond(result.response, status)


def _workflow_write(request: HttpRequest, write: Any) -> HttpResponse:
    """A referral or booking write (workflow.py): a member system's key, acting for the
    practitioner the resource names. `write(actor, document, if_none_exist)`: the header of a
    conditional create, passed on so the write can honour it or refuse it."""
    actor = _key_actor(request)
    if actor is None or actor.api_key is None:
        return _unauthenticated()
    body = _body(request)
    if isinstance(body, HttpResponse):
        return body
    try:
        document = mapping.loads(body)
    except mapping.ParseError as exc:
        return outcome(400, "structure", exc.message)
    try:
        written = write(actor, document, request.headers.get("If-None-Exist", ""))
    except workflow.WorkflowError as exc:
        return outcome(exc.status, exc.code, exc.message, exc.where)
    headers = {"Location": f"{request.build_absolute_uri('/fhir/')}{written.location}"} if written.location else {}
    return respond(written.resource, 201 if written.created else 200, **headers)


def _workflow_type(request: HttpRequest, name: str) -> HttpResponse:
    if request.method == "POST":
        if name == "ServiceRequest":
            return _workflow_write(request, workflow.service_request_create)
        if name == "Appointment":
            return _workflow_write(request, workflow.appointment_book)
        if name == "Task":
            return _workflow_write(
                request, lambda actor, document, condition: workflow.task_update(actor, document, None, condition)
            )
        return outcome(405, "not-supported", f"{name} 只读。")
    if request.method != "GET":
        return outcome(405, "not-supported", "不支持的请求方法。")
    actor = _reader(request)
    if actor is None:
        return _unauthenticated()
    unknown = sorted(set(request.GET) - set(workflow.SEARCH_PARAMETERS[name]) - {"_count", "_page"})
    if unknown:
        return outcome(400, "not-supported", f"不支持的查询参数：{', '.join(unknown)[:100]}。")
    try:
        workflow.require_view(actor, name)
        bundle = workflow.search(actor, name, request.GET, base=request.build_absolute_uri("/fhir/"))
    except workflow.WorkflowError as exc:
        return outcome(exc.status, exc.code, exc.message, exc.where)
    except ValueError as exc:
        return outcome(400, "invalid", str(exc))
    return respond(bundle)


def _workflow_instance(request: HttpRequest, name: str, key: str) -> HttpResponse:
    if name == "Appointment" and key == "$book" and request.method == "POST":
        return _workflow_write(request, workflow.appointment_book)
    if name == "Task" and request.method == "PUT":
        return _workflow_write(
            request, lambda actor, document, condition: workflow.task_update(actor, document, key[:64], condition)
        )
    if request.method != "GET":
        return outcome(405, "not-supported", "不支持的请求方法。")
    actor = _reader(request)
    if actor is None:
        return _unauthenticated()
    try:
        workflow.require_view(actor, name)
    except workflow.WorkflowError as exc:
        return outcome(exc.status, exc.code, exc.message, exc.where)
    found = workflow.read(actor, name, key[:64])
    if found is None:
        return outcome(404, "not-found", f"未找到 {name}/{key[:64]}，或您无权访问。")
    return respond(found)


def _fhir(view: Any) -> Any:
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        with translation.override("zh-hans"):
            return view(request, *args, **kwargs)  # type: ignore[no-any-return]

    return csrf_exempt(wrapped)


@_fhir
def root(request: HttpRequest) -> HttpResponse:
    """POST a transaction or batch Bundle."""
    if request.method != "POST":
        return outcome(405, "not-supported", "此地址只接收 POST（transaction / batch Bundle）。")
    return _write(request, "Bundle")


@_fhir
def resource_type(request: HttpRequest, name: str) -> HttpResponse:
    """POST a resource (create or update by its id), GET search."""
    if name in workflow.RESOURCES:
        return _workflow_type(request, name)
    if name not in mapping.SUPPORTED:
        return outcome(404, "not-supported", f"不支持的资源类型：{name[:40]}。")
    if request.method == "POST":
        return _write(request, name)
    if request.method != "GET":
        return outcome(405, "not-supported", "不支持的请求方法。")
    actor = _reader(request)
    if actor is None:
        return _unauthenticated()
    unknown = sorted(set(request.GET) - set(SEARCH_PARAMETERS.get(name, ())) - {"_count", "_page"})
    if unknown:
        return outcome(400, "not-supported", f"不支持的查询参数：{', '.join(unknown)[:100]}。")
    try:
        bundle = search_resources(actor, name, request.GET, base=request.build_absolute_uri("/fhir/"))
    except ValueError as exc:
        return outcome(400, "invalid", str(exc))
    return respond(bundle)


@_fhir
def instance(request: HttpRequest, name: str, key: str) -> HttpResponse:
    """GET read, PUT update (the sender's id in the address)."""
    if name in workflow.RESOURCES:
        return _workflow_instance(request, name, key)
    if name not in mapping.SUPPORTED:
        return outcome(404, "not-supported", f"不支持的资源类型：{name[:40]}。")
    if request.method == "PUT":
        return _write(request, name, key)
    if request.method != "GET":
        return outcome(405, "not-supported", "不支持的请求方法。")
    actor = _reader(request)
    if actor is None:
        return _unauthenticated()
    found = read_resource(actor, name, key)
    if found is None:
        return outcome(404, "not-found", f"未找到 {name}/{key[:64]}，或您无权访问。")
    return respond(found)


@_fhir
def metadata(request: HttpRequest) -> HttpResponse:
    """The CapabilityStatement (no authentication, as FHIR expects)."""
    if request.method != "GET":
        return outcome(405, "not-supported", "不支持的请求方法。")
    resources = []
    for name in mapping.SUPPORTED:
        interactions = [{"code": "create"}, {"code": "update"}, {"code": "read"}, {"code": "search-type"}]
        resources.append(
            {
                "type": name,
                "interaction": interactions,
                "versioning": "no-version",
                "updateCreate": True,
                "searchParam": [{"name": p, "type": t} for p, t in SEARCH_PARAMETERS.get(name, {}).items()],
            }
        )
    for name in workflow.RESOURCES:
        interactions = [{"code": code} for code in (*workflow.WRITABLE.get(name, ()), "read", "search-type")]
        entry: dict[str, Any] = {
            "type": name,
            "interaction": interactions,
            "versioning": "no-version",
            "searchParam": [{"name": p, "type": t} for p, t in workflow.SEARCH_PARAMETERS[name].items()],
        }
        if name in workflow.DOCUMENTATION:
            entry["documentation"] = workflow.DOCUMENTATION[name]
        if name in workflow.CONDITIONAL:
            entry["conditionalCreate"] = True
        if name == "Appointment":
            entry["operation"] = [{"name": "book", "definition": "urn:yilian:fhir:OperationDefinition/Appointment-book"}]
        resources.append(entry)
    body = {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": timezone.localdate().isoformat(),
        "publisher": "医联 Yilian",
        "kind": "instance",
        "software": {"name": "Yilian"},
        "implementation": {"description": "医联体数据接入（FHIR R4）", "url": request.build_absolute_uri("/fhir/")},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "rest": [
            {
                "mode": "server",
                "documentation": (
                    "写入须使用机构接口密钥（Authorization: Bearer 或 X-API-Key）。Patient 以 id（发送方患者标识）为准；"
                    "其他资源须有 id 或 identifier，重复发送不产生重复记录。身份证号用类型为 NNCHN 的 identifier。"
                    "transaction Bundle 整体成功或整体失败；batch Bundle 逐条处理。被拒收的内容保留在死信列表。"
                    "转诊（ServiceRequest、Task）与预约（Appointment、$book）由资源中指明的执业人员执行："
                    "ServiceRequest.requester、Task.owner（撤销时 Task.requester）、Appointment 的 Practitioner 参与者，"
                    "须为接口密钥所属机构在职的临床人员（Practitioner/<用户标识> 或执业证书编码）。"
                ),
                "security": {"description": "机构接口密钥（Bearer）"},
                "resource": resources,
                "interaction": [{"code": "transaction"}, {"code": "batch"}],
            }
        ],
    }
    return respond(body)
