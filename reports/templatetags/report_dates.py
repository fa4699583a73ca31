"""Dates as the pages print them, without the cost of Django's `date` filter.

`{{ value|date:"j M Y H:i" }}` parses its format string and looks the format up through the
locale machinery on every call: ~20 µs, so the fifty rows of a drafts list spent more time
formatting their hundred dates than doing anything else (bench/RESULTS.md, B4). The pages use
a handful of fixed formats, so these filters write them directly. Each prints exactly what the
`date` filter prints for its format (tests/test_report_dates.py compares them over generated
dates and time zones); like it, they receive the value in the user's time zone
(`expects_localtime`) and print nothing for a missing value.
"""

from __future__ import annotations

import datetime as dt

from django import template

register = template.Library()

# Django's `M` ("Jan", …, "Sep", …, "Dec"); the site speaks English only (USE_I18N is off).
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@register.filter(expects_localtime=True)
def day(value: object) -> str:
    """`|date:"j M Y"`: 7 Dec 2026."""
    if not isinstance(value, dt.date):
        return ""
    return f"{value.day} {MONTHS[value.month - 1]} {value.year:04d}"


@register.filter(expects_localtime=True)
def day_time(value: object) -> str:
    """`|date:"j M Y H:i"`: 7 Dec 2026 09:05."""
    if not isinstance(value, dt.datetime):
        return ""
    return f"{day(value)} {value.hour:02d}:{value.minute:02d}"


@register.filter(expects_localtime=True)
def day_time_seconds(value: object) -> str:
    """`|date:"j M Y H:i:s"`: 7 Dec 2026 09:05:30."""
    if not isinstance(value, dt.datetime):
        return ""
    return f"{day_time(value)}:{value.second:02d}"


@register.filter(expects_localtime=True)
def iso(value: object) -> str:
    """`|date:"c"`, for `<time datetime>`: 2026-12-07T09:05:30.123456+00:00."""
    if not isinstance(value, dt.datetime):
        return ""
    return value.isoformat()
