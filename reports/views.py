"""Thin function views: load → validate → one service call → pick the response."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.models import User
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import content_disposition_header
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django.views.decorators.vary import vary_on_headers
from django_htmx.http import (
    HttpResponseClientRedirect,
    reswap,
    retarget,
    trigger_client_event,
)
from django_htmx.middleware import HtmxDetails

from reports import amendments, audit, diffs, services
from reports.forms import PatientSearchForm, ReportForm, concept_displays
from reports.models import (
    Amendment,
    Report,
    ReportVersion,
    Review,
    SubmissionState,
    VersionKind,
)
from reports.payload import (
    FIELD_LABELS,
    MAX_CONCLUSION_CHARS,
    SNOMED_CT,
    ReportContent,
    api_problems,
    build_payload,
)
from reports.pdf_validation import MAX_ATTACHMENT_BYTES, human_size
from reports.roles import has_role_permission, role_required


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails
    # Every view but ping and login needs a signed-in user (LoginRequiredMiddleware).
    user: User


def page_or_fragment(request: HtmxHttpRequest, template: str) -> str:
    """Keep a `#partial` suffix only for htmx fragment requests (not boosts or history restores)."""
    if request.htmx and not request.htmx.boosted and not request.htmx.history_restore_request:
        return template
    return template.partition("#")[0]


def redirect_after_post(request: HtmxHttpRequest, url: str) -> HttpResponse:
    """htmx follows a client-side redirect; everyone else gets a plain one."""
    if request.htmx:
        return HttpResponseClientRedirect(url)
    return redirect(url)


@require_GET
@login_not_required
def ping(request: HttpRequest) -> HttpResponse:
    """Liveness of the web process alone; the floor for throughput benchmarks."""
    return HttpResponse("pong", content_type="text/plain")


@login_not_required
def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """Django's CSRF refusal (CSRF_FAILURE_VIEW), audited: a forged or stale form is a security
    event worth a row (RELIABILITY AU-05). Only the method, the path and Django's reason (a
    fixed phrase) are kept, never the form's content."""
    actor = request.user if request.user.is_authenticated else None
    with transaction.atomic():
        audit.record(
            "security.csrf_refused",
            actor=actor,
            method=request.method,
            path=request.path[:200],
            reason=reason[:100],
        )
    return render(request, "403_csrf.html", status=403)


@require_GET
@never_cache
def home(request: HttpRequest) -> HttpResponse:
    if has_role_permission(request.user, "lookup_patients"):
        return redirect("reports:patient_search")
    return render(request, "home.html")


@require_http_methods(["GET", "POST"])
@never_cache
@vary_on_headers("HX-Request")
@role_required("lookup_patients")
def patient_search(request: HtmxHttpRequest, *, start_report: bool = False) -> HttpResponse:
    # Searching is a read, but names and birth dates are patient data and must stay out of
    # URLs, browser history and access logs (RELIABILITY SES-04), so the search is a POST.
    form = PatientSearchForm(request.POST or None)
    result = None
    error = None
    if form.is_bound and form.is_valid():
        try:
            result = services.find_patients(
                name=form.cleaned_data["name"], birth_date=form.cleaned_data["birth_date"]
            )
        except services.APIUnavailable as exc:
            error = exc
    template = page_or_fragment(request, "reports/patient_search.html#patient-results")
    context = {"form": form, "result": result, "error": error, "start_report": start_report}
    return render(request, template, context)


@require_GET
@never_cache
@role_required("lookup_patients")
def patient_detail(request: HttpRequest, patient_id: str) -> HttpResponse:
    try:
        chart = services.get_patient_chart(patient_id=patient_id)
    except services.PatientNotFound:
        return render(
            request, "reports/patient_not_found.html", {"patient_id": patient_id}, status=404
        )
    except services.APIUnavailable as exc:
        return render(
            request,
            "reports/patient_detail.html",
            {"patient_id": patient_id, "error": exc},
            status=503,
        )
    return render(request, "reports/patient_detail.html", {"chart": chart})


# --- the composer ------------------------------------------------------------------------------


def _own_report(request: HtmxHttpRequest, report_id: int) -> Report:
    """The signed-in clinician's own report; anyone else's is a 404, never a 403 that leaks."""
    return get_object_or_404(Report.objects.for_author(request.user), pk=report_id)


@require_GET
@never_cache
@role_required("compose_report")
def drafts(request: HtmxHttpRequest) -> HttpResponse:
    reports = (
        Report.objects.for_author(request.user)
        .drafts()
        .with_head_content()
        # What the rows show; the rest (results flagged critical, a JSON list) is not decoded.
        .only("patient_name", "patient_birth_date", "head", "updated_at")
    )
    return render(request, "reports/drafts.html", {"reports": reports})


