"""Forms of the structure pages. They collect and clean input; the services own the rules."""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.utils.translation import gettext_lazy as _

from yilian.accounts.actors import Actor
from yilian.core.validators import validate_credit_code
from yilian.organizations.models import (
    MAX_POPULATION,
    Capability,
    Consortium,
    ConsortiumKind,
    Department,
    GridKind,
    HealthAuthority,
    Institution,
    InstitutionKind,
    InstitutionLevel,
    MemberRole,
)

BLANK_CHOICE: list[tuple[str, Any]] = [("", _("全部"))]
MEMBER_ROLE_CHOICES = [(MemberRole.MEMBER.value, MemberRole.MEMBER.label), (MemberRole.BACKBONE.value, MemberRole.BACKBONE.label)]


Sections = tuple[tuple[Any, tuple[str, ...]], ...]


class StyledForm(forms.Form):
    """Bootstrap classes on every widget, and `is-invalid` on fields with errors.

    A form may declare SECTIONS, (heading, field names) pairs, to be drawn as titled groups.
    """

    SECTIONS: Sections = ()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for field in self.fields.values():
            if isinstance(field, forms.ModelChoiceField):
                field.empty_label = _("请选择") if field.required else _("（不指定）")
            widget = field.widget
            if isinstance(widget, forms.CheckboxSelectMultiple | forms.RadioSelect):
                continue
            if isinstance(widget, forms.CheckboxInput):
                css = "form-check-input"
            elif isinstance(widget, forms.Select):
                css = "form-select"
            else:
                css = "form-control"
            widget.attrs["class"] = f"{widget.attrs.get('class', '')} {css}".strip()

    def sections(self) -> list[tuple[str, list[forms.BoundField]]]:
        groups = [(title, [self[name] for name in names if name in self.fields]) for title, names in self.SECTIONS]
        return [(title, fields) for title, fields in groups if fields]

    def full_clean(self) -> None:
        super().full_clean()
        self.mark_invalid()

    def mark_invalid(self) -> None:
        for name in self.errors:
            if name in self.fields:
                widget = self.fields[name].widget
                if "is-invalid" not in widget.attrs.get("class", ""):
                    widget.attrs["class"] = f"{widget.attrs.get('class', '')} is-invalid".strip()
                widget.attrs["aria-invalid"] = "true"


def apply_validation_error(form: StyledForm, error: ValidationError) -> None:
    """Show a service's ValidationError on the form: on its fields where the form has them."""
    if hasattr(error, "error_dict"):
        for field, errors in error.error_dict.items():
            target = field if field in form.fields else None
            for item in errors:
                form.add_error(target, item)
    else:
        form.add_error(None, error)
    form.mark_invalid()


# --- Institutions ---------------------------------------------------------------------------


