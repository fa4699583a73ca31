"""Views of the release steps: sign, follow a release, read the signed PDF.

Same shape as `reports.views`: load, check, one service call, pick the response.
"""

from __future__ import annotations

import json

from django.conf import settings
from django.contrib import messages
from django.db.models import Prefetch
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.http import content_disposition_header
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from reports import amendments, workflow
from reports.models import (
    Notification,
    Report,
    ReportState,
    Review,
    Signature,
    Submission,
    SubmissionAttempt,
)
from reports.payload import DRAFT_STATUSES, ReportContent
from reports.release_forms import (
    AmendForm,
    BatchVerifyForm,
    CancelForm,
    CompleteForm,
    ReturnForm,
    SignForm,
)
from reports.roles import has_role_permission, role_required
from reports.timeline import timeline
from reports.views import HtmxHttpRequest


def _visible_report(request: HtmxHttpRequest, report_id: int) -> Report:
    """The author's own report, or any report for a supervisor; otherwise 404 (not 403, which
    would confirm the report exists)."""
    reports = Report.objects.all()
    if not has_role_permission(request.user, "verify_report"):
        reports = reports.for_author(request.user)
    return get_object_or_404(reports, pk=report_id)


@require_GET
@never_cache
@role_required("compose_report")
def signed_reports(request: HtmxHttpRequest) -> HttpResponse:
    """The clinician's signed reports, newest first, with where each release stands."""
    reports = (
        Report.objects.for_author(request.user)
        .exclude(state=ReportState.DRAFT)
        .with_head_content()
        .order_by("-updated_at", "-pk")[:200]
    )
    return render(request, "reports/signed_reports.html", {"reports": reports})


@require_http_methods(["GET", "POST"])
@never_cache
@role_required("compose_report")
def report_sign(request: HtmxHttpRequest, report_id: int) -> HttpResponse:
    report = get_object_or_404(Report.objects.for_author(request.user), pk=report_id)
    if request.method == "POST":
        form = SignForm(request.POST)
        if form.is_valid():
            try:
                result = workflow.sign_report(
                    request=request,
                    report_id=report.pk,
                    signer=request.user,
                    password=form.cleaned_data["password"],
                    version_number=form.cleaned_data["version"],
                    token=form.cleaned_data["token"],
                )
            except workflow.WrongPassword as exc:
                form.add_error("password", str(exc))
            except workflow.TokenReused as exc:
                return render(
                    request,
                    "reports/report_sign_refused.html",
                    {"report": report, "reason": exc},
                    status=422,
                )
            except workflow.SigningRefused as exc:
                form.add_error(None, str(exc))
            else:
                if not result.replayed:
                    messages.success(request, _signed_message(result))
                return _see_other("reports:release", report.pk)
        version_number = int(request.POST.get("version") or report.head)
    else:
        if report.state != ReportState.DRAFT:
            return redirect("reports:release", report.pk)
        version_number = report.head
        form = SignForm(initial={"version": version_number, "token": workflow.new_form_token()})
    version = get_object_or_404(report.versions, number=version_number)
    content = ReportContent.from_json(version.content)
    amendment = amendments.open_amendment(report) if report.remote_id else None
    context = {
        "report": report,
        "version": version,
        "form": form,
        "problems": amendments.problems_for(content, amendment),
        "payload_json": _shown(amendments.preview_body(content, amendment)),
        "amendment": amendment,
        "meaning": workflow.signature_meaning(content),
        "needs_review": workflow.needs_review(content),
        "is_stale": version.number != report.head,
    }
    status = 200 if request.method == "GET" else 422
    return render(request, "reports/report_sign.html", context, status=status)


def _signed_message(result: workflow.SignResult) -> str:
    if result.submission is not None:
        return "Signed. The report is queued and will be sent to ClinikAPI automatically."
    return "Signed. The report now waits for a supervisor's verification."


