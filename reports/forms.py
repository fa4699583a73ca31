"""Input shapes and their crispy layouts."""

from __future__ import annotations

from typing import Any

from crispy_forms.helper import FormHelper
from crispy_forms.layout import Column, Layout, Row, Submit
from django import forms


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
