from __future__ import annotations

from typing import Any

from django import forms

from terminology.search import MAX_LIMIT, SYSTEMS


class SearchForm(forms.Form):
    """What a lookup asks for; bad values are refused, long text is cut by the search."""

    system = forms.ChoiceField(choices=[(name, name) for name in SYSTEMS])
    q = forms.CharField(required=False, strip=False, max_length=10_000)
    limit = forms.IntegerField(required=False, min_value=1, max_value=MAX_LIMIT)
    scope = forms.ChoiceField(required=False, choices=[("", "default"), ("all", "all")])
    inactive = forms.BooleanField(required=False)
    # The id of the listbox the fragment fills, so option ids stay unique on the page.
    listbox = forms.SlugField(required=False, max_length=60)

    def search_arguments(self) -> dict[str, Any]:
        data = self.cleaned_data
        return {
            "system": SYSTEMS[data["system"]],
            "query": data["q"],
            "limit": data["limit"] or 10,
            "all_scopes": data["scope"] == "all",
            "include_inactive": data["inactive"],
        }
