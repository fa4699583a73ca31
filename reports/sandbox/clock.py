"""Clocks for the sandbox: the real one, and a manual one so tests never sleep."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta


def utc_now() -> datetime:
    return datetime.now(UTC)


class ManualClock:
    """A clock that moves only when told to.

    Pass ``clock=manual.monotonic, now=manual.now`` to ``SandboxConfig``; ``advance(seconds)``
    then moves both the search-lag / rate-limit clock and the timestamps the sandbox writes.
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._start = start or datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
        if self._start.tzinfo is None:
            raise ValueError("the start of a ManualClock must be timezone-aware")
        self._elapsed = 0.0
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        with self._lock:
            return self._elapsed

    def now(self) -> datetime:
        with self._lock:
            return self._start + timedelta(seconds=self._elapsed)

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock does not go backwards")
        with self._lock:
            self._elapsed += seconds
