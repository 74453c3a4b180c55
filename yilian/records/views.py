"""Records pages: the patient 360 view (患者360视图) with its timeline, the test order form that
shows recognisable results first, and the recognise action (结果互认).

Every page loads the patient through `records.access.access_patient_record`, which checks the
holder-or-grant rule and writes the access-log row.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.forms import Form
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.cache import patch_vary_headers
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from yilian.accounts.actors import Actor
from yilian.accounts.roles import Permission
from yilian.organizations.models import Institution
from yilian.records.access import access_patient_record
from yilian.records.catalogue import ORDERABLE_TESTS, TESTS_BY_CODE
from yilian.records.forms import OrderForm, RecognitionForm, TimelineFilterForm
from yilian.records.models import DiagnosticReport, Observation
from yilian.records.selectors import TIMELINE_KINDS, TimelineFilter, recognisable_results, timeline_items, timeline_rows
from yilian.records.services import result_recognise, service_request_create
from yilian.web.pagination import paginate


def _actor(request: HttpRequest) -> Actor:
    return request.actor  # type: ignore[attr-defined, no-any-return]


def _errors(exc: ValidationError) -> list[str]:
    if hasattr(exc, "error_dict"):
        return [message for messages_ in exc.message_dict.values() for message in messages_]
    return list(exc.messages)


def _form_errors(request: HttpRequest, form: Form) -> None:
    for errors in form.errors.values():
        for message in errors:
            messages.error(request, str(message))


@login_required
@require_GET
def patient_record(request: HttpRequest, uuid: str) -> HttpResponse:
    """患者360视图: one timeline of everything every member sent, filterable, each row with its source."""
    actor = _actor(request)
    patient = access_patient_record(actor, uuid, path=request.get_full_path())
    sources = list(Institution.objects.filter(source_identities__patient=patient).distinct().order_by("name"))
    form = TimelineFilterForm(request.GET or None)
    filters = TimelineFilter()
    if form.is_bound and form.is_valid():
        data = form.cleaned_data
        chosen = data["institution"]
        filters = TimelineFilter(
            kinds=frozenset(data["kind"]),
            institution_id=next((i.pk for i in sources if i.uuid == chosen), 0) if chosen else None,
            date_from=data["date_from"],
            date_to=data["date_to"],
            query=data["q"].strip(),
        )
    rows = timeline_rows(patient, filters)
    page = paginate(request, rows) if rows is not None else None
    items = timeline_items(list(page.object_list), actor=actor) if page is not None else []
    context = {
        "patient": patient,
        "grant": patient.grant,  # type: ignore[attr-defined]
        "form": form,
        "sources": sources,
        "kinds": TIMELINE_KINDS.values(),
        "page_obj": page,
        "items": items,
        "order_form": OrderForm(),
        "can_order": actor.can(Permission.RESULT_RECOGNISE),
        "selected_kinds": request.GET.getlist("kind"),
        "selected_institution": request.GET.get("institution", ""),
    }
    template = "records/_timeline.html" if request.htmx else "records/patient_record.html"  # type: ignore[attr-defined]
    response = render(request, template, context)
    patch_vary_headers(response, ["HX-Request"])
    return response


@login_required
@require_http_methods(["GET", "POST"])
def order_test(request: HttpRequest, uuid: str) -> HttpResponse:
    """开检查/检验. GET ?code= shows the results of that test other members made within its validity
    window (htmx panel); POST places the order (a ServiceRequest)."""
    actor = _actor(request)
    actor.require(Permission.RESULT_RECOGNISE)
    patient = access_patient_record(actor, uuid, path=request.get_full_path())
    if request.method == "POST":
        form = OrderForm(request.POST)
        if form.is_valid():
            try:
                order = service_request_create(
                    actor=actor, patient=patient, code=form.cleaned_data["code"], reason=form.cleaned_data["reason"]
                )
            except ValidationError as exc:
                for message in _errors(exc):
                    messages.error(request, message)
            else:
                messages.success(request, _("已开单：%(test)s。") % {"test": order.display})
        else:
            _form_errors(request, form)
        return redirect("records:patient_record", uuid=patient.uuid)
    form = OrderForm(request.GET)
    test = TESTS_BY_CODE.get(form.data.get("code", "")) if form.is_valid() else None
    results = recognisable_results(actor=actor, patient=patient, test=test) if test else []
    return render(
        request,
        "records/_order_results.html",
        {"patient": patient, "test": test, "results": results, "form": form, "tests": ORDERABLE_TESTS},
        status=200 if test or not form.data.get("code") else 422,
    )


@login_required
@require_POST
def recognise_result(request: HttpRequest, uuid: str) -> HttpResponse:
    """互认: accept another member's result of the test instead of repeating it; recorded."""
    actor = _actor(request)
    actor.require(Permission.RESULT_RECOGNISE)
    patient = access_patient_record(actor, uuid, path=request.get_full_path())
    form = RecognitionForm(request.POST)
    if not form.is_valid():
        _form_errors(request, form)
        return redirect("records:patient_record", uuid=patient.uuid)
    model = Observation if form.cleaned_data["kind"] == "observation" else DiagnosticReport
    result = model._default_manager.filter(uuid=form.cleaned_data["result"], identity__patient=patient).first()
    if result is None:
        raise Http404(_("未找到，或您无权访问。"))
    try:
        recognition = result_recognise(actor=actor, patient=patient, result=result, code=form.cleaned_data["code"])
    except ValidationError as exc:
        for message in _errors(exc):
            messages.error(request, message)
    else:
        messages.success(
            request,
            _("已互认 %(institution)s 的%(test)s结果，无需重复检查。")
            % {"institution": result.institution.name, "test": recognition.display},
        )
    return redirect("records:patient_record", uuid=patient.uuid)