class InstitutionFilterForm(StyledForm):
    q = forms.CharField(
        label=_("搜索"),
        required=False,
        max_length=100,
        widget=forms.TextInput(attrs={"placeholder": _("机构名称、简称、信用代码"), "type": "search"}),
    )
    kind = forms.ChoiceField(label=_("类型"), required=False, choices=BLANK_CHOICE + list(InstitutionKind.choices))
    level = forms.ChoiceField(label=_("级别"), required=False, choices=BLANK_CHOICE + list(InstitutionLevel.choices))
    town = forms.ChoiceField(label=_("乡镇/街道"), required=False)
    consortium = forms.ChoiceField(label=_("医联体"), required=False)
    active = forms.ChoiceField(label=_("状态"), required=False, choices=[("", _("全部")), ("1", _("启用")), ("0", _("停用"))])

    def __init__(self, *args: Any, towns: list[str], consortia: list[Consortium], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["town"].choices = BLANK_CHOICE + [(t, t) for t in towns]  # type: ignore[attr-defined]
        self.fields["consortium"].choices = BLANK_CHOICE + [  # type: ignore[attr-defined]
            (str(c.uuid), c.short_name or c.name) for c in consortia
        ]


def _normalise_code(value: str | None) -> str:
    return (value or "").strip().upper()


class InstitutionForm(StyledForm):
    """Fields of an institution, shared by create and edit."""

    name = forms.CharField(label=_("机构名称"), max_length=100)
    short_name = forms.CharField(label=_("简称"), max_length=30, required=False)
    kind = forms.ChoiceField(label=_("类型"), choices=[("", _("请选择")), *InstitutionKind.choices])
    level = forms.ChoiceField(label=_("级别"), choices=InstitutionLevel.choices, initial=InstitutionLevel.UNGRADED)
    credit_code = forms.CharField(
        label=_("统一社会信用代码"),
        max_length=18,
        required=False,
        widget=forms.TextInput(attrs={"class": "font-monospace", "autocapitalize": "characters"}),
    )
    license_number = forms.CharField(label=_("执业许可证登记号"), max_length=40, required=False)
    parent = forms.ModelChoiceField(
        label=_("上级机构"),
        queryset=Institution.objects.none(),
        required=False,
        help_text=_("村卫生室须选择所属的乡镇卫生院或社区卫生服务中心。"),
        error_messages={"invalid_choice": _("请选择有效的上级机构。")},
    )
    town = forms.CharField(label=_("所在乡镇/街道"), max_length=50, required=False)
    address = forms.CharField(label=_("地址"), max_length=200, required=False)
    phone = forms.CharField(label=_("联系电话"), max_length=30, required=False)
    capabilities = forms.MultipleChoiceField(
        label=_("服务能力"),
        choices=Capability.choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        error_messages={"invalid_choice": _("请选择有效的服务能力。")},
    )

    SECTIONS: Sections = (
        (_("基本信息"), ("name", "short_name", "kind", "level", "parent", "town", "address", "phone")),
        (_("证照"), ("credit_code", "license_number")),
        (_("服务能力"), ("capabilities",)),
    )
    SERVICE_FIELDS = (
        "name",
        "short_name",
        "kind",
        "level",
        "credit_code",
        "license_number",
        "parent",
        "town",
        "address",
        "phone",
    )

    def __init__(self, *args: Any, actor: Actor, instance: Institution | None = None, **kwargs: Any) -> None:
        self.instance = instance
        if instance is not None and "initial" not in kwargs:
            kwargs["initial"] = {
                **{name: getattr(instance, name) for name in self.SERVICE_FIELDS},
                "credit_code": instance.credit_code or "",
                "license_number": instance.license_number or "",
                "capabilities": list(instance.capabilities.values_list("capability", flat=True)),
            }
        super().__init__(*args, **kwargs)
        parents = Institution.objects.visible_to(actor).filter(
            kind__in=[InstitutionKind.TOWNSHIP_CENTRE, InstitutionKind.COMMUNITY_CENTRE], is_active=True
        )
        if instance is not None:
            parents = parents.exclude(pk=instance.pk)
        self.fields["parent"].queryset = parents  # type: ignore[attr-defined]

    def _others(self) -> QuerySet[Institution]:
        others = Institution.objects.all()
        return others.exclude(pk=self.instance.pk) if self.instance is not None else others

    def clean_name(self) -> str:
        name: str = self.cleaned_data["name"].strip()
        if self._others().filter(name=name).exists():
            raise ValidationError(_("已有同名机构，请核对机构名称。"), code="duplicate")
        return name

    def clean_credit_code(self) -> str:
        code = _normalise_code(self.cleaned_data.get("credit_code"))
        if code:
            validate_credit_code(code)
            if self._others().filter(credit_code=code).exists():
                raise ValidationError(_("该统一社会信用代码已被其他机构使用。"), code="duplicate")
        return code

    def clean_license_number(self) -> str:
        number = _normalise_code(self.cleaned_data.get("license_number"))
        if number and self._others().filter(license_number=number).exists():
            raise ValidationError(_("该执业许可证登记号已被其他机构使用。"), code="duplicate")
        return number

    def service_fields(self) -> dict[str, Any]:
        return {name: self.cleaned_data[name] for name in self.SERVICE_FIELDS}


class InstitutionCreateForm(InstitutionForm):
    """A system admin picks the bureau; a consortium manager picks one of the consortia they manage."""

    authority = forms.ModelChoiceField(label=_("主管卫健部门"), queryset=HealthAuthority.objects.none(), required=False)
    consortium = forms.ModelChoiceField(
        label=_("加入医联体"),
        queryset=Consortium.objects.none(),
        required=False,
        help_text=_("新机构将作为该医联体的成员单位登记。"),
    )
    member_role = forms.ChoiceField(
        label=_("成员角色"),
        choices=MEMBER_ROLE_CHOICES,
        initial=MemberRole.MEMBER,
    )

    SECTIONS: Sections = (
        (_("登记到"), ("consortium", "member_role", "authority")),
        *InstitutionForm.SECTIONS,
    )

    def __init__(self, *args: Any, actor: Actor, managed_consortia: QuerySet[Consortium], **kwargs: Any) -> None:
        super().__init__(*args, actor=actor, **kwargs)
        self.actor = actor
        self.fields["consortium"].queryset = managed_consortia  # type: ignore[attr-defined]
        if not self.is_bound and "consortium" not in self.initial and len(managed_consortia) == 1:
            self.initial["consortium"] = managed_consortia[0]
        if actor.is_system_admin:
            self.fields["authority"].queryset = HealthAuthority.objects.filter(is_active=True)  # type: ignore[attr-defined]
        else:
            del self.fields["authority"]
            self.fields["consortium"].required = True
            self.fields["consortium"].error_messages["required"] = _("请选择所属医联体。")

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        consortium = cleaned.get("consortium")
        if consortium is not None:
            authority = cleaned.get("authority")
            if authority is not None and authority != consortium.authority:
                self.add_error("authority", _("机构的主管卫健部门须与医联体一致。"))
            cleaned["authority"] = consortium.authority
        elif "authority" in self.fields and cleaned.get("authority") is None and not self.errors.get("authority"):
            self.add_error("authority", _("请选择主管卫健部门，或选择要加入的医联体。"))
        return cleaned


# --- Consortium members ---------------------------------------------------------------------


class ConsortiumFilterForm(StyledForm):
    q = forms.CharField(
        label=_("搜索"),
        required=False,
        max_length=100,
        widget=forms.TextInput(attrs={"placeholder": _("医联体名称"), "type": "search"}),
    )
    kind = forms.ChoiceField(label=_("类型"), required=False, choices=BLANK_CHOICE + list(ConsortiumKind.choices))


class ConsortiumMemberAddForm(StyledForm):
    institution = forms.ModelChoiceField(
        label=_("机构"),
        queryset=Institution.objects.none(),
        error_messages={"required": _("请选择要加入的机构。"), "invalid_choice": _("请选择有效的机构。")},
    )
    role = forms.ChoiceField(
        label=_("成员角色"),
        choices=MEMBER_ROLE_CHOICES,
        initial=MemberRole.MEMBER,
    )
    joined_on = forms.DateField(
        label=_("加入日期"),
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        error_messages={"invalid": _("请输入有效的日期。")},
    )

    def __init__(self, *args: Any, candidates: QuerySet[Institution], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["institution"].queryset = candidates  # type: ignore[attr-defined]


# --- Departments ----------------------------------------------------------------------------


class DepartmentFilterForm(StyledForm):
    q = forms.CharField(
        label=_("搜索"),
        required=False,
        max_length=100,
        widget=forms.TextInput(attrs={"placeholder": _("科室名称或代码"), "type": "search"}),
    )
    institution = forms.ChoiceField(label=_("机构"), required=False)
    active = forms.ChoiceField(label=_("状态"), required=False, choices=[("", _("全部")), ("1", _("启用")), ("0", _("停用"))])

    def __init__(self, *args: Any, institutions: list[Institution], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["institution"].choices = BLANK_CHOICE + [  # type: ignore[attr-defined]
            (str(i.uuid), i.display_name) for i in institutions
        ]


class DepartmentForm(StyledForm):
    name = forms.CharField(label=_("科室名称"), max_length=60)
    code = forms.CharField(label=_("科室代码"), max_length=20, help_text=_("机构内唯一，如 0301。"))
    is_clinical = forms.BooleanField(label=_("临床科室"), required=False, initial=True)
    beds = forms.IntegerField(
        label=_("编制床位"),
        min_value=0,
        max_value=10_000,
        initial=0,
        error_messages={
            "invalid": _("请输入整数。"),
            "min_value": _("床位数不能为负数。"),
            "max_value": _("床位数不能超过 %(limit_value)s。"),
        },
    )

    SERVICE_FIELDS = ("name", "code", "is_clinical", "beds")

    def __init__(self, *args: Any, instance: Department | None = None, **kwargs: Any) -> None:
        self.instance = instance
        if instance is not None and "initial" not in kwargs:
            kwargs["initial"] = {name: getattr(instance, name) for name in self.SERVICE_FIELDS}
        super().__init__(*args, **kwargs)

    def service_fields(self) -> dict[str, Any]:
        return {name: self.cleaned_data[name] for name in self.SERVICE_FIELDS}

    def clean_name(self) -> str:
        return str(self.cleaned_data["name"]).strip()

    def clean_code(self) -> str:
        return str(self.cleaned_data["code"]).strip().upper()

    def target_institution(self) -> Institution | None:
        return self.instance.institution if self.instance is not None else None

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        institution = self.target_institution() or cleaned.get("institution")
        if institution is None:
            return cleaned
        siblings = Department.objects.filter(institution=institution)
        if self.instance is not None:
            siblings = siblings.exclude(pk=self.instance.pk)
        if (code := cleaned.get("code")) and siblings.filter(code=code).exists():
            self.add_error("code", _("本机构已有该科室代码。"))
        if (name := cleaned.get("name")) and siblings.filter(name=name).exists():
            self.add_error("name", _("本机构已有同名科室。"))
        return cleaned


class DepartmentCreateForm(DepartmentForm):
    institution = forms.ModelChoiceField(
        label=_("机构"),
        queryset=Institution.objects.none(),
        error_messages={"required": _("请选择科室所属机构。"), "invalid_choice": _("请选择有效的机构。")},
    )
    field_order = ["institution"]

    def __init__(self, *args: Any, institutions: QuerySet[Institution], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["institution"].queryset = institutions  # type: ignore[attr-defined]


# --- Service grids --------------------------------------------------------------------------


class GridFilterForm(StyledForm):
    q = forms.CharField(
        label=_("搜索"),
        required=False,
        max_length=100,
        widget=forms.TextInput(attrs={"placeholder": _("网格名称"), "type": "search"}),
    )
    consortium = forms.ChoiceField(label=_("医联体"), required=False)
    town = forms.ChoiceField(label=_("乡镇/街道"), required=False)

    def __init__(self, *args: Any, towns: list[str], consortia: list[Consortium], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["town"].choices = BLANK_CHOICE + [(t, t) for t in towns]  # type: ignore[attr-defined]
        self.fields["consortium"].choices = BLANK_CHOICE + [  # type: ignore[attr-defined]
            (str(c.uuid), c.short_name or c.name) for c in consortia
        ]


class GridForm(StyledForm):
    name = forms.CharField(label=_("网格名称"), max_length=60)
    kind = forms.ChoiceField(label=_("类型"), choices=GridKind.choices, initial=GridKind.VILLAGE)
    town = forms.CharField(label=_("所在乡镇/街道"), max_length=50)
    population = forms.IntegerField(
        label=_("常住人口"),
        min_value=0,
        max_value=MAX_POPULATION,
        initial=0,
        error_messages={
            "invalid": _("请输入整数。"),
            "min_value": _("常住人口不能为负数。"),
            "max_value": _("常住人口不能超过 %(limit_value)s。"),
        },
    )
    responsible_institution = forms.ModelChoiceField(
        label=_("责任机构"),
        queryset=Institution.objects.none(),
        error_messages={"required": _("请选择责任机构。"), "invalid_choice": _("请选择有效的责任机构。")},
    )

    SERVICE_FIELDS = ("name", "kind", "town", "population", "responsible_institution")

    def __init__(self, *args: Any, institutions: QuerySet[Institution], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["responsible_institution"].queryset = institutions  # type: ignore[attr-defined]

    def service_fields(self) -> dict[str, Any]:
        return {name: self.cleaned_data[name] for name in self.SERVICE_FIELDS}


class GridCreateForm(GridForm):
    consortium = forms.ModelChoiceField(
        label=_("医联体"),
        queryset=Consortium.objects.none(),
        error_messages={"required": _("请选择医联体。"), "invalid_choice": _("请选择有效的医联体。")},
    )
    field_order = ["consortium"]

    def __init__(self, *args: Any, consortia: QuerySet[Consortium], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["consortium"].queryset = consortia  # type: ignore[attr-defined]
