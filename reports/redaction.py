"""Keeps ClinikAPI keys out of log output.

ClinikUI never logs the key in the first place; this filter is the second line of defence
(RELIABILITY SEC-02) for anything a library might print.
"""

from __future__ import annotations

import logging
import re
from collections.abc import ItemsView
from pprint import pformat
from types import FrameType
from typing import Any

from django.http import HttpRequest
from django.views.debug import SafeExceptionReporterFilter

API_KEY_PATTERN = re.compile(r"clk_(live|test)_[A-Za-z0-9]+")


def redact_secrets(text: str) -> str:
    """Mask anything shaped like a ClinikAPI key, keeping which environment it was for."""
    return API_KEY_PATTERN.sub(lambda match: f"clk_{match.group(1)}_[redacted]", text)


class RedactAPIKeys(logging.Filter):
    """Masks ClinikAPI keys in log records before any handler formats them."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string is reported by logging itself, not here
            message = str(record.msg)
        redacted = redact_secrets(message)
        if redacted != message:
            # Formatting once and dropping the args is the only way to be sure no argument's
            # str() re-introduces the key later in the handler chain.
            record.msg = redacted
            record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_secrets(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_secrets(record.stack_info)
        return True


class _Redacted:
    """A stand-in whose repr is the redacted repr of the original value."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


class RedactingExceptionReporterFilter(SafeExceptionReporterFilter):
    """Django's error reports, with key-shaped strings masked in every frame's local variables.

    Django already hides settings and `@sensitive_variables`; this also covers a key that sits
    in some library's local variable (a header dict, a client object) when an error is reported.
    """

    def get_traceback_frame_variables(
        self, request: HttpRequest | None, tb_frame: FrameType
    ) -> ItemsView[str, Any]:
        variables = super().get_traceback_frame_variables(request, tb_frame)
        return {name: _redact_value(value) for name, value in variables}.items()


def _redact_value(value: Any) -> Any:
    text = pformat(value)
    if API_KEY_PATTERN.search(text):
        return _Redacted(redact_secrets(text))
    return value
