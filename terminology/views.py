"""Lookups for people (the combobox fragment and page) and for code (the JSON endpoint)."""

from __future__ import annotations

from django.contrib.auth.decorators import login_not_required
from django.http import HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET
from django.views.decorators.vary import vary_on_headers

from reports.views import HtmxHttpRequest
from terminology import search
from terminology.forms import SearchForm
from terminology.models import LOINC, SNOMED, Concept, ImportRecord

COMBOBOXES = (
    {"id": "report-code", "label": "Report code", "system": "loinc", "name": "report_code"},
    {
        "id": "conclusion-code",
        "label": "Conclusion code",
        "system": "snomed",
        "name": "conclusion_code",
    },
)


@require_GET
def search_json(request: HtmxHttpRequest) -> JsonResponse:
    form = SearchForm(request.GET)
    if not form.is_valid():
        return JsonResponse({"errors": form.errors.get_json_data()}, status=400)
    matches = search.search(**form.search_arguments())
    return JsonResponse(
        {"results": [{"code": m.code, "display": m.display, "system": m.system} for m in matches]}
    )


@require_GET
def suggestions(request: HtmxHttpRequest) -> HttpResponse:
    """The combobox's options: the listbox's children, nothing else."""
    form = SearchForm(request.GET)
    matches: list[search.Match] = []
    listbox = "terminology"
    if form.is_valid():
        matches = search.search(**form.search_arguments())
        listbox = form.cleaned_data["listbox"] or listbox
    return render(request, "terminology/_options.html", {"matches": matches, "listbox": listbox})


@require_GET
@vary_on_headers("HX-Request")
def lookup(request: HtmxHttpRequest) -> HttpResponse:
    """The page with both pickers; without JavaScript its form lists the matches itself."""
    form = SearchForm(request.GET) if "q" in request.GET else None
    matches = search.search(**form.search_arguments()) if form and form.is_valid() else None
    system = form.cleaned_data.get("system") if form and form.is_valid() else None
    return render(
        request,
        "terminology/lookup.html",
        {"comboboxes": COMBOBOXES, "matches": matches, "searched_system": system, "form": form},
    )


@require_GET
@login_not_required
def about(request: HtmxHttpRequest) -> HttpResponse:
    """The licence notices of the terminology content that is loaded (required by both)."""
    loaded = {system: Concept.objects.filter(system=system).exists() for system in (LOINC, SNOMED)}
    return render(
        request,
        "terminology/about.html",
        {
            "has_loinc": loaded[LOINC],
            "has_snomed": loaded[SNOMED],
            "imports": ImportRecord.objects.all()[:10],
        },
    )