@require_GET
@never_cache
def report_release(request: HtmxHttpRequest, report_id: int) -> HttpResponse:
    """The report's own page once signed: where it stands, what was released, its timeline,
    and the ways to change it (amend, cancel)."""
    report = _visible_report(request, report_id)
    signatures = list(Signature.objects.filter(report=report).select_related("version", "signer"))
    submissions = (
        Submission.objects.filter(report=report)
        .select_related("version")
        .defer("pdf")
        .prefetch_related(Prefetch("tries", queryset=SubmissionAttempt.objects.order_by("pk")))
        .order_by("-created_at", "-pk")
    )
    entries, autosaves = timeline(report, signatures=signatures)
    is_author = report.author_id == request.user.pk
    is_released = report.state == ReportState.RELEASED
    latest_sent = amendments.released_submission(report)
    context = {
        "report": report,
        "head": report.versions.get(number=report.head),
        "signatures": signatures,
        "releases": [(submission, _shown(submission.payload)) for submission in submissions],
        "timeline": entries,
        "autosaves": autosaves,
        "amendment": amendments.open_amendment(report) if report.remote_id else None,
        # Earlier releases stay readable, marked as superseded (RELIABILITY REC-03).
        "latest_sent": latest_sent,
        "can_amend": is_released and is_author,
        # An early release (registered, partial, preliminary) is completed as final, not
        # written again (reports.amendments checks it again).
        "can_complete": is_released and is_author and amendments.is_early_release(latest_sent),
        "can_cancel": is_released and _may_cancel(request, report),
    }
    return render(request, "reports/report_release.html", context)


@require_http_methods(["GET", "POST"])
@never_cache
@role_required("compose_report")
def report_amend(request: HtmxHttpRequest, report_id: int) -> HttpResponse:
    """Start an amendment of one's own released report: kind and reason, then the composer."""
    report = get_object_or_404(Report.objects.for_author(request.user), pk=report_id)
    form = AmendForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            amendments.start_amendment(
                report_id=report.pk,
                user=request.user,
                kind=form.cleaned_data["kind"],
                reason=form.cleaned_data["reason"],
                explanation=form.cleaned_data["explanation"],
            )
        except amendments.AmendmentRefused as exc:
            report.refresh_from_db()
            if report.state == ReportState.DRAFT and amendments.open_amendment(report):
                # A second click of the same form: the amendment is already open.
                return _see_other("reports:edit", report.pk)
            form.add_error(None, str(exc))
        else:
            messages.success(
                request,
                "Amendment started from the released version. Fields ClinikAPI cannot change "
                "are locked; sign when the changes are complete.",
            )
            return _see_other("reports:edit", report.pk)
    elif request.method == "GET" and report.state != ReportState.RELEASED:
        return redirect("reports:release", report.pk)
    status = 422 if request.method == "POST" else 200
    context = {
        "report": report,
        "form": form,
        "amendments_reviewed": settings.CLINIKUI_AMENDMENTS_NEED_REVIEW,
    }
    return render(request, "reports/report_amend.html", context, status=status)


@require_http_methods(["GET", "POST"])
@never_cache
@role_required("compose_report")
def report_complete(request: HtmxHttpRequest, report_id: int) -> HttpResponse:
    """Complete one's own early release as final: what completes it, then the composer."""
    report = get_object_or_404(Report.objects.for_author(request.user), pk=report_id)
    form = CompleteForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            amendments.start_completion(
                report_id=report.pk,
                user=request.user,
                explanation=form.cleaned_data["explanation"],
            )
        except amendments.AmendmentRefused as exc:
            report.refresh_from_db()
            amendment = amendments.open_amendment(report)
            if report.state == ReportState.DRAFT and amendment and amendment.is_completion:
                # A second click of the same form: the completion is already open.
                return _see_other("reports:edit", report.pk)
            form.add_error(None, str(exc))
        else:
            messages.success(
                request,
                "Completion started from the released version, with status final. Change what "
                "the complete results need, or nothing; sign when it is the final report.",
            )
            return _see_other("reports:edit", report.pk)
    released = amendments.released_submission(report)
    is_completable = report.state == ReportState.RELEASED and amendments.is_early_release(released)
    if request.method == "GET" and not is_completable:
        return redirect("reports:release", report.pk)
    status = 422 if request.method == "POST" else 200
    context = {
        "report": report,
        "form": form,
        "released": released.version if released else None,
        "reviewed": settings.CLINIKUI_REVIEW_REQUIRED,
    }
    return render(request, "reports/report_complete.html", context, status=status)


