"""Thin function views: load → validate → one service call → pick the response."""

from __future__ import annotations

from django.contrib.auth.decorators import login_not_required, permission_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods
from django.views.decorators.vary import vary_on_headers
from django_htmx.middleware import HtmxDetails

from reports import services
from reports.forms import PatientSearchForm


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


def page_or_fragment(request: HtmxHttpRequest, template: str) -> str:
    """Keep a `#partial` suffix only for htmx fragment requests (not boosts or history restores)."""
    if request.htmx and not request.htmx.boosted and not request.htmx.history_restore_request:
        return template
    return template.partition("#")[0]


@require_GET
@login_not_required
def ping(request: HttpRequest) -> HttpResponse:
    """Liveness of the web process alone; the floor for throughput benchmarks."""
    return HttpResponse("pong", content_type="text/plain")


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    if request.user.has_perm("reports.lookup_patients"):
        return redirect("reports:patient_search")
    return render(request, "home.html")


@require_http_methods(["GET", "POST"])
@never_cache
@vary_on_headers("HX-Request")
@permission_required("reports.lookup_patients", raise_exception=True)
def patient_search(request: HtmxHttpRequest) -> HttpResponse:
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
    return render(request, template, {"form": form, "result": result, "error": error})


@require_GET
@never_cache
@permission_required("reports.lookup_patients", raise_exception=True)
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
