"""Writes about people: login with lockout, staff and memberships, API keys."""

from __future__ import annotations

import copy
import datetime as dt
import threading
import time

from django.conf import settings
from django.contrib.auth import authenticate
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection, transaction
from django.db.models import F
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext as _

from yilian.accounts.access import assignable_roles
from yilian.accounts.actors import Actor
from yilian.accounts.models import ApiKey, Membership, Practitioner, User, hash_api_key
from yilian.accounts.roles import AUTHORITY_ROLES, Permission
from yilian.core.rows import statement_cursor
from yilian.core.services import save_validated
from yilian.organizations.access import can_manage_institution
from yilian.organizations.models import Department, HealthAuthority, Institution


class AccountLocked(Exception):
    """Too many failed logins: the account is locked until `until`."""

    def __init__(self, until: dt.datetime) -> None:
        super().__init__(until)
        self.until = until


def authenticate_with_lockout(*, request: HttpRequest | None, username: str, password: str) -> User | None:
    """Check a password; lock the account for a while after LOGIN_FAILURE_LIMIT failures in a row.

    A locked account is refused even with the right password, so guessing gains nothing.
    Unknown usernames fail the same way as wrong passwords.
    """
    user = User.objects.filter(username=username).first()
    if user is not None and user.is_locked and user.locked_until is not None:
        raise AccountLocked(user.locked_until)
    authenticated = authenticate(request, username=username, password=password)
    if authenticated is not None:
        if authenticated.failed_login_count or authenticated.locked_until:
            User.objects.filter(pk=authenticated.pk).update(failed_login_count=0, locked_until=None)
        return authenticated  # type: ignore[return-value]
    if user is not None:
        User.objects.filter(pk=user.pk).update(failed_login_count=F("failed_login_count") + 1)
        user.refresh_from_db(fields=["failed_login_count"])
        if user.failed_login_count >= settings.LOGIN_FAILURE_LIMIT:
            until = timezone.now() + dt.timedelta(minutes=settings.LOGIN_LOCKOUT_MINUTES)
            User.objects.filter(pk=user.pk).update(locked_until=until, failed_login_count=0)
            raise AccountLocked(until)
    return None


def user_unlock(*, user: User) -> None:
    User.objects.filter(pk=user.pk).update(locked_until=None, failed_login_count=0)


def _check_role(actor: Actor, role: str, institution: Institution | None, authority: HealthAuthority | None) -> None:
    if role not in assignable_roles(actor):
        raise ValidationError({"role": _("您不能授予该角色。")})
    if role in AUTHORITY_ROLES and authority is None:
        raise ValidationError({"role": _("该角色须在卫健部门任职。")})
    if role not in AUTHORITY_ROLES and institution is None:
        raise ValidationError({"role": _("该角色须在医疗机构任职。")})


def _check_place(actor: Actor, institution: Institution | None, department: Department | None) -> None:
    if institution is not None:
        if not can_manage_institution(actor, institution, Permission.STAFF_MANAGE):
            raise PermissionDenied(_("您无权管理该机构的人员。"))
        if not institution.is_active:
            raise ValidationError({"institution": _("该机构已停用。")})
    elif not actor.is_system_admin:
        raise PermissionDenied(_("只有系统管理员可以设置卫健部门任职。"))
    if department is not None and (institution is None or department.institution_id != institution.id):
        raise ValidationError({"department": _("科室须属于所选机构。")})


@transaction.atomic
def staff_create(
    *,
    actor: Actor,
    username: str,
    full_name: str,
    password: str,
    role: str,
    institution: Institution | None = None,
    authority: HealthAuthority | None = None,
    department: Department | None = None,
    phone: str = "",
    title: str = "",
    specialty: str = "",
    certificate_number: str | None = None,
    started_on: dt.date | None = None,
) -> Membership:
    """Create an account, its practitioner profile (when a title is given) and its first membership."""
    _check_role(actor, role, institution, authority)
    _check_place(actor, institution, department)
    user = User(username=username.strip(), full_name=full_name.strip(), phone=phone.strip())
    try:
        validate_password(password, user)
    except ValidationError as exc:
        raise ValidationError({"password": exc.messages}) from exc
    user.set_password(password)
    save_validated(user, exclude=["password"])
    if title:
        save_validated(Practitioner(user=user, title=title, specialty=specialty, certificate_number=(certificate_number or None)))
    return save_validated(
        Membership(
            user=user,
            institution=institution,
            authority=authority,
            department=department,
            role=role,
            started_on=started_on or timezone.localdate(),
        )
    )


