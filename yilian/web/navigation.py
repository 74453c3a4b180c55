"""Role-aware navigation: each entry is shown only to actors holding its permission."""

from __future__ import annotations

from dataclasses import dataclass

from django.urls import reverse
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from yilian.accounts.actors import Actor
from yilian.accounts.roles import Permission


@dataclass(frozen=True)
class NavItem:
    label: str | Promise
    url_name: str
    icon: str
    permission: Permission | None = None
    system_admin_only: bool = False


NAVIGATION: tuple[NavItem, ...] = (
    NavItem(_("工作台"), "web:home", "house"),
    NavItem(_("居民档案"), "patients:list", "person-vcard", Permission.PATIENT_VIEW),
    NavItem(_("主索引审核"), "patients:review_list", "intersect", Permission.MPI_REVIEW),
    NavItem(_("紧急授权"), "patients:break_glass", "exclamation-octagon", Permission.PATIENT_BREAK_GLASS),
    NavItem(_("转出转诊"), "referrals:outbox", "box-arrow-up-right", Permission.PATIENT_VIEW),
    NavItem(_("转入转诊"), "referrals:inbox", "box-arrow-in-down-left", Permission.PATIENT_VIEW),
    NavItem(_("转诊调度看板"), "referrals:board", "kanban", Permission.REFERRAL_COORDINATE),
    NavItem(_("随访任务"), "referrals:follow_ups", "clipboard-check", Permission.PATIENT_VIEW),
    NavItem(_("号源与床位"), "scheduling:schedule_list", "calendar-week", Permission.STRUCTURE_VIEW),
    NavItem(_("医联体"), "organizations:consortium_list", "diagram-3", Permission.STRUCTURE_VIEW),
    NavItem(_("医疗机构"), "organizations:institution_list", "hospital", Permission.STRUCTURE_VIEW),
    NavItem(_("科室"), "organizations:department_list", "grid-3x3-gap", Permission.STRUCTURE_VIEW),
    NavItem(_("服务网格"), "organizations:grid_list", "geo-alt", Permission.STRUCTURE_VIEW),
    NavItem(_("人员与任职"), "accounts:staff_list", "people", Permission.STAFF_VIEW),
    NavItem(_("接口密钥"), "accounts:api_key_list", "key", Permission.API_KEY_MANAGE),
    NavItem(_("数据接入"), "interop:message_list", "inbox", Permission.INTEROP_MANAGE),
    NavItem(_("隐私审核"), "access:review", "shield-check", Permission.ACCESS_REVIEW),
    NavItem(_("访问日志"), "access:log", "journal-text", Permission.ACCESS_REVIEW),
    NavItem(_("系统管理"), "admin:index", "gear", system_admin_only=True),
)


def navigation_for(actor: Actor | None) -> list[NavItem]:
    if actor is None:
        return []
    items = []
    for item in NAVIGATION:
        if item.system_admin_only:
            if actor.is_system_admin:
                items.append(item)
        elif item.permission is None or actor.can(item.permission):
            items.append(item)
    return items


def active_item(items: list[NavItem], path: str) -> NavItem | None:
    """The entry whose page the request is on or under (/patients/<uuid>/ belongs to 居民档案)."""
    best: tuple[int, NavItem] | None = None
    for item in items:
        url = reverse(item.url_name)
        under = path == url or (url != "/" and path.startswith(url))
        if under and (best is None or len(url) > best[0]):
            best = (len(url), item)
    return best[1] if best else None
