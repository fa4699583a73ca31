"""URL converters: an id that could not be a ClinikAPI id never reaches a view (CONTRACT §3)."""

from __future__ import annotations


class ClinikAPIIdConverter:
    regex = r"[A-Za-z0-9._-]{1,128}"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value