@require_POST
def amendment_discard(request: HtmxHttpRequest, report_id: int) -> HttpResponse:
    """Its author or a supervisor gives up an unsigned amendment (reports.amendments checks)."""
    report = _visible_report(request, report_id)
    try:
        amendment = amendments.discard_amendment(report_id=report.pk, user=request.user)
    except amendments.AmendmentRefused as exc:
        messages.error(request, str(exc))
    else:
        what = "Completion" if amendment.is_completion else "Amendment"
        messages.success(request, f"{what} discarded. The report is as it was released.")
    return _see_other("reports:release", report.pk)


@require_http_methods(["GET", "POST"])
@never_cache
def report_cancel(request: HtmxHttpRequest, report_id: int) -> HttpResponse:
    """Cancel a released report (its author or a supervisor): reason and password."""
    report = _visible_report(request, report_id)
    if not _may_cancel(request, report):
        raise Http404
    if request.method == "POST":
        form = CancelForm(request.POST)
        if form.is_valid():
            try:
                amendments.cancel_report(
                    request=request,
                    report_id=report.pk,
                    user=request.user,
                    password=form.cleaned_data["password"],
                    reason=form.cleaned_data["reason"],
                    explanation=form.cleaned_data["explanation"],
                    token=form.cleaned_data["token"],
                    version_number=form.cleaned_data["version"],
                )
            except workflow.WrongPassword as exc:
                form.add_error("password", str(exc))
            except amendments.AmendmentRefused as exc:
                form.add_error(None, str(exc))
            else:
                messages.success(request, "Cancellation signed; it is being sent to ClinikAPI.")
                return _see_other("reports:release", report.pk)
        status = 422
    else:
        if report.state != ReportState.RELEASED:
            return redirect("reports:release", report.pk)
        form = CancelForm(initial={"version": report.head, "token": workflow.new_form_token()})
        status = 200
    return render(
        request, "reports/report_cancel.html", {"report": report, "form": form}, status=status
    )


@require_GET
@never_cache
def signed_pdf(request: HtmxHttpRequest, report_id: int, submission_id: int) -> HttpResponse:
    """The signed report exactly as it was sent, as a download (RELIABILITY FILE-04 headers)."""
    report = _visible_report(request, report_id)
    submission = get_object_or_404(Submission, report=report, pk=submission_id)
    if submission.pdf is None:
        raise Http404("This release has no PDF yet.")
    response = HttpResponse(bytes(submission.pdf), content_type="application/pdf")
    response["Content-Disposition"] = content_disposition_header(
        as_attachment=True, filename=f"{submission.pdf_title}.pdf"
    )
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "sandbox; default-src 'none'"
    return response


# --- review ----------------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
@never_cache
@role_required("verify_report")
def review_queue(request: HtmxHttpRequest) -> HttpResponse:
    """Reports awaiting verification, oldest first, with batch verification of those ticked."""
    outcomes: list[workflow.BatchOutcome] = []
    form = BatchVerifyForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            outcomes = workflow.verify_many(
                request=request,
                verifier=request.user,
                password=form.cleaned_data["password"],
                choices=form.cleaned_data["reports"],
                token=form.cleaned_data["token"],
            )
        except workflow.WrongPassword as exc:
            form.add_error("password", str(exc))
    if request.method == "GET" or outcomes:
        # A fresh one-time token for the next batch; a form with errors keeps its own.
        form = BatchVerifyForm(initial={"token": workflow.new_form_token()})
    reports = (
        Report.objects.filter(state=ReportState.AWAITING_REVIEW)
        .select_related("author")
        .with_head_content()
        .with_open_amendment()
        .order_by("updated_at", "pk")
    )
    context = {
        "reports": reports,
        # Amendments and completions are verified one at a time, on their own page with their
        # changes (workflow.verify_many refuses them too).
        "batch_statuses": DRAFT_STATUSES,
        "form": form,
        "outcomes": [(Report(pk=outcome.report_id).number, outcome) for outcome in outcomes],
    }
    status = 422 if request.method == "POST" and not outcomes else 200
    return render(request, "reports/review_queue.html", context, status=status)