def membership_create(
    *,
    actor: Actor,
    user: User,
    role: str,
    institution: Institution | None = None,
    authority: HealthAuthority | None = None,
    department: Department | None = None,
    started_on: dt.date | None = None,
    ended_on: dt.date | None = None,
) -> Membership:
    """Give an existing user another role or institution (多点执业, deployments to the grassroots)."""
    _check_role(actor, role, institution, authority)
    _check_place(actor, institution, department)
    return save_validated(
        Membership(
            user=user,
            institution=institution,
            authority=authority,
            department=department,
            role=role,
            started_on=started_on or timezone.localdate(),
            ended_on=ended_on,
        )
    )


def membership_update(
    *, actor: Actor, membership: Membership, role: str, department: Department | None, ended_on: dt.date | None
) -> Membership:
    """Change a membership loaded with access_membership(for_write=True)."""
    _check_role(actor, role, membership.institution, membership.authority)
    _check_place(actor, membership.institution, department)
    membership.role = role
    membership.department = department
    membership.ended_on = ended_on
    return save_validated(membership)


def membership_end(*, membership: Membership, ended_on: dt.date | None = None) -> Membership:
    membership.ended_on = ended_on or timezone.localdate()
    return save_validated(membership)


def api_key_create(
    *, actor: Actor, institution: Institution, name: str, expires_at: dt.datetime | None = None
) -> tuple[ApiKey, str]:
    """Issue an API key for a member system of `institution`. The raw key is returned once only."""
    if not can_manage_institution(actor, institution, Permission.API_KEY_MANAGE):
        raise PermissionDenied(_("您无权为该机构签发接口密钥。"))
    prefix, raw = ApiKey.generate_raw_key()
    key = save_validated(
        ApiKey(
            institution=institution,
            name=name,
            prefix=prefix,
            key_digest=hash_api_key(raw),
            created_by=actor.user,
            expires_at=expires_at,
        )
    )
    return key, raw


def api_key_revoke(*, api_key: ApiKey) -> ApiKey:
    api_key.revoked_at = timezone.now()
    api_key.save(update_fields=["revoked_at", "updated_at"])
    return api_key


# Every request of a member system authenticates its key. The deciding columns (revoked, expiry,
# the institution and whether it is active) are read on every request with one plain query; the key
# loaded with its institution and authority is kept per process for API_KEY_CACHE_SECONDS and
# reused only while those columns are unchanged (the ORM's compile cost ≈ 3 ms a request here).
API_KEY_CACHE_SECONDS = 60
_api_key_cache: dict[int, tuple[tuple[object, ...], float, ApiKey]] = {}
_api_key_cache_lock = threading.Lock()


def api_key_cache_clear(**_: object) -> None:
    with _api_key_cache_lock:
        _api_key_cache.clear()


def api_key_authenticate(raw_key: str) -> ApiKey | None:
    """The usable key matching `raw_key`, or None. Marks when it was last used."""
    if not raw_key or len(raw_key) > 200:
        return None
    with statement_cursor(connection) as cursor:  # plain SQL: see above
        cursor.execute(
            "SELECT k.id, k.revoked_at, k.expires_at, k.last_used_at, k.institution_id, i.is_active"
            " FROM accounts_apikey k JOIN organizations_institution i ON i.id = k.institution_id WHERE k.key_digest = %s",
            [hash_api_key(raw_key)],
        )
        row = cursor.fetchone()
    if row is None:
        return None
    key_id, revoked_at, expires_at, _last_used_at, institution_id, institution_active = row
    fingerprint = (revoked_at, expires_at, institution_id, institution_active)
    now = timezone.now()
    clock = time.monotonic()
    entry = _api_key_cache.get(key_id)
    if entry is not None and entry[0] == fingerprint and clock - entry[1] < API_KEY_CACHE_SECONDS:
        key = copy.copy(entry[2])
    else:
        key = ApiKey.objects.select_related("institution", "institution__authority").get(pk=key_id)
        with _api_key_cache_lock:
            if len(_api_key_cache) >= 1000:
                _api_key_cache.clear()
            _api_key_cache[key_id] = (fingerprint, clock, key)
        key = copy.copy(key)
    if not key.is_usable:
        return None
    # At most one "last used" write a minute per process (the kept key remembers the last one).
    if key.last_used_at is None or (now - key.last_used_at).total_seconds() > 60:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        key.last_used_at = now
        with _api_key_cache_lock:
            kept = _api_key_cache.get(key_id)
            if kept is not None:
                kept[2].last_used_at = now
    return key
