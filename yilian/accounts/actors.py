"""The Actor: who is acting, through which membership (institution and role), from where.

Every gatekeeper and service that checks access takes an Actor, never a bare user. A user with
several memberships acts through one at a time (the institution switcher); a member system acts
through an institution-scoped API key. An actor with no membership has no permissions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, TypeVar

from django.core.exceptions import PermissionDenied
from django.utils.translation import gettext as _

from yilian.accounts.roles import Permission, Role, permissions_for

if TYPE_CHECKING:
    from yilian.accounts.models import ApiKey, Membership, User
    from yilian.organizations.models import HealthAuthority, Institution

# What a member system (HIS/LIS/PACS) may do with an institution API key.
MEMBER_SYSTEM_PERMISSIONS = frozenset({Permission.STRUCTURE_VIEW})

T = TypeVar("T")


@dataclass(frozen=True, eq=False)
class Actor:
    user: User | None
    membership: Membership | None = None
    api_key: ApiKey | None = None
    ip_address: str | None = None

    @cached_property
    def is_system_admin(self) -> bool:
        if self.user is not None and self.user.is_active and self.user.is_superuser:
            return True
        return self.role == Role.SYSTEM_ADMIN

    @property
    def role(self) -> str | None:
        return self.membership.role if self.membership is not None else None

    @cached_property
    def permissions(self) -> frozenset[Permission]:
        if self.api_key is not None:
            return MEMBER_SYSTEM_PERMISSIONS if self.api_key.is_usable else frozenset()
        if self.user is None or not self.user.is_active:
            return frozenset()
        if self.user.is_superuser:
            return permissions_for(Role.SYSTEM_ADMIN)
        if self.membership is None:
            return frozenset()
        return permissions_for(self.membership.role)

    def can(self, permission: Permission) -> bool:
        return permission in self.permissions

    def require(self, permission: Permission) -> None:
        if not self.can(permission):
            raise PermissionDenied(_("您当前的角色无权执行此操作。"))

    @property
    def institution(self) -> Institution | None:
        if self.api_key is not None:
            return self.api_key.institution
        return self.membership.institution if self.membership is not None else None

    @property
    def authority(self) -> HealthAuthority | None:
        if self.membership is not None and self.membership.authority is not None:
            return self.membership.authority
        institution = self.institution
        return institution.authority if institution is not None else None

    @property
    def is_authenticated(self) -> bool:
        return bool(self.permissions)

    def remember(self, key: str, compute: Callable[[], T]) -> T:
        """`compute()` once per Actor, i.e. once per request: gatekeepers keep the ids of their
        scope here (the institutions an actor sees, the ones whose records it holds) instead of
        asking the database again for every object they check."""
        memo: dict[str, Any] = self.__dict__.setdefault("_memo", {})
        if key not in memo:
            memo[key] = compute()
        return memo[key]  # type: ignore[no-any-return]

    def __str__(self) -> str:
        if self.api_key is not None:
            return f"API:{self.api_key.prefix}"
        return str(self.user) if self.user is not None else "anonymous"


ANONYMOUS = Actor(user=None)