@require_http_methods(["GET", "POST"])
@never_cache
@role_required("compose_report")
def report_new(request: HtmxHttpRequest) -> HttpResponse:
    """Step one of a new report: find the patient, then start the draft for them."""
    if request.method == "POST" and "patient_id" in request.POST:
        patient_id = request.POST["patient_id"]
        try:
            report = services.start_report(author=request.user, patient_id=patient_id)
        except services.PatientNotFound:
            messages.error(request, "That patient was not found; search again.")
        except services.APIUnavailable as exc:
            messages.error(request, str(exc))
        else:
            return redirect_after_post(request, report.get_absolute_url())
        return redirect_after_post(request, reverse("reports:new"))
    return patient_search(request, start_report=True)


@require_http_methods(["GET", "POST"])
@never_cache
@role_required("compose_report")
def report_edit(request: HtmxHttpRequest, report_id: int) -> HttpResponse:
    report = get_object_or_404(
        Report.objects.for_author(request.user).with_last_outcomes(), pk=report_id
    )
    if not report.is_editable and request.method == "GET":
        # Signed content is frozen: the report's page is now where its release stands.
        return redirect("reports:release", report.pk)
    head = report.versions.get(number=report.head)
    saved = ReportContent.from_json(head.content)
    # An amendment of a released report locks what ClinikAPI cannot change (CONTRACT §11.4).
    amendment = amendments.open_amendment(report) if report.remote_id else None
    try:
        options: services.ComposerOptions | None = services.get_composer_options(
            patient_id=report.patient_id
        )
        api_error = None
    except services.APIUnavailable as exc:
        options, api_error = None, exc
    # Fields ClinikAPI cannot offer right now are disabled and keep their saved values, which a
    # bound form takes from `initial`.
    initial = ReportForm.initial_from(saved, base_version=head.number)
    if request.method != "POST":
        form = ReportForm(initial=initial, options=options, saved=saved, amendment=amendment)
        context = _composer_context(report, head, form, options, api_error, saved, amendment)
        return render(request, "reports/report_edit.html", context)

    is_autosave = request.POST.get("autosave") == "1"
    form = ReportForm(
        request.POST, initial=initial, options=options, saved=saved, amendment=amendment
    )
    if not form.is_valid():
        if is_autosave:
            # Nothing is saved while a field is invalid; the status line says so.
            return render(
                request, "reports/report_edit.html#autosave-status", {"form": form}, status=422
            )
        context = _composer_context(report, head, form, options, api_error, saved, amendment)
        if request.htmx:
            response = render(request, "reports/report_edit.html#report-form", context)
            return reswap(retarget(response, "#report-form"), "outerHTML")
        return render(request, "reports/report_edit.html", context)
    try:
        version = services.save_draft(
            report_id=report.pk,
            author=request.user,
            base_version=form.cleaned_data["base_version"],
            content=form.to_content(patient_id=report.patient_id),
            kind=VersionKind.AUTOSAVED if is_autosave else VersionKind.SAVED,
        )
    except services.DraftConflict as exc:
        if is_autosave:
            # Stay on the page (the text is there and kept); stop autosaving; offer the comparison.
            context = {"report": report, "conflict": exc}
            response = render(request, "reports/_autosave_conflict.html", context, status=409)
            return trigger_client_event(response, "draft-conflict")
        return redirect_after_post(
            request, reverse("reports:conflict", args=[report.pk, exc.kept.number])
        )
    except services.ReportNotEditable as exc:
        messages.error(request, str(exc))
        return redirect_after_post(request, report.get_absolute_url())
    if options is not None:
        _note_critical_results(report, options, ReportContent.from_json(version.content))
    if not is_autosave:
        messages.success(request, f"Saved as version {version.number}.")
        return redirect_after_post(request, report.get_absolute_url())
    content = ReportContent.from_json(version.content)
    context = {
        "report": report,
        "head": version,
        "form": form,
        "options": options,
        "encounter_changed": form.cleaned_data["encounter"] != saved.encounter_id,
        # The category was left empty and suggested from the report code: show the suggestion.
        "category_widget": _category_widget(content)
        if content.category != form.cleaned_data["category"]
        else None,
        **_preview(content, amendment),
    }
    return render(request, "reports/_autosaved.html", context)


def _note_critical_results(
    report: Report, options: services.ComposerOptions, content: ReportContent
) -> None:
    """Remember which chosen results are critical, for the review queue (one write, and only
    when the set changed)."""
    chosen = set(content.result_ids)
    critical = [o.id for o in options.observations if o.id in chosen and o.is_critical]
    if critical != report.critical_results:
        Report.objects.filter(pk=report.pk).update(critical_results=critical)


def _category_widget(content: ReportContent) -> str:
    form = ReportForm(initial={"category": content.category}, options=None, saved=content)
    return form["category"].as_widget(attrs={"class": "form-select", "hx-swap-oob": "true"})


