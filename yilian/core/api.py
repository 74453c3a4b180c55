"""What every app's API shares: the API class, authentication, the one error shape, pagination.

Endpoints only translate. They read the acting Actor with `actor_of(request)`, load objects through
the gatekeepers, call the services, and let exceptions travel: the handlers installed by
`YilianAPI` turn every error into

    {"code": "...", "message": "中文说明", "message_en": "English message", "fields": {"field": ["中文", ...]}}

API requests are evaluated in Chinese (the services' messages are Chinese msgids), so `message` is
always Chinese and `message_en` comes from the English catalogue, or is a generic sentence when a
message has no catalogue entry.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Callable, Sequence
from functools import wraps
from typing import Any, ClassVar, Generic, TypeVar, overload
from uuid import UUID

from django.conf import settings
from django.core.exceptions import NON_FIELD_ERRORS, PermissionDenied, RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError
from django.db.models import Model, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.urls import URLPattern, URLResolver, re_path
from django.utils import timezone, translation
from django.utils.translation import gettext
from ninja import NinjaAPI, Schema
from ninja.errors import AuthenticationError, HttpError
from ninja.errors import ValidationError as NinjaValidationError
from ninja.openapi.docs import Swagger
from ninja.operation import Operation
from ninja.renderers import JSONRenderer
from ninja.security import APIKeyHeader, HttpBearer
from ninja.security.apikey import APIKeyCookie
from ninja.utils import check_csrf
from pydantic import Field, ValidationInfo, field_validator

from yilian.accounts.actors import Actor
from yilian.accounts.middleware import client_ip
from yilian.accounts.services import api_key_authenticate

logger = logging.getLogger(__name__)

API_LANGUAGE = "zh-hans"

# --- The error shape -------------------------------------------------------------------------


class ErrorOut(Schema):
    """Every error the API returns, whatever went wrong."""

    code: str = Field(
        description="validation_error | bad_request | unauthenticated | permission_denied | csrf_failed | not_found | "
        "method_not_allowed | conflict | payload_too_large | server_error"
    )
    message: str = Field(description="中文说明")
    message_en: str = Field(description="English message")
    fields: dict[str, list[str]] = Field(description="字段错误：字段名 → 中文说明列表（字段路径以 . 连接）")


# The error statuses every operation documents (all in the ErrorOut shape).
ERRORS = frozenset({400, 401, 403, 404, 409, 413, 422})

# code -> (status, generic Chinese message, generic English message)
ERROR_CODES: dict[str, tuple[int, str, str]] = {
    "bad_request": (400, "请求无效。", "The request is invalid."),
    "unauthenticated": (401, "请先登录，或提供有效的接口密钥。", "Log in, or send a valid API key."),
    "permission_denied": (403, "您当前的角色无权执行此操作。", "Your current role may not do this."),
    "csrf_failed": (403, "CSRF 校验失败：请携带 X-CSRFToken 请求头。", "CSRF check failed: send the X-CSRFToken header."),
    "not_found": (404, "未找到，或您无权访问。", "Not found, or you may not see it."),
    "method_not_allowed": (405, "该地址不支持此请求方法。", "This address does not accept that method."),
    "conflict": (409, "与已有记录冲突，请检查后重试。", "This conflicts with an existing record."),
    "payload_too_large": (413, "请求体过大。", "The request body is too large."),
    "validation_error": (422, "提交的数据有误，请检查各字段。", "Some of the data is invalid; see fields."),
    "server_error": (500, "服务器内部错误，请稍后重试。", "Internal server error; please try again later."),
}


class ApiError(Exception):
    """An error an endpoint raises on purpose; rendered in the error shape."""

    def __init__(self, code: str, message: str | None = None, *, fields: dict[str, list[str]] | None = None) -> None:
        self.code = code
        self.status = ERROR_CODES[code][0]
        self.message = message or ERROR_CODES[code][1]
        self.fields = fields or {}
        super().__init__(self.message)


def field_error(field: str, message: str) -> ApiError:
    return ApiError("validation_error", fields={field: [message]})


def english(message: str, code: str) -> str:
    """The English catalogue's version of a Chinese message, or the code's generic sentence."""
    with translation.override("en"):
        translated = gettext(message)
    return translated if translated != message else ERROR_CODES[code][2]


def error_response(
    api: NinjaAPI, request: HttpRequest, code: str, message: str | None = None, fields: dict[str, list[str]] | None = None
) -> HttpResponse:
    status, generic_zh, _generic_en = ERROR_CODES[code]
    message = message or generic_zh
    body = {"code": code, "message": message, "message_en": english(message, code), "fields": fields or {}}
    return api.create_response(request, body, status=status)


# Chinese messages for pydantic's error types; {name} placeholders come from the error's ctx.
PYDANTIC_MESSAGES = {
    "missing": "该字段是必填项。",
    "extra_forbidden": "不允许的字段。",
    "string_too_long": "最多 {max_length} 个字符。",
    "string_too_short": "至少 {min_length} 个字符。",
    "string_type": "应为文本。",
    "string_pattern_mismatch": "格式不正确。",
    "int_parsing": "应为整数。",
    "int_type": "应为整数。",
    "int_from_float": "应为整数。",
    "float_parsing": "应为数字。",
    "less_than_equal": "不能大于 {le}。",
    "less_than": "须小于 {lt}。",
    "greater_than_equal": "不能小于 {ge}。",
    "greater_than": "须大于 {gt}。",
    "bool_parsing": "应为 true 或 false。",
    "bool_type": "应为 true 或 false。",
    "uuid_parsing": "不是有效的标识（UUID）。",
    "uuid_type": "不是有效的标识（UUID）。",
    "date_parsing": "日期格式应为 YYYY-MM-DD。",
    "date_from_datetime_parsing": "日期格式应为 YYYY-MM-DD。",
    "date_from_datetime_inexact": "日期不应包含时间。",
    "date_type": "日期格式应为 YYYY-MM-DD。",
    "datetime_parsing": "时间格式应为 ISO 8601（如 2026-01-31T08:00:00+08:00）。",
    "datetime_from_date_parsing": "时间格式应为 ISO 8601（如 2026-01-31T08:00:00+08:00）。",
    "datetime_type": "时间格式应为 ISO 8601（如 2026-01-31T08:00:00+08:00）。",
    "enum": "不是有效的选项，可选：{expected}。",
    "literal_error": "不是有效的选项，可选：{expected}。",
    "list_type": "应为列表。",
    "too_long": "最多 {max_length} 项。",
    "model_type": "应为 JSON 对象。",
    "model_attributes_type": "应为 JSON 对象。",
    "dict_type": "应为 JSON 对象。",
}


def _pydantic_message(error: dict[str, Any]) -> str:
    template = PYDANTIC_MESSAGES.get(error.get("type", ""))
    if template is None:
        # value_error from our own validators carries a Chinese message already.
        message = str(error.get("msg", ""))
        return message.removeprefix("Value error, ") if error.get("type") == "value_error" else "输入无效。"
    context = {k: str(v).replace(" or ", ", ") for k, v in error.get("ctx", {}).items()}
    try:
        return template.format(**context)
    except (KeyError, IndexError):
        return template


def _field_name(loc: Sequence[Any]) -> str:
    """('body', 'payload', 'name') -> 'name'; ('query', 'page_size') -> 'page_size'."""
    source, *rest = loc
    if source == "body" and len(rest) > 1:
        rest = rest[1:]  # the operation's parameter name, not a field of the document
    elif source == "body":
        return NON_FIELD_ERRORS
    return ".".join(str(part) for part in rest) or NON_FIELD_ERRORS


def _split(fields: dict[str, list[str]]) -> tuple[str | None, dict[str, list[str]]]:
    """Non-field errors become the message; field errors stay in fields."""
    general = fields.pop(NON_FIELD_ERRORS, None)
    return ("；".join(general) if general else None), fields


def _django_validation_error(api: NinjaAPI, request: HttpRequest, exc: DjangoValidationError) -> HttpResponse:
    if hasattr(exc, "error_dict"):
        fields = {name: [str(m) for m in messages] for name, messages in exc.message_dict.items()}
    else:
        fields = {NON_FIELD_ERRORS: [str(m) for m in exc.messages]}
    codes = (
        {error.code for errors in exc.error_dict.values() for error in errors}
        if hasattr(exc, "error_dict")
        else {error.code for error in exc.error_list}
    )
    message, fields = _split(fields)
    code = "conflict" if "conflict" in codes else "validation_error"
    return error_response(api, request, code, message, fields)


def _ninja_validation_error(api: NinjaAPI, request: HttpRequest, exc: NinjaValidationError) -> HttpResponse:
    errors = exc.errors
    if errors and all(error["loc"][0] == "path" for error in errors):
        # A malformed identifier in the address names nothing that exists.
        return error_response(api, request, "not_found")
    fields: dict[str, list[str]] = {}
    for error in errors:
        fields.setdefault(_field_name(error["loc"]), []).append(_pydantic_message(error))
    message, fields = _split(fields)
    return error_response(api, request, "validation_error", message, fields)


HTTP_ERROR_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
}


def _http_error(api: NinjaAPI, request: HttpRequest, exc: HttpError) -> HttpResponse:
    if exc.status_code == 400 and str(exc).startswith("Cannot parse request body"):
        return error_response(api, request, "bad_request", "请求体不是有效的 JSON。")
    code = HTTP_ERROR_CODES.get(exc.status_code, "bad_request")
    return error_response(api, request, code)


def _unexpected(api: NinjaAPI, request: HttpRequest, exc: Exception) -> HttpResponse:
    logger.exception("Unhandled error in %s %s", request.method, request.path, exc_info=exc)
    return error_response(api, request, "server_error")


def install_error_handlers(api: NinjaAPI) -> None:
    """Route every exception an operation can raise to the one error shape."""

    def handler(fn: Callable[[NinjaAPI, HttpRequest, Any], HttpResponse]) -> Callable[[HttpRequest, Any], HttpResponse]:
        return lambda request, exc: fn(api, request, exc)

    api.add_exception_handler(ApiError, handler(lambda a, r, e: error_response(a, r, e.code, e.message, e.fields)))
    api.add_exception_handler(DjangoValidationError, handler(_django_validation_error))
    api.add_exception_handler(NinjaValidationError, handler(_ninja_validation_error))
    api.add_exception_handler(AuthenticationError, handler(lambda a, r, e: error_response(a, r, "unauthenticated")))
    api.add_exception_handler(HttpError, handler(_http_error))
    api.add_exception_handler(Http404, handler(lambda a, r, e: error_response(a, r, "not_found")))
    api.add_exception_handler(
        PermissionDenied, handler(lambda a, r, e: error_response(a, r, "permission_denied", str(e) or None))
    )
    api.add_exception_handler(RequestDataTooBig, handler(lambda a, r, e: error_response(a, r, "payload_too_large")))
    api.add_exception_handler(IntegrityError, handler(lambda a, r, e: error_response(a, r, "conflict")))
    api.add_exception_handler(Exception, handler(_unexpected))


# --- Authentication --------------------------------------------------------------------------


def _api_key_actor(request: HttpRequest, raw_key: str | None) -> Actor | None:
    """The actor of a member system, or None when no key was sent. A wrong, revoked or expired key
    is refused outright (401) rather than falling back to the session."""
    if not raw_key:
        return None
    key = api_key_authenticate(raw_key.strip())
    if key is None:
        raise AuthenticationError()
    actor = Actor(user=None, api_key=key, ip_address=client_ip(request))
    request.actor = actor  # type: ignore[attr-defined]
    return actor


class BearerKeyAuth(HttpBearer):
    """`Authorization: Bearer <key>`: an institution API key of a member system (HIS, LIS, PACS)."""

    def authenticate(self, request: HttpRequest, token: str) -> Actor | None:
        return _api_key_actor(request, token)


class HeaderKeyAuth(APIKeyHeader):
    """`X-API-Key: <key>`: the same institution API key, for systems that cannot set Authorization."""

    param_name = "X-API-Key"

    def authenticate(self, request: HttpRequest, key: str | None) -> Actor | None:
        return _api_key_actor(request, key)


class SessionActorAuth(APIKeyCookie):
    """A logged-in browser: the Actor ActorMiddleware built (user + acting membership).

    Unsafe methods need the CSRF token (X-CSRFToken header), as for every page form.
    """

    param_name = settings.SESSION_COOKIE_NAME

    def __call__(self, request: HttpRequest) -> Actor | None:
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            return None
        if self.csrf and not getattr(request, "_ninja_csrf_exempt", False) and check_csrf(request) is not None:
            raise ApiError("csrf_failed")
        return self.authenticate(request, None)

    def authenticate(self, request: HttpRequest, key: str | None) -> Actor | None:
        return getattr(request, "actor", None)


API_AUTH = [BearerKeyAuth(), HeaderKeyAuth(), SessionActorAuth()]


def actor_of(request: HttpRequest) -> Actor:
    """The Actor the API authenticated for this request."""
    return request.auth  # type: ignore[attr-defined,no-any-return]


# --- The API class ---------------------------------------------------------------------------


class Utf8JSONRenderer(JSONRenderer):
    """Chinese text as UTF-8, not \\u escapes: readable in logs and a third of the bytes."""

    json_dumps_params = {"ensure_ascii": False}


class YilianAPI(NinjaAPI):
    """NinjaAPI with the error shape everywhere (also for unknown addresses and wrong methods),
    Chinese evaluation of every request, offline docs and operation ids named after the functions."""

    def __init__(self, **kwargs: Any) -> None:
        # validatorUrl None: Swagger UI would otherwise load a badge from the public validator.
        kwargs.setdefault("docs", Swagger(settings={"validatorUrl": None, "persistAuthorization": False}))
        kwargs.setdefault("auth", API_AUTH)
        kwargs.setdefault("renderer", Utf8JSONRenderer())
        super().__init__(**kwargs)
        install_error_handlers(self)

    def set_default_exception_handlers(self) -> None:
        """Ninja's defaults ({"detail": ...}) are replaced by install_error_handlers."""

    def get_openapi_operation_id(self, operation: Operation) -> str:
        return operation.view_func.__name__

    def get_openapi_schema(self, *, path_prefix: str | None = None, path_params: dict[str, Any] | None = None) -> Any:
        """The OpenAPI document, each operation summarised by its docstring's first phrase (in Chinese)."""
        schema = super().get_openapi_schema(path_prefix=path_prefix, path_params=path_params)
        for methods in schema["paths"].values():
            for operation in methods.values():
                if description := operation.get("description"):
                    operation["summary"] = re.split(r"[：。]", description, maxsplit=1)[0]
        return schema

    def _get_urls(self) -> list[URLResolver | URLPattern]:
        urls = super()._get_urls()
        for pattern in urls:
            if isinstance(pattern, URLPattern):
                pattern.callback = self._wrap_view(pattern.callback)
        urls.append(re_path(r"^.*$", self._wrap_view(self._unknown_address), name="not-found"))
        return urls

    def _unknown_address(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return error_response(self, request, "not_found")

    def _wrap_view(self, view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            with translation.override(API_LANGUAGE):
                response = view(request, *args, **kwargs)
                if isinstance(response, HttpResponseNotAllowed):
                    allowed = response["Allow"]
                    response = error_response(self, request, "method_not_allowed")
                    response["Allow"] = allowed
            return response

        wrapped.csrf_exempt = True  # type: ignore[attr-defined]  # CSRF is checked by SessionActorAuth
        return wrapped


# --- Schemas and pagination ------------------------------------------------------------------


class CleanTextSchema(Schema):
    """Text in a request body or query string: NUL characters never reach the database (PostgreSQL
    refuses them with an error, not a validation message); text is stripped, as forms do."""

    # Fields kept exactly as sent (passwords).
    unstripped_fields: ClassVar[frozenset[str]] = frozenset({"password"})

    @field_validator("*", mode="after")
    @classmethod
    def _clean_text(cls, value: Any, info: ValidationInfo) -> Any:
        if type(value) is not str:  # enum members (TextChoices) are str too: leave them be
            return value
        if "\x00" in value:
            raise ValueError("不能包含空字符（\\x00）。")
        return value if info.field_name in cls.unstripped_fields else value.strip()


class InputSchema(CleanTextSchema):
    """Base of every request body: unknown fields are refused."""

    model_config = {"extra": "forbid"}


class PatchSchema(InputSchema):
    """Base of a PATCH body: every field optional, and only the fields sent are changed.

    Fields are declared `X | None = None` so that omitting one is possible; sending null is
    refused except for the fields in `nullable_fields`, where null means "clear it".
    """

    nullable_fields: ClassVar[frozenset[str]] = frozenset()

    @field_validator("*", mode="before")
    @classmethod
    def _null_only_where_nullable(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None and info.field_name not in cls.nullable_fields:
            raise ValueError("不能为空值（null）；不修改的字段请省略。")
        return value


def aware(value: dt.datetime | None) -> dt.datetime | None:
    """A naive time in a request means Beijing time (the deployment's TIME_ZONE)."""
    if value is not None and timezone.is_naive(value):
        return timezone.make_aware(value)
    return value


MAX_PAGE = 1_000_000
MAX_QUERY_LENGTH = 100


class PageQuery(CleanTextSchema):
    """?page=1&page_size=20. A page size above API_MAX_PAGE_SIZE is refused (400), not clamped."""

    page: int = Field(1, ge=1, le=MAX_PAGE, description="页码，从 1 开始")
    page_size: int = Field(
        settings.API_DEFAULT_PAGE_SIZE,
        ge=1,
        description=f"每页条数，最多 {settings.API_MAX_PAGE_SIZE}",
        json_schema_extra={"maximum": settings.API_MAX_PAGE_SIZE},
    )


ItemT = TypeVar("ItemT")
M = TypeVar("M", bound=Model)


class Page(Schema, Generic[ItemT]):
    items: list[ItemT]
    count: int = Field(description="符合条件的总条数")
    page: int
    page_size: int


def paginate(queryset: QuerySet[Any], query: PageQuery) -> dict[str, Any]:
    """One page of `queryset` in the page shape; a page past the end is empty."""
    if query.page_size > settings.API_MAX_PAGE_SIZE:
        raise ApiError(
            "bad_request",
            f"每页最多 {settings.API_MAX_PAGE_SIZE} 条。",
            fields={"page_size": [f"不能大于 {settings.API_MAX_PAGE_SIZE}。"]},
        )
    count = queryset.count()
    start = (query.page - 1) * query.page_size
    items = list(queryset[start : start + query.page_size]) if start < count else []
    return {"items": items, "count": count, "page": query.page, "page_size": query.page_size}


def max_length_of(model: type[Model], field: str) -> int:
    """The max_length of a model's text field, so an API schema never accepts more than the column holds."""
    length = getattr(model._meta.get_field(field), "max_length", None)
    if length is None:
        raise TypeError(f"{model.__name__}.{field} has no max_length")
    return int(length)


@overload
def find(queryset: QuerySet[M], key: UUID, *, field: str) -> M: ...
@overload
def find(queryset: QuerySet[M], key: None, *, field: str) -> None: ...
@overload
def find(queryset: QuerySet[M], key: UUID | None, *, field: str) -> M | None: ...
def find(queryset: QuerySet[M], key: UUID | None, *, field: str) -> M | None:
    """The row of `queryset` (already scoped to the actor) a request field names by UUID.

    None stays None; an unknown or out-of-scope UUID is a field error, the same for both.
    """
    if key is None:
        return None
    found = queryset.filter(uuid=key).first()
    if found is None:
        raise field_error(field, "未找到，或您无权访问。")
    return found