@require_http_methods(["GET", "POST"])
@never_cache
@role_required("verify_report")
def report_review(request: HtmxHttpRequest, report_id: int) -> HttpResponse:
    """One report under review, read-only, with the verify and return forms."""
    report = get_object_or_404(Report.objects.select_related("author"), pk=report_id)
    verify_form = SignForm(
        initial={"version": report.head, "token": workflow.new_form_token()},
        prefix="verify",
    )
    return_form = ReturnForm(initial={"version": report.head}, prefix="return")
    status = 200
    if request.method == "POST":
        status = 422
        if "return" in request.POST:
            return_form = ReturnForm(request.POST, prefix="return")
            if return_form.is_valid():
                try:
                    workflow.return_report(
                        report_id=report.pk,
                        reviewer=request.user,
                        version_number=return_form.cleaned_data["version"],
                        comment=return_form.cleaned_data["comment"],
                    )
                except workflow.ReviewRefused as exc:
                    return_form.add_error(None, str(exc))
                else:
                    messages.success(request, f"Report {report.number} went back to its author.")
                    return _see_other("reports:review_queue")
        else:
            verify_form = SignForm(request.POST, prefix="verify")
            if verify_form.is_valid():
                try:
                    workflow.verify_report(
                        request=request,
                        report_id=report.pk,
                        verifier=request.user,
                        password=verify_form.cleaned_data["password"],
                        version_number=verify_form.cleaned_data["version"],
                        token=verify_form.cleaned_data["token"],
                    )
                except workflow.WrongPassword as exc:
                    verify_form.add_error("password", str(exc))
                except (workflow.ReviewRefused, workflow.TokenReused) as exc:
                    verify_form.add_error(None, str(exc))
                else:
                    return _see_other("reports:release", report.pk)
    version = report.versions.get(number=report.head)
    content = ReportContent.from_json(version.content)
    amendment = amendments.open_amendment(report) if report.remote_id else None
    signatures = list(Signature.objects.filter(report=report).select_related("version", "signer"))
    reviews = list(Review.objects.filter(report=report).select_related("reviewer", "version"))
    entries, autosaves = timeline(report, signatures=signatures, reviews=reviews)
    context = {
        "report": report,
        "version": version,
        "content": content,
        "amendment": amendment,
        "amendment_changes": amendments.changes_since_release(amendment, content)
        if amendment
        else (),
        "payload_json": _shown(amendments.preview_body(content, amendment)),
        "signatures": signatures,
        "reviews": reviews,
        "is_author": report.author_id == request.user.pk,
        "timeline": entries,
        "autosaves": autosaves,
        "verify_form": verify_form,
        "return_form": return_form,
    }
    return render(request, "reports/report_review.html", context, status=status)


@require_http_methods(["GET", "POST"])
@never_cache
def notifications(request: HtmxHttpRequest) -> HttpResponse:
    """The signed-in user's notifications, newest first; a POST marks them all read."""
    mine = Notification.objects.filter(recipient=request.user)
    if request.method == "POST":
        mine.filter(read_at__isnull=True).update(read_at=timezone.now())
        return _see_other("reports:notifications")
    items = mine.select_related("report")[:100]
    return render(request, "reports/notifications.html", {"notifications": items})


def _may_cancel(request: HtmxHttpRequest, report: Report) -> bool:
    """Its author, while a clinician, or any supervisor (reports.amendments checks it again)."""
    user = request.user
    if report.author_id == user.pk and has_role_permission(user, "compose_report"):
        return True
    return has_role_permission(user, "verify_report")


def _shown(body: dict[str, object]) -> str:
    return json.dumps(body, indent=2, ensure_ascii=False)


def _see_other(view: str, *args: object) -> HttpResponse:
    """303: the browser follows with a GET, and Back does not offer to resend the form."""
    response = redirect(view, *args)
    response.status_code = 303
    return response