def _composer_context(
    report: Report,
    head: ReportVersion,
    form: ReportForm,
    options: services.ComposerOptions | None,
    api_error: services.APIUnavailable | None,
    saved: ReportContent,
    amendment: Amendment | None,
) -> dict[str, object]:
    # What the form shows: the posted values when it is re-shown with errors, else the saved.
    report_code = str(form["report_code"].value() or "")
    chosen_codes = [str(code) for code in form["conclusion_codes"].value() or ()]
    # The saved version names its codes (the names they were chosen with, which the next save
    # looks up again); only codes posted since (a form shown again with errors) are looked up.
    displays = _saved_displays(saved)
    if (report_code and ("loinc", report_code) not in displays) or any(
        ("snomed", code) not in displays for code in chosen_codes
    ):
        displays = {**concept_displays(report_code, *chosen_codes), **displays}
    return {
        "report": report,
        "head": head,
        "form": form,
        "options": options,
        "api_error": api_error,
        "max_conclusion": MAX_CONCLUSION_CHARS,
        "report_code_box": {
            "id": "report-code",
            "label": "Report code",
            "name": "report_code",
            "system": "loinc",
            "code": report_code,
            "display": displays.get(("loinc", report_code), report_code),
        },
        "conclusion_code_box": {
            "id": "conclusion-code",
            "label": "Conclusion codes",
            "name": "conclusion_code_choice",
            "system": "snomed",
        },
        "chosen_conclusion_codes": [
            {"code": code, "display": displays.get(("snomed", code), code), "system": SNOMED_CT}
            for code in chosen_codes
        ],
        **_with_refusal(report, _preview(saved, amendment)),
    }


def _saved_displays(saved: ReportContent) -> dict[tuple[str, str], str]:
    """The displays the saved content carries, keyed like `concept_displays`."""
    displays = {("snomed", concept.code): concept.display for concept in saved.conclusion_codes}
    if saved.code is not None:
        displays["loinc", saved.code.code] = saved.code.display
    return displays


def _with_refusal(report: Report, preview: dict[str, Any]) -> dict[str, Any]:
    """ClinikAPI's refusal of the last release, shown on the draft and at the fields it names
    (where the field has no problem of its own to show). `report` comes `with_last_outcomes()`:
    a draft never signed reads nothing more."""
    # Annotations the type checker cannot see through get_object_or_404.
    last_review_id: int | None = report.last_review_id  # type: ignore[attr-defined]
    last_submission_state: str | None = report.last_submission_state  # type: ignore[attr-defined]
    review = None
    if last_review_id is not None:
        review = Review.objects.select_related("reviewer", "version").get(pk=last_review_id)
    preview = {**preview, "last_review": review}
    if last_submission_state != SubmissionState.RETURNED:
        return {**preview, "returned": None}
    latest = report.submissions.defer("pdf", "payload").order_by("-created_at", "-pk").first()
    if latest is None or latest.state != SubmissionState.RETURNED:
        return {**preview, "returned": None}
    from_api = {problem.field: problem for problem in api_problems(latest.issues)}
    return {
        **preview,
        "returned": latest,
        "problems_by_field": {**from_api, **preview["problems_by_field"]},
    }


def _preview(content: ReportContent, amendment: Amendment | None) -> dict[str, Any]:
    problems = amendments.problems_for(content, amendment)
    by_field = {p.field: p for p in problems}
    return {
        "amendment": amendment,
        "amendment_changes": amendments.changes_since_release(amendment, content)
        if amendment
        else (),
        "payload_json": json.dumps(
            amendments.preview_body(content, amendment), indent=2, ensure_ascii=False
        ),
        "problems": problems,
        "problems_by_field": by_field,
        "field_problems": [(name, by_field.get(name)) for name in FIELD_LABELS],
        "attached": content.attachments,
        "max_attachment": human_size(MAX_ATTACHMENT_BYTES),
    }


@require_GET
@never_cache
@role_required("compose_report")
def report_conflict(request: HtmxHttpRequest, report_id: int, number: int) -> HttpResponse:
    """The current version beside a kept conflict copy, so the clinician can carry on from one."""
    report = _own_report(request, report_id)
    kept = get_object_or_404(report.versions, number=number, kind=VersionKind.CONFLICT)
    current = report.versions.get(number=report.head)
    changes = diffs.compare(
        ReportContent.from_json(current.content), ReportContent.from_json(kept.content)
    )
    context = {"report": report, "current": current, "kept": kept, "changes": changes}
    return render(request, "reports/report_conflict.html", context)


