"""Forms of the staff, membership and API-key pages. The services own the rules (who may grant
which role where, password strength); these forms collect input and limit the choices offered."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django import forms
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from yilian.accounts.models import Membership, Practitioner, PractitionerTitle, User
from yilian.accounts.roles import Role
from yilian.organizations.forms import BLANK_CHOICE, Sections, StyledForm
from yilian.organizations.models import Department, HealthAuthority, Institution

DATE_ERRORS = {"invalid": _("请输入有效的日期。")}

# Django's own password messages, in words of our own (its Chinese catalogue lags behind its msgids).
PASSWORD_MESSAGES = {
    "password_too_short": _("密码太短，至少需要 %(min_length)d 个字符。"),
    "password_too_common": _("该密码过于常见，请换一个。"),
    "password_entirely_numeric": _("密码不能全为数字。"),
    "password_too_similar": _("密码与%(verbose_name)s过于相似。"),
}


def password_problems(password: str, user: User) -> list[str]:
    """What is wrong with `password` under AUTH_PASSWORD_VALIDATORS, in Chinese."""
    try:
        validate_password(password, user)
    except ValidationError as exc:
        problems = []
        for error in exc.error_list:
            template = PASSWORD_MESSAGES.get(error.code or "")
            problems.append(str(template % (error.params or {})) if template is not None else " ".join(error.messages))
        return problems
    return []


def open_membership_exists(user: User, institution: Institution | None, role: str, *, exclude_pk: int | None = None) -> bool:
    """Whether `user` already holds an open `role` at `institution` (one_open_membership_per_role_institution)."""
    if institution is None:
        return False
    open_memberships = Membership.objects.filter(user=user, institution=institution, role=role, ended_on__isnull=True)
    if exclude_pk is not None:
        open_memberships = open_memberships.exclude(pk=exclude_pk)
    return open_memberships.exists()


def role_choices(roles: frozenset[str]) -> list[tuple[str, Any]]:
    """The roles an actor may grant, in the order they are declared."""
    return [(value, label) for value, label in Role.choices if value in roles]


class StaffFilterForm(StyledForm):
    q = forms.CharField(
        label=_("搜索"),
        required=False,
        max_length=100,
        widget=forms.TextInput(attrs={"placeholder": _("姓名、用户名或手机号"), "type": "search"}),
    )
    institution = forms.ChoiceField(label=_("机构"), required=False)
    role = forms.ChoiceField(label=_("角色"), required=False, choices=BLANK_CHOICE + list(Role.choices))
    status = forms.ChoiceField(
        label=_("任职状态"),
        required=False,
        choices=[("", _("全部")), ("current", _("在职")), ("ended", _("已结束"))],
    )

    def __init__(self, *args: Any, institutions: list[Institution], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["institution"].choices = BLANK_CHOICE + [  # type: ignore[attr-defined]
            (str(i.uuid), i.display_name) for i in institutions
        ]


class PlaceFieldsMixin(forms.Form):
    """Where a membership is held: an institution the actor manages (or, for a system admin, a bureau)."""

    institution = forms.ModelChoiceField(
        label=_("任职机构"),
        queryset=Institution.objects.none(),
        required=False,
        error_messages={"invalid_choice": _("请选择您有权管理的机构。")},
    )
    authority = forms.ModelChoiceField(
        label=_("任职卫健部门"),
        queryset=HealthAuthority.objects.none(),
        required=False,
        help_text=_("仅卫健局监管员在卫健部门任职。"),
    )
    department = forms.ModelChoiceField(
        label=_("科室"),
        queryset=Department.objects.none(),
        required=False,
        error_messages={"invalid_choice": _("请选择所选机构的科室。")},
    )
    role = forms.ChoiceField(
        label=_("角色"), error_messages={"required": _("请选择角色。"), "invalid_choice": _("您不能授予该角色。")}
    )

    def setup_place(self, *, institutions: QuerySet[Institution], roles: frozenset[str], is_system_admin: bool) -> None:
        self.fields["institution"].queryset = institutions  # type: ignore[attr-defined]
        self.fields["department"].queryset = (  # type: ignore[attr-defined]
            Department.objects.filter(institution__in=institutions, is_active=True)
            .select_related("institution")
            .order_by("institution__name", "code")
        )
        self.fields["role"].choices = [("", _("请选择")), *role_choices(roles)]  # type: ignore[attr-defined]
        if is_system_admin:
            self.fields["authority"].queryset = HealthAuthority.objects.filter(is_active=True)  # type: ignore[attr-defined]
        else:
            del self.fields["authority"]
            self.fields["institution"].required = True
            self.fields["institution"].error_messages["required"] = _("请选择任职机构。")

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        institution = cleaned.get("institution")
        authority = cleaned.get("authority")
        if "institution" in self.errors:
            return cleaned
        if institution is None and authority is None:
            self.add_error("institution", _("请选择任职机构。"))
        elif institution is not None and authority is not None:
            self.add_error("authority", _("任职机构和卫健部门只能选择其一。"))
        department = cleaned.get("department")
        if department is not None and institution is not None and department.institution_id != institution.id:
            self.add_error("department", _("科室须属于所选机构。"))
        return cleaned


class StaffCreateForm(PlaceFieldsMixin, StyledForm):
    """A new account, its practitioner profile and its first membership."""

    full_name = forms.CharField(label=_("姓名"), max_length=50)
    username = forms.CharField(
        label=_("用户名"),
        max_length=150,
        help_text=_("用于登录，可使用字母、数字和 @/./+/-/_。"),
        widget=forms.TextInput(attrs={"autocomplete": "off", "autocapitalize": "none"}),
    )
    phone = forms.CharField(label=_("手机号"), max_length=20, required=False)
    password = forms.CharField(
        label=_("初始密码"),
        strip=False,
        max_length=128,
        help_text=_("至少10位，不能全为数字，不能过于常见或与用户名相近。"),
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )
    password_confirm = forms.CharField(
        label=_("确认密码"), strip=False, max_length=128, widget=forms.PasswordInput(attrs={"autocomplete": "new-password"})
    )
    title = forms.ChoiceField(label=_("职称"), required=False, choices=[("", _("无（非执业人员）")), *PractitionerTitle.choices])
    specialty = forms.CharField(label=_("专业"), max_length=50, required=False)
    certificate_number = forms.CharField(label=_("执业证书编码"), max_length=30, required=False)
    started_on = forms.DateField(
        label=_("任职开始日期"),
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        error_messages=DATE_ERRORS,
        help_text=_("留空为今天。"),
    )

    SECTIONS: Sections = (
        (_("登录账号"), ("full_name", "username", "phone", "password", "password_confirm")),
        (_("执业信息"), ("title", "specialty", "certificate_number")),
        (_("第一条任职"), ("institution", "authority", "department", "role", "started_on")),
    )

    def clean_username(self) -> str:
        username = str(self.cleaned_data["username"]).strip()
        if User.objects.filter(username__iexact=username).exists():
            raise ValidationError(_("该用户名已被使用。"), code="duplicate")
        return username

    def clean_full_name(self) -> str:
        return str(self.cleaned_data["full_name"]).strip()

    def clean_certificate_number(self) -> str:
        number = str(self.cleaned_data.get("certificate_number") or "").strip()
        if number and Practitioner.objects.filter(certificate_number=number).exists():
            raise ValidationError(_("该执业证书编码已登记在其他人员名下。"), code="duplicate")
        return number

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        password, confirm = cleaned.get("password"), cleaned.get("password_confirm")
        if password:
            candidate = User(
                username=cleaned.get("username", ""), full_name=cleaned.get("full_name", ""), phone=cleaned.get("phone", "")
            )
            for problem in password_problems(password, candidate):
                self.add_error("password", problem)
        if password and confirm and password != confirm:
            self.add_error("password_confirm", _("两次输入的密码不一致。"))
        if cleaned.get("title") == "" and (cleaned.get("specialty") or cleaned.get("certificate_number")):
            self.add_error("title", _("填写专业或执业证书编码时，请选择职称。"))
        return cleaned


class MembershipCreateForm(PlaceFieldsMixin, StyledForm):
    """Another role or institution for an existing person (多点执业, 派驻/下沉)."""

    started_on = forms.DateField(
        label=_("开始日期"),
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        error_messages=DATE_ERRORS,
        help_text=_("留空为今天。"),
    )
    ended_on = forms.DateField(
        label=_("结束日期"),
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        error_messages=DATE_ERRORS,
        help_text=_("派驻等有期限的任职请填写。"),
    )

    def __init__(self, *args: Any, person: User, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.person = person

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if (role := cleaned.get("role")) and open_membership_exists(self.person, cleaned.get("institution"), role):
            self.add_error("role", _("此人在该机构已有相同角色的任职，无需重复设置。"))
        started = cleaned.get("started_on") or timezone.localdate()
        ended = cleaned.get("ended_on")
        if ended is not None and ended < started:
            self.add_error("ended_on", _("结束日期不能早于开始日期。"))
        return cleaned


class MembershipEditForm(StyledForm):
    role = forms.ChoiceField(label=_("角色"), error_messages={"invalid_choice": _("您不能授予该角色。")})
    department = forms.ModelChoiceField(
        label=_("科室"),
        queryset=Department.objects.none(),
        required=False,
        error_messages={"invalid_choice": _("请选择本机构的科室。")},
    )
    ended_on = forms.DateField(
        label=_("结束日期"),
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        error_messages=DATE_ERRORS,
    )

    def __init__(
        self, *args: Any, membership: Membership, roles: frozenset[str], departments: QuerySet[Department], **kwargs: Any
    ) -> None:
        kwargs.setdefault(
            "initial", {"role": membership.role, "department": membership.department, "ended_on": membership.ended_on}
        )
        super().__init__(*args, **kwargs)
        self.membership = membership
        self.started_on = membership.started_on
        self.fields["role"].choices = role_choices(roles)  # type: ignore[attr-defined]
        self.fields["department"].queryset = departments  # type: ignore[attr-defined]

    def clean_role(self) -> str:
        role = str(self.cleaned_data["role"])
        membership = self.membership
        if role != membership.role and open_membership_exists(
            membership.user, membership.institution, role, exclude_pk=membership.pk
        ):
            raise ValidationError(_("此人在该机构已有该角色的任职。"))
        return role

    def clean_ended_on(self) -> dt.date | None:
        ended: dt.date | None = self.cleaned_data.get("ended_on")
        if ended is not None and ended < self.started_on:
            raise ValidationError(_("结束日期不能早于开始日期（%(date)s）。") % {"date": self.started_on.isoformat()})
        return ended


class ApiKeyFilterForm(StyledForm):
    q = forms.CharField(
        label=_("搜索"),
        required=False,
        max_length=100,
        widget=forms.TextInput(attrs={"placeholder": _("名称或前缀"), "type": "search"}),
    )
    institution = forms.ChoiceField(label=_("机构"), required=False)
    status = forms.ChoiceField(
        label=_("状态"), required=False, choices=[("", _("全部")), ("usable", _("有效")), ("revoked", _("已吊销"))]
    )

    def __init__(self, *args: Any, institutions: list[Institution], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["institution"].choices = BLANK_CHOICE + [  # type: ignore[attr-defined]
            (str(i.uuid), i.display_name) for i in institutions
        ]


class ApiKeyCreateForm(StyledForm):
    institution = forms.ModelChoiceField(
        label=_("机构"),
        queryset=Institution.objects.none(),
        error_messages={"required": _("请选择机构。"), "invalid_choice": _("请选择您有权管理的机构。")},
    )
    name = forms.CharField(label=_("名称"), max_length=60, help_text=_("说明用途，如“HIS 门诊系统”。"))
    expires_on = forms.DateField(
        label=_("有效期至"),
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        error_messages=DATE_ERRORS,
        help_text=_("留空表示长期有效，可随时吊销。"),
    )

    def __init__(self, *args: Any, institutions: QuerySet[Institution], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["institution"].queryset = institutions  # type: ignore[attr-defined]

    def clean_name(self) -> str:
        return str(self.cleaned_data["name"]).strip()

    def clean_expires_on(self) -> dt.date | None:
        expires: dt.date | None = self.cleaned_data.get("expires_on")
        if expires is not None and expires <= timezone.localdate():
            raise ValidationError(_("有效期须晚于今天。"))
        return expires

    def expires_at(self) -> dt.datetime | None:
        """The end of the chosen day, in the deployment's time zone."""
        expires: dt.date | None = self.cleaned_data.get("expires_on")
        if expires is None:
            return None
        return timezone.make_aware(dt.datetime.combine(expires, dt.time(23, 59, 59)))
