"""Forms of the interop pages: filters of the message list, fixing a dead letter, a CSV import."""

from __future__ import annotations

from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from yilian.interop.models import Channel, ImportKind, MessageStatus
from yilian.organizations.forms import StyledForm
from yilian.organizations.models import Institution

MAX_EDIT_CHARS = 1_000_000
MAX_UPLOAD_BYTES = 50 * 1024 * 1024


class MessageFilterForm(StyledForm):
    q = forms.CharField(
        label=_("搜索"),
        required=False,
        max_length=100,
        widget=forms.TextInput(attrs={"type": "search", "placeholder": _("消息标识、类型或原因")}),
    )
    status = forms.ChoiceField(label=_("状态"), required=False, choices=[("", _("全部状态")), *MessageStatus.choices])
    channel = forms.ChoiceField(label=_("通道"), required=False, choices=[("", _("全部通道")), *Channel.choices])
    institution = forms.ChoiceField(label=_("机构"), required=False)

    def __init__(self, *args: Any, institutions: list[Institution], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        choices = [("", _("全部机构")), *((str(i.uuid), i.display_name) for i in institutions)]
        self.fields["institution"].choices = choices  # type: ignore[attr-defined]


class MessageEditForm(StyledForm):
    text = forms.CharField(
        label=_("消息内容"),
        max_length=MAX_EDIT_CHARS,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 14, "class": "font-monospace", "spellcheck": "false"}),
    )

    def clean_text(self) -> str:
        text: str = self.cleaned_data["text"]
        if "\x00" in text:
            raise forms.ValidationError(_("不能包含空字符（\\x00）。"))
        if not text.strip():
            raise forms.ValidationError(_("内容不能为空。"))
        return text


class ImportForm(StyledForm):
    institution = forms.ModelChoiceField(label=_("机构"), queryset=Institution.objects.none())
    kind = forms.ChoiceField(label=_("数据类型"), choices=ImportKind.choices)
    file = forms.FileField(label=_("CSV 文件"), help_text=_("UTF-8 或 GB18030 编码，表头与模板一致；最大 50 MB。"))
    dry_run = forms.BooleanField(label=_("试运行：只校验，不写入"), required=False)

    def __init__(self, *args: Any, institutions: list[Institution], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["institution"]
        field.queryset = Institution.objects.filter(pk__in=[i.pk for i in institutions]).order_by("name")  # type: ignore[attr-defined]
        if len(institutions) == 1:
            field.initial = institutions[0]

    def clean_file(self) -> Any:
        upload = self.cleaned_data["file"]
        if upload.size > MAX_UPLOAD_BYTES:
            raise forms.ValidationError(_("文件过大（最大 50 MB）。"))
        return upload
