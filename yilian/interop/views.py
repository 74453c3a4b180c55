"""Pages of 数据接入: the inbound message list (dead letters first), a message's detail with fix,
replay and discard, CSV imports with templates, a dry run, progress and the row error report."""

from __future__ import annotations

from uuid import UUID

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Q
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from yilian.accounts.roles import Permission
from yilian.interop import csvimport, services
from yilian.interop.access import access_import_job, access_message, interop_institutions, interop_scope_filter
from yilian.interop.forms import ImportForm, MessageEditForm, MessageFilterForm
from yilian.interop.models import ImportJob, ImportKind, InboundMessage, MessageStatus
from yilian.organizations.forms import apply_validation_error
from yilian.organizations.views import actor_of, as_uuid, cleaned_filters, render_list
from yilian.web.pagination import paginate


@login_required
@require_GET
def message_list(request: HttpRequest) -> HttpResponse:
    actor = actor_of(request)
    actor.require(Permission.INTEROP_MANAGE)
    institutions = interop_institutions(actor)
    data = request.GET.copy()
    if "status" not in data:
        data["status"] = MessageStatus.REJECTED
    form = MessageFilterForm(data, institutions=institutions)
    filters = cleaned_filters(form)
    found = InboundMessage.objects.filter(interop_scope_filter(actor)).select_related("institution").defer("raw", "response")
    if status := filters.get("status"):
        found = found.filter(status=status)
    if channel := filters.get("channel"):
        found = found.filter(channel=channel)
    if institution := as_uuid(filters.get("institution")):
        found = found.filter(institution__uuid=institution)
    if q := filters.get("q"):
        found = found.filter(Q(control_id__icontains=q) | Q(kind__icontains=q) | Q(reason__icontains=q))
    page = paginate(request, found.order_by("-id"))
    return render_list(request, "interop/message_list.html", "interop/_message_table.html", {"form": form, "page_obj": page})


@login_required
@require_http_methods(["GET", "POST"])
def message_detail(request: HttpRequest, uuid: UUID) -> HttpResponse:
    actor = actor_of(request)
    actor.require(Permission.INTEROP_MANAGE)
    message = access_message(actor, uuid)
    form = MessageEditForm(request.POST if request.method == "POST" else None, initial={"text": message.text()})
    if request.method == "POST":
        if not message.is_dead_letter:
            raise PermissionDenied(_("只有已拒收的消息可以修改。"))
        if form.is_valid():
            try:
                services.message_edit(actor=actor, message=message, text=form.cleaned_data["text"])
                result = services.message_replay(actor=actor, message=message)
            except ValidationError as exc:
                apply_validation_error(form, exc)
            else:
                _tell(request, result.accepted, result.message)
                return redirect("interop:message_detail", uuid=message.uuid)
    return render(request, "interop/message_detail.html", {"message": message, "form": form, "replays": message.attempts})


def _tell(request: HttpRequest, accepted: bool, message: InboundMessage) -> None:
    if accepted:
        messages.success(request, _("消息已重新处理并入库。"))
    else:
        messages.error(request, _("重新处理仍被拒收：%(reason)s") % {"reason": message.reason[:300]})


@login_required
@require_POST
def message_replay(request: HttpRequest, uuid: UUID) -> HttpResponse:
    actor = actor_of(request)
    actor.require(Permission.INTEROP_MANAGE)
    message = access_message(actor, uuid)
    try:
        result = services.message_replay(actor=actor, message=message)
    except ValidationError as exc:
        messages.error(request, "；".join(exc.messages))
    else:
        _tell(request, result.accepted, result.message)
    return redirect("interop:message_detail", uuid=message.uuid)


@login_required
@require_POST
def message_discard(request: HttpRequest, uuid: UUID) -> HttpResponse:
    actor = actor_of(request)
    actor.require(Permission.INTEROP_MANAGE)
    message = access_message(actor, uuid)
    try:
        services.message_discard(actor=actor, message=message)
    except ValidationError as exc:
        messages.error(request, "；".join(exc.messages))
    else:
        messages.success(request, _("消息已作废。"))
    return redirect("interop:message_detail", uuid=message.uuid)


@login_required
@require_GET
def message_raw(request: HttpRequest, uuid: UUID) -> HttpResponse:
    """The message's bytes exactly as kept, to download."""
    actor = actor_of(request)
    actor.require(Permission.INTEROP_MANAGE)
    message = access_message(actor, uuid)
    extension = {"fhir": "json", "csv": "csv"}.get(message.channel, "hl7")
    response = HttpResponse(bytes(message.raw), content_type="application/octet-stream")
    response["Content-Disposition"] = f'attachment; filename="message-{message.uuid}.{extension}"'
    return response


# --- CSV imports -----------------------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def import_list(request: HttpRequest) -> HttpResponse:
    actor = actor_of(request)
    actor.require(Permission.INTEROP_MANAGE)
    institutions = interop_institutions(actor)
    form = ImportForm(request.POST or None, request.FILES or None, institutions=institutions)
    if request.method == "POST" and form.is_valid():
        upload = form.cleaned_data["file"]
        try:
            job = services.import_job_create(
                actor=actor,
                institution=form.cleaned_data["institution"],
                kind=form.cleaned_data["kind"],
                file_name=upload.name or "import.csv",
                content=upload.read(),
                dry_run=form.cleaned_data["dry_run"],
            )
        except ValidationError as exc:
            apply_validation_error(form, exc)
        else:
            messages.success(request, _("已提交导入任务，正在后台处理。"))
            return redirect("interop:import_detail", uuid=job.uuid)
    jobs = (
        ImportJob.objects.filter(interop_scope_filter(actor))
        .select_related("institution", "created_by")
        .defer("content", "errors")
    )
    page = paginate(request, jobs.order_by("-id"))
    return render(request, "interop/import_list.html", {"form": form, "page_obj": page, "kinds": ImportKind.choices})


@login_required
@require_GET
def import_detail(request: HttpRequest, uuid: UUID) -> HttpResponse:
    actor = actor_of(request)
    actor.require(Permission.INTEROP_MANAGE)
    job = access_import_job(actor, uuid)
    context = {
        "job": job,
        "errors": job.errors[:200],
        "dead_letters": job.rejected_rows.filter(status=MessageStatus.REJECTED).count(),
    }
    template = "interop/_import_progress.html" if getattr(request, "htmx", False) else "interop/import_detail.html"
    return render(request, template, context)


@login_required
@require_GET
def import_template(request: HttpRequest, kind: str) -> HttpResponse:
    actor = actor_of(request)
    actor.require(Permission.INTEROP_MANAGE)
    if kind not in ImportKind.values:
        raise Http404(_("未找到，或您无权访问。"))
    response = HttpResponse(csvimport.template(kind), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="yilian-{kind}-template.csv"'
    return response
