"""The forms of the release steps: signing, reviewing, amending, completing and cancelling."""

from __future__ import annotations

import re

from django import forms

from reports.models import Amendment


class SignForm(forms.Form):
    """Password re-entry at signing (RELIABILITY SIG-01), bound to the version shown and to a
    one-time token that makes a repeated POST of this form harmless (SUB-02)."""

    password = forms.CharField(
        label="Your password",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
        help_text="Signing is a legal act: your password confirms it is you.",
    )
    version = forms.IntegerField(widget=forms.HiddenInput, min_value=1)
    token = forms.UUIDField(widget=forms.HiddenInput)


class ReturnForm(forms.Form):
    """Sending a report back to its author: what should change is required."""

    comment = forms.CharField(
        label="What the author should change",
        widget=forms.Textarea(attrs={"rows": 3}),
        max_length=2000,
    )
    version = forms.IntegerField(widget=forms.HiddenInput, min_value=1)


def _explanation_field(label: str, help_text: str = "") -> forms.CharField:
    return forms.CharField(
        label=label,
        widget=forms.Textarea(attrs={"rows": 3}),
        max_length=2000,
        help_text=help_text,
    )


def _reason_fields(label: str, help_text: str = "") -> tuple[forms.ChoiceField, forms.CharField]:
    """The coded reason (CLIA 493.1291(k)) and the free text that says what happened. "Results
    complete" is a completion's alone (CompleteForm), so it is not offered here."""
    reasons = [c for c in Amendment.Reason if c != Amendment.Reason.RESULTS_COMPLETE]
    return (
        forms.ChoiceField(
            label="Reason", choices=[("", "—"), *[(c.value, c.label) for c in reasons]]
        ),
        _explanation_field(label, help_text),
    )


class AmendForm(forms.Form):
    """Starting an amendment of a released report: which kind, and why (CLIA 493.1291(k))."""

    kind = forms.ChoiceField(
        label="Kind of change",
        widget=forms.RadioSelect,
        choices=[
            ("amended", "Amended: the report's content changes"),
            ("corrected", "Corrected: an error in the released report is put right"),
            ("appended", "Appended: content is added; nothing released changes"),
        ],
    )
    reason, explanation = _reason_fields(
        "Explain the change",
        help_text="Shown in the report's timeline, to the reviewer, and in the signed PDF.",
    )


class CompleteForm(forms.Form):
    """Completing an early release as final: the reason is fixed ("Results complete"), so only
    what happened is asked."""

    explanation = _explanation_field(
        "What completes the report",
        help_text="For example “All results in”. Shown in the report's timeline, to the "
        "reviewer, and in the signed PDF.",
    )


class CancelForm(SignForm):
    """Cancelling a released report: why, and the password (it is signed like a report)."""

    reason, explanation = _reason_fields("Explain the cancellation")
    field_order = ["reason", "explanation", "password"]


class _ReportVersions(forms.MultipleChoiceField):
    """Values "report id:version number". Not checked against the queue as it is now: a report
    that changed since the page was drawn is refused by itself, not the whole batch."""

    def valid_value(self, value: str) -> bool:
        return re.fullmatch(r"[0-9]{1,12}:[0-9]{1,9}", str(value)) is not None


class BatchVerifyForm(forms.Form):
    """Verifying several reports at once, each at the version the supervisor saw."""

    reports = _ReportVersions(
        label="Reports to verify",
        error_messages={"required": "Tick the reports you have read and verify."},
    )
    password = SignForm.base_fields["password"]
    token = forms.UUIDField(widget=forms.HiddenInput)

    def clean_reports(self) -> list[tuple[int, int]]:
        pairs = []
        for value in self.cleaned_data["reports"]:
            report_id, _, version = str(value).partition(":")
            pairs.append((int(report_id), int(version)))
        return pairs