@require_GET
@never_cache
@role_required("compose_report")
def report_history(request: HtmxHttpRequest, report_id: int) -> HttpResponse:
    report = _own_report(request, report_id)
    versions = list(report.versions.select_related("author").order_by("-number"))
    by_number = {v.number: v for v in versions}
    try:
        new_number = int(request.GET.get("b") or report.head)
        old_number = int(request.GET.get("a") or max(new_number - 1, 1))
        old, new = by_number[old_number], by_number[new_number]
    except (KeyError, ValueError):
        raise Http404("No such version") from None
    changes = diffs.compare(
        ReportContent.from_json(old.content), ReportContent.from_json(new.content)
    )
    context = {"report": report, "versions": versions, "old": old, "new": new, "changes": changes}
    return render(request, "reports/report_history.html", context)


@require_POST
@role_required("compose_report")
def report_restore(request: HtmxHttpRequest, report_id: int) -> HttpResponse:
    """Restores the version named by the pressed button (`number`) as a new version. One form
    serves the whole history table, so the page carries one CSRF token, not one per row."""
    report = _own_report(request, report_id)
    try:
        number = int(request.POST.get("number", ""))
        version = services.restore_version(
            report_id=report.pk,
            author=request.user,
            number=number,
            base_version=int(request.POST.get("base_version") or 0),
        )
    except (ValueError, ReportVersion.DoesNotExist):
        raise Http404("No such version") from None
    except services.DraftConflict as exc:
        return redirect_after_post(
            request, reverse("reports:conflict", args=[report.pk, exc.kept.number])
        )
    except services.ReportNotEditable as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Version {number} restored as version {version.number}.")
    return redirect_after_post(request, report.get_absolute_url())


@require_GET
@never_cache
@role_required("compose_report")
def report_payload(request: HtmxHttpRequest, report_id: int) -> JsonResponse:
    """The exact body `POST /v1/labs` (or, for an amendment, `PATCH /v1/labs/{id}`) would
    receive for the current version, without the signed report PDF the worker adds."""
    report = _own_report(request, report_id)
    head = report.versions.get(number=report.head)
    content = ReportContent.from_json(head.content)
    body = build_payload(content, file_bytes=services.attachment_bytes(report))
    if report.remote_id and amendments.open_amendment(report):
        body = amendments.patch_body(body)
    return JsonResponse(body)


# --- attachments ---------------------------------------------------------------------------


@require_POST
@role_required("compose_report")
def attachment_add(request: HtmxHttpRequest, report_id: int) -> HttpResponse:
    report = _own_report(request, report_id)
    upload = request.FILES.get("file")
    error = None
    if upload is None:
        error = "Choose a PDF file to attach."
    elif upload.size is not None and upload.size > MAX_ATTACHMENT_BYTES:
        # Refused before reading it; the validator would say the same.
        error = (
            f"This file is {human_size(upload.size, round_up=True)}; attachments can be at most "
            f"{human_size(MAX_ATTACHMENT_BYTES)} so the report fits ClinikAPI's 1 MiB limit."
        )
    else:
        try:
            services.attach_pdf(
                report_id=report.pk,
                author=request.user,
                filename=upload.name or "",
                data=upload.read(),
            )
        except (services.AttachmentRefused, services.ReportNotEditable) as exc:
            error = str(exc)
    return _attachments_changed(request, report, error)


@require_POST
@role_required("compose_report")
def attachment_remove(request: HtmxHttpRequest, report_id: int, sha256: str) -> HttpResponse:
    report = _own_report(request, report_id)
    error = None
    try:
        services.remove_pdf(report_id=report.pk, author=request.user, sha256=sha256)
    except services.ReportNotEditable as exc:
        error = str(exc)
    return _attachments_changed(request, report, error)


def _attachments_changed(
    request: HtmxHttpRequest, report: Report, error: str | None
) -> HttpResponse:
    """htmx: the attachments region, the new base version and the preview; others: the page."""
    if not request.htmx:
        if error:
            messages.error(request, error)
        return redirect(report.get_absolute_url())
    report.refresh_from_db()
    head = report.versions.get(number=report.head)
    context = {
        "report": report,
        "head": head,
        "attachment_error": error,
        **_preview(
            ReportContent.from_json(head.content),
            amendments.open_amendment(report) if report.remote_id else None,
        ),
    }
    return render(
        request, "reports/_attachments_changed.html", context, status=422 if error else 200
    )


@require_GET
@role_required("compose_report")
def attachment_download(request: HtmxHttpRequest, report_id: int, sha256: str) -> HttpResponse:
    """The file exactly as uploaded, only ever as a download (RELIABILITY FILE-04)."""
    report = _own_report(request, report_id)
    attachment = get_object_or_404(report.attachments, sha256=sha256)
    response = HttpResponse(bytes(attachment.content), content_type="application/pdf")
    response["Content-Disposition"] = content_disposition_header(
        as_attachment=True, filename=attachment.filename
    )
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "sandbox; default-src 'none'"
    response["Cache-Control"] = "no-store"
    return response
