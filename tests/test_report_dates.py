"""The fast date filters print exactly what Django's `date` filter prints for their formats, in
the user's time zone, for any date."""

from __future__ import annotations

import datetime as dt
import zoneinfo

from django.template import Context, Template
from django.utils import timezone
from hypothesis import given, settings
from hypothesis import strategies as st

FORMATS = {"day": "j M Y", "day_time": "j M Y H:i", "day_time_seconds": "j M Y H:i:s", "iso": "c"}
ZONES = ["UTC", "Europe/London", "America/New_York", "Asia/Kolkata", "Pacific/Chatham"]

both = Template(
    "{% load report_dates %}"
    + "".join(f"{{{{ value|{name} }}}}|{{{{ value|date:'{f}' }}}}\n" for name, f in FORMATS.items())
)


def printed(value: object, zone: str) -> list[tuple[str, str]]:
    with timezone.override(zoneinfo.ZoneInfo(zone)):
        lines = both.render(Context({"value": value})).splitlines()
    return [tuple(line.split("|")) for line in lines]  # type: ignore[misc]


@settings(max_examples=300, deadline=None)
@given(
    moment=st.datetimes(
        min_value=dt.datetime(1900, 1, 1),  # noqa: DTZ001 (hypothesis wants naive bounds)
        max_value=dt.datetime(2200, 12, 31),  # noqa: DTZ001
        timezones=st.just(dt.UTC),
    ),
    zone=st.sampled_from(ZONES),
)
def test_a_moment_prints_as_the_date_filter_prints_it_in_the_users_zone(moment, zone):
    for fast, django in printed(moment, zone):
        assert fast == django


day_only = Template("{% load report_dates %}{{ value|day }}|{{ value|date:'j M Y' }}")


@settings(max_examples=100, deadline=None)
@given(day=st.dates(min_value=dt.date(1, 1, 1)))
def test_a_birth_date_prints_as_the_date_filter_prints_it(day):
    fast, django = day_only.render(Context({"value": day})).split("|")
    assert fast == django


def test_a_missing_value_prints_nothing_like_the_date_filter():
    for value in (None, "", "2026-12-07"):
        assert printed(value, "UTC") == [("", "")] * len(FORMATS)


def test_a_date_has_no_time_of_day_to_print():
    # Django's `date` filter raises for a time format on a date; a page never asks for one.
    assert (
        Template("{% load report_dates %}{{ value|day_time }}").render(
            Context({"value": dt.date(2026, 12, 7)})
        )
        == ""
    )
