"""A one-line progress display for the import commands (no dependency needed for this)."""

from __future__ import annotations

import time

from django.core.management.base import OutputWrapper

# On a terminal the line is redrawn in place; in a log, one line every few seconds.
_LOG_INTERVAL = 5.0


class ProgressLine:
    def __init__(self, out: OutputWrapper, what: str) -> None:
        self.out = out
        self.what = what
        self.started = time.monotonic()
        self.last_logged = self.started
        self.is_terminal = out.isatty()
        self.drawn = False

    def __call__(self, count: int) -> None:
        now = time.monotonic()
        rate = count / max(now - self.started, 1e-9)
        line = f"{count:,} {self.what} ({rate:,.0f}/s)"
        if self.is_terminal:
            self.out.write(f"\r{line}", ending="")
            self.out.flush()
            self.drawn = True
        elif now - self.last_logged >= _LOG_INTERVAL:
            self.out.write(line)
            self.last_logged = now

    def end(self) -> None:
        if self.drawn:
            self.out.write("")
            self.drawn = False
