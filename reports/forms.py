"""Input shapes and their crispy layouts."""

from __future__ import annotations

import zoneinfo
from datetime import UTC, datetime
from typing import Any

from crispy_forms.helper import FormHelper
from crispy_forms.layout import Column, Layout, Row, Submit
from django import forms
from django.http import QueryDict
from django.utils import timezone

from reports.clinikapi import Practitioner
from reports.diffs import STATUS_LABELS
from reports.middleware import is_known_time_zone
from reports.models import Amendment
from reports.payload import (
    CATEGORIES,
    DRAFT_STATUSES,
    LOINC,
    MAX_CONCLUSION_CHARS,
    SNOMED_CT,
    CodedConcept,
    ReportContent,
)
from reports.services import ComposerOptions
from terminology.models import Concept


class PatientSearchForm(forms.Form):
    name = forms.CharField(
        label="Name",
        required=False,
        max_length=100,
        help_text="Part of the first or last name; accents and case do not matter.",
    )
    birth_date = forms.DateField(
        label="Birth date",
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.helper = FormHelper()
        self.helper.form_tag = False
        self.helper.disable_csrf = True
        self.helper.layout = Layout(
            Row(
                Column("name", css_class="col-md-6"),
                Column("birth_date", css_class="col-md-3"),
                Column(Submit("search", "Search", css_class="mt-md-4"), css_class="col-md-3"),
            )
        )

    def clean_name(self) -> str:
        return " ".join(str(self.cleaned_data["name"]).split())

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        name = cleaned.get("name")
        if not name and not cleaned.get("birth_date") and not self.errors:
            raise forms.ValidationError("Enter a name, a birth date or both.")
        if name and len(name) < 2:
            self.add_error("name", "Enter at least 2 letters of the name.")
        return cleaned


class ReportForm(forms.Form):
    """The composer. Every field may stay empty in a draft: what is missing for sending is
    listed in the preview, at its field, and a draft is always saved whatever it holds."""

    base_version = forms.IntegerField(widget=forms.HiddenInput)
    # The zone the page showed its times in: the times it sends back are read in that zone.
    time_zone = forms.CharField(required=False, widget=forms.HiddenInput)
    encounter = forms.ChoiceField(label="Encounter", required=False)
    report_code = forms.CharField(label="Report code", required=False, max_length=64)
    category = forms.ChoiceField(
        label="Category", required=False, choices=[("", "—"), *CATEGORIES.items()]
    )
    status = forms.ChoiceField(
        label="Status", required=False, choices=[("", "—"), *DRAFT_STATUSES.items()]
    )
    effective = forms.DateTimeField(
        label="Effective date/time",
        required=False,
        widget=forms.DateTimeInput(
            attrs={"type": "datetime-local", "class": "form-control"}, format="%Y-%m-%dT%H:%M"
        ),
    )
    results = forms.MultipleChoiceField(
        label="Results", required=False, widget=forms.CheckboxSelectMultiple
    )
    specimens = forms.MultipleChoiceField(
        label="Specimens", required=False, widget=forms.CheckboxSelectMultiple
    )
    performer = forms.ChoiceField(label="Performer", required=False)
    results_interpreter = forms.ChoiceField(label="Results interpreter", required=False)
    conclusion = forms.CharField(
        label="Conclusion",
        required=False,
        strip=False,
        # The browser stops typing at the limit; a longer text pasted in is still saved (nothing
        # a clinician wrote is dropped) and the preview flags it at this field.
        widget=forms.Textarea(
            attrs={"rows": 6, "maxlength": MAX_CONCLUSION_CHARS, "class": "form-control"}
        ),
    )
    conclusion_codes = forms.MultipleChoiceField(label="Conclusion codes", required=False)

    def __init__(
        self,
        *args: Any,
        options: ComposerOptions | None,
        saved: ReportContent,
        amendment: Amendment | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.saved = saved
        self.has_options = options is not None
        self.entry_zone = _entry_time_zone(self.data.get("time_zone") if self.is_bound else None)
        effective = self.fields["effective"]
        effective.help_text = f"{self.entry_zone.key} time; sent to ClinikAPI in UTC."
        if options is None:
            # ClinikAPI is unreachable: the pickers keep their saved values, the rest is editable.
            for name in ("encounter", "results", "specimens", "performer", "results_interpreter"):
                self.fields[name].disabled = True
            choices = _saved_choices(saved)
        else:
            choices = _api_choices(options)
        for name, field_choices in choices.items():
            field = self.fields[name]
            assert isinstance(field, forms.ChoiceField)
            field.choices = field_choices
        # Any code of the local terminology may be chosen; checked in clean_conclusion_codes.
        picked = self.data.getlist("conclusion_codes") if isinstance(self.data, QueryDict) else []
        codes_field = self.fields["conclusion_codes"]
        assert isinstance(codes_field, forms.ChoiceField)
        codes_field.choices = [(code, code) for code in picked]
        if amendment is not None:
            # What a released report cannot change (CONTRACT §11.4) keeps its released value:
            # a disabled field ignores what is posted and takes `initial`, the saved version.
            for name in ("encounter", "report_code", "category", "status", "specimens"):
                self.fields[name].disabled = True
            # The status is the amendment's own; a completion's is final.
            status = self.fields["status"]
            assert isinstance(status, forms.ChoiceField)
            status.choices = [(amendment.status, STATUS_LABELS[amendment.status])]

    def full_clean(self) -> None:
        # Read the times in the zone the page showed them in, even if the browser has reported
        # another zone since (another tab, a laptop that travelled): an unchanged time must not
        # move when the form is saved again.
        with timezone.override(self.entry_zone):
            super().full_clean()

    def clean_report_code(self) -> CodedConcept | None:
        code = str(self.cleaned_data["report_code"]).strip()
        if not code:
            return None
        concept = Concept.objects.filter(system=LOINC, code=code).first()
        if concept is None:
            raise forms.ValidationError(f"{code} is not a LOINC code ClinikUI knows.")
        return CodedConcept(LOINC, concept.code, concept.display)

    def clean_conclusion_codes(self) -> tuple[CodedConcept, ...]:
        codes = list(dict.fromkeys(self.cleaned_data["conclusion_codes"]))
        found = {c.code: c for c in Concept.objects.filter(system=SNOMED_CT, code__in=codes)}
        unknown = [code for code in codes if code not in found]
        if unknown:
            raise forms.ValidationError(
                f"{', '.join(unknown)} is not a SNOMED CT code ClinikUI knows."
            )
        return tuple(CodedConcept(SNOMED_CT, code, found[code].display) for code in codes)

    def to_content(self, *, patient_id: str) -> ReportContent:
        data = self.cleaned_data
        code: CodedConcept | None = data["report_code"]
        effective: datetime | None = data["effective"]
        return ReportContent(
            patient_id=patient_id,
            encounter_id=data["encounter"] or "",
            code=code,
            category=data["category"] or (suggest_category(code) if code else ""),
            status=data["status"],
            effective=effective.astimezone(UTC) if effective else None,
            result_ids=tuple(data["results"]),
            specimen_ids=tuple(data["specimens"]),
            performer=data["performer"] or "",
            results_interpreter=data["results_interpreter"] or "",
            conclusion=data["conclusion"],
            conclusion_codes=data["conclusion_codes"],
            # Files are attached and removed by their own buttons, never by this form.
            attachments=self.saved.attachments,
        )

    @classmethod
    def initial_from(cls, content: ReportContent, *, base_version: int) -> dict[str, Any]:
        return {
            "base_version": base_version,
            "time_zone": timezone.get_current_timezone_name(),
            "encounter": content.encounter_id,
            "report_code": content.code.code if content.code else "",
            "category": content.category,
            "status": content.status,
            "effective": timezone.localtime(content.effective) if content.effective else None,
            "results": list(content.result_ids),
            "specimens": list(content.specimen_ids),
            "performer": content.performer,
            "results_interpreter": content.results_interpreter,
            "conclusion": content.conclusion,
            "conclusion_codes": [c.code for c in content.conclusion_codes],
        }


def _entry_time_zone(posted: object) -> zoneinfo.ZoneInfo:
    """The zone a posted form's times were entered in; else the clinician's current zone."""
    if isinstance(posted, str) and is_known_time_zone(posted):
        return zoneinfo.ZoneInfo(posted)
    current = timezone.get_current_timezone()
    return current if isinstance(current, zoneinfo.ZoneInfo) else zoneinfo.ZoneInfo("UTC")


def concept_displays(*codes: str) -> dict[tuple[str, str], str]:
    """Preferred terms of LOINC and SNOMED CT codes, keyed by ("loinc"|"snomed", code)."""
    names = {LOINC: "loinc", SNOMED_CT: "snomed"}
    wanted = [code for code in codes if code]
    rows = Concept.objects.filter(system__in=names, code__in=wanted).values_list(
        "system", "code", "display"
    )
    return {(names[system], code): display for system, code, display in rows}


def suggest_category(code: CodedConcept) -> str:
    """LAB, RAD or PAT from the LOINC class of the report code."""
    kind = (
        Concept.objects.filter(system=LOINC, code=code.code).values_list("kind", flat=True).first()
        or ""
    ).upper()
    if kind.startswith("RAD"):
        return "RAD"
    if kind.startswith(("PATH", "CYTO", "TUMRRGT")):
        return "PAT"
    return "LAB"


def practitioner_label(practitioner: Practitioner) -> str:
    """Surname first ("López, Marta — Dr., MD"): the list is sorted by surname, and typing a
    surname on the focused list jumps to it, so practitioners are found by name by keyboard."""
    if not practitioner.last_name:
        return practitioner.display_name
    titles = ", ".join((*practitioner.prefix, *practitioner.suffix))
    name = ", ".join(part for part in (practitioner.last_name, practitioner.first_name) if part)
    return f"{name} — {titles}" if titles else name


def _api_choices(options: ComposerOptions) -> dict[str, list[tuple[str, str]]]:
    practitioners = [("", "—")] + [(p.id, practitioner_label(p)) for p in options.practitioners]
    return {
        "encounter": [("", "—")]
        + [
            (
                e.id,
                " · ".join(
                    part
                    for part in (
                        timezone.localtime(e.start_time).strftime("%d %b %Y %H:%M")
                        if e.start_time
                        else "undated",
                        e.encounter_class,
                        e.encounter_type,
                        e.status,
                    )
                    if part
                ),
            )
            for e in options.encounters
        ],
        "results": [(o.id, o.id) for o in options.observations],
        "specimens": [(s.id, s.id) for s in options.specimens],
        "performer": practitioners,
        "results_interpreter": practitioners,
    }


def _saved_choices(saved: ReportContent) -> dict[str, list[tuple[str, str]]]:
    def one(value: str) -> list[tuple[str, str]]:
        return [("", "—")] + ([(value, value)] if value else [])

    return {
        "encounter": one(saved.encounter_id),
        "results": [(i, i) for i in saved.result_ids],
        "specimens": [(i, i) for i in saved.specimen_ids],
        "performer": one(saved.performer),
        "results_interpreter": one(saved.results_interpreter),
    }
