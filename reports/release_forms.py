"""The forms of the release steps (signing now; reviewing and amending later)."""

from __future__ import annotations

from django import forms


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
