"""Switchable faults for the ClinikAPI sandbox.

A fault is matched by method and path pattern (``"POST /v1/labs"``, ``"GET /v1/labs/*"``, ``"*"``)
and fires once, N times or always (``times=None``), optionally after letting the first ``skip``
matching requests through. Faults are armed from Python (``sandbox.faults.push(Fault.drop())``)
or over HTTP (``POST /_sandbox/faults`` with the dict form of :meth:`Fault.to_dict`).

Kinds:

* ``latency`` -- wait ``latency_ms`` and then answer normally; every matching latency fault adds up.
* ``error`` -- answer with an error body (``status``, ``code``, ``message``, ``retry_after``);
  ``when="before"`` answers without processing, ``when="after"`` processes (stores) and then
  answers with the error instead of the real result.
* ``hang`` -- ``when="before"``: wait ``seconds`` and close the connection without processing;
  ``when="after"``: process (store), wait ``seconds`` and then answer normally.
* ``drop`` / ``reset`` / ``garbage`` -- no HTTP answer at all: close the connection (FIN), reset it
  (RST), or send bytes that are not HTTP, before or after processing.
* ``drip`` -- process, send the headers, then the body one byte every ``seconds``.
* ``redirect`` -- answer ``302`` with ``Location: location``.

Only the first matching non-latency fault fires on a request (``skip`` counts the matching
requests that reach a fault). Waits go through :meth:`Faults.wait`, an ``Event`` wait that
:meth:`Faults.interrupt` cuts short, so a server shutdown never waits for a hang to run out.

In-process (``httpx.WSGITransport``) there is no socket: ``drop`` / ``reset`` / ``garbage`` and an
ended ``hang`` before processing raise :class:`SandboxConnectionDropped` out of ``client.send()``,
and a hang really blocks the calling thread (the transport has no read timeout), so timeout tests
belong on the real socket (``reports.sandbox.server.serve_in_thread``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from fnmatch import fnmatchcase
from typing import Any, Literal, cast

FaultKind = Literal["latency", "error", "hang", "drop", "reset", "garbage", "drip", "redirect"]
Phase = Literal["before", "after"]
DropMode = Literal["close", "reset", "garbage"]

FAULT_KINDS: tuple[FaultKind, ...] = (
    "latency",
    "error",
    "hang",
    "drop",
    "reset",
    "garbage",
    "drip",
    "redirect",
)
PHASES: tuple[Phase, ...] = ("before", "after")


class SandboxConnectionDropped(Exception):
    """The sandbox answers this request with no valid HTTP response.

    Over a real socket the server catches it and closes the connection (``mode="close"``: FIN,
    the client sees ``httpx.RemoteProtocolError``), resets it (``"reset"``: RST, the client sees
    ``httpx.ReadError``) or writes non-HTTP bytes first (``"garbage"``: ``RemoteProtocolError``).
    In-process under ``httpx.WSGITransport`` the exception propagates out of ``client.send()``;
    a transport wrapper translates it into the matching httpx error. ``stored`` says whether the
    request was processed (e.g. the lab created) before the connection went away.
    """

    def __init__(self, mode: DropMode = "close", *, stored: bool = False) -> None:
        super().__init__(f"sandbox dropped the connection ({mode}, stored={stored})")
        self.mode: DropMode = mode
        self.stored = stored


@dataclass(frozen=True, slots=True)
class Fault:
    """One armed misbehaviour; build it with the class methods below."""

    kind: FaultKind
    route: str = "*"
    when: Phase = "before"
    times: int | None = 1
    skip: int = 0
    status: int = 500
    code: str | None = None
    message: str | None = None
    retry_after: str | None = None
    seconds: float = 0.0
    latency_ms: int = 0
    location: str | None = None
    body: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    omit_headers: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}")
        if self.when not in PHASES:
            raise ValueError("when must be 'before' or 'after'")
        if self.times is not None and self.times < 1:
            raise ValueError("times must be >= 1, or None for always")
        if self.skip < 0 or self.seconds < 0 or self.latency_ms < 0:
            raise ValueError("skip, seconds and latency_ms must not be negative")
        if not 100 <= self.status <= 599:
            raise ValueError("status must be an HTTP status code")
        if self.kind == "redirect" and not self.location:
            raise ValueError("a redirect needs a location")

    # -- constructors -------------------------------------------------------------------------

    @classmethod
    def latency(
        cls, ms: int, *, route: str = "*", times: int | None = None, skip: int = 0
    ) -> Fault:
        return cls("latency", route=route, latency_ms=ms, times=times, skip=skip)

    @classmethod
    def error(
        cls,
        status: int,
        code: str | None = None,
        *,
        route: str = "*",
        when: Phase = "before",
        retry_after: str | int | None = None,
        message: str | None = None,
        times: int | None = 1,
        skip: int = 0,
        headers: Mapping[str, str] | None = None,
        omit_headers: Iterable[str] = (),
        body: str | None = None,
    ) -> Fault:
        """Any error answer; ``code`` defaults from the status (429 RATE_LIMITED, 5xx
        INTERNAL_ERROR, 409 CONFLICT ...); ``body`` replaces the JSON body with raw text."""
        return cls(
            "error",
            route=route,
            when=when,
            status=status,
            code=code,
            message=message,
            retry_after=None if retry_after is None else str(retry_after),
            times=times,
            skip=skip,
            headers=tuple((headers or {}).items()),
            omit_headers=tuple(omit_headers),
            body=body,
        )

    @classmethod
    def rate_limited(
        cls,
        retry_after: str | int | None = "30",
        *,
        route: str = "*",
        times: int | None = 1,
        skip: int = 0,
        omit_headers: Iterable[str] = (),
        headers: Mapping[str, str] | None = None,
    ) -> Fault:
        """429 RATE_LIMITED; ``retry_after`` may be garbage ("soon", "-5") or None (no header)."""
        return cls.error(
            429,
            "RATE_LIMITED",
            route=route,
            retry_after=retry_after,
            times=times,
            skip=skip,
            omit_headers=omit_headers,
            headers=headers,
        )

    @classmethod
    def monthly_quota(cls, *, route: str = "*", times: int | None = 1, skip: int = 0) -> Fault:
        return cls.error(429, "MONTHLY_QUOTA_EXCEEDED", route=route, times=times, skip=skip)

    @classmethod
    def sandbox_quota(cls, *, route: str = "*", times: int | None = 1, skip: int = 0) -> Fault:
        return cls.error(429, "SANDBOX_QUOTA_EXCEEDED", route=route, times=times, skip=skip)

    @classmethod
    def server_error(
        cls,
        status: int = 500,
        *,
        route: str = "*",
        when: Phase = "before",
        retry_after: str | int | None = None,
        times: int | None = 1,
        skip: int = 0,
        body: str | None = None,
    ) -> Fault:
        return cls.error(
            status,
            "INTERNAL_ERROR",
            route=route,
            when=when,
            retry_after=retry_after,
            times=times,
            skip=skip,
            body=body,
        )

    @classmethod
    def hang(
        cls,
        seconds: float,
        *,
        route: str = "*",
        when: Phase = "before",
        times: int | None = 1,
        skip: int = 0,
    ) -> Fault:
        """``before``: hang, then close without processing; ``after``: process, hang, answer."""
        return cls("hang", route=route, when=when, seconds=seconds, times=times, skip=skip)

    @classmethod
    def drop(
        cls, *, route: str = "*", when: Phase = "after", times: int | None = 1, skip: int = 0
    ) -> Fault:
        """Close the connection (FIN) without a response."""
        return cls("drop", route=route, when=when, times=times, skip=skip)

    @classmethod
    def connection_reset(
        cls, *, route: str = "*", when: Phase = "after", times: int | None = 1, skip: int = 0
    ) -> Fault:
        """Reset the connection (RST) without a response."""
        return cls("reset", route=route, when=when, times=times, skip=skip)

    @classmethod
    def garbage(
        cls, *, route: str = "*", when: Phase = "after", times: int | None = 1, skip: int = 0
    ) -> Fault:
        """Answer with bytes that are not HTTP, then close."""
        return cls("garbage", route=route, when=when, times=times, skip=skip)

    @classmethod
    def drip(
        cls, seconds_per_byte: float, *, route: str = "*", times: int | None = 1, skip: int = 0
    ) -> Fault:
        """Process, send the headers, then the body one byte per interval."""
        return cls(
            "drip", route=route, when="after", seconds=seconds_per_byte, times=times, skip=skip
        )

    @classmethod
    def redirect(
        cls,
        location: str,
        *,
        route: str = "*",
        when: Phase = "before",
        times: int | None = 1,
        skip: int = 0,
    ) -> Fault:
        return cls("redirect", route=route, when=when, location=location, times=times, skip=skip)

    # -- matching and (de)serialisation -------------------------------------------------------

    def matches(self, method: str, path: str) -> bool:
        route = self.route.strip()
        if route in ("", "*"):
            return True
        route_method, _, pattern = route.partition(" ")
        if not pattern:
            route_method, pattern = "*", route_method
        method_ok = route_method == "*" or route_method.upper() == method.upper()
        return method_ok and fnmatchcase(path, pattern.strip())

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "route": self.route,
            "when": self.when,
            "times": self.times,
            "skip": self.skip,
            "status": self.status,
            "code": self.code,
            "message": self.message,
            "retry_after": self.retry_after,
            "seconds": self.seconds,
            "latency_ms": self.latency_ms,
            "location": self.location,
            "body": self.body,
            "headers": dict(self.headers),
            "omit_headers": list(self.omit_headers),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Fault:
        """Build a fault from its JSON form; raises ``ValueError`` on anything malformed."""
        if not isinstance(data, Mapping):
            raise ValueError("a fault must be a JSON object")
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown fault keys: {sorted(unknown)}")
        values = dict(data)
        headers = values.pop("headers", None) or {}
        omit = values.pop("omit_headers", None) or []
        retry_after = values.pop("retry_after", None)
        if not isinstance(headers, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
        ):
            raise ValueError("headers must map strings to strings")
        if not isinstance(omit, list) or not all(isinstance(h, str) for h in omit):
            raise ValueError("omit_headers must be a list of strings")
        _expect_types(values)
        try:
            return cls(
                **values,
                retry_after=None if retry_after is None else str(retry_after),
                headers=tuple(cast(Mapping[str, str], headers).items()),
                omit_headers=tuple(omit),
            )
        except TypeError as exc:
            raise ValueError(str(exc)) from exc


_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "kind": (str,),
    "route": (str,),
    "when": (str,),
    "times": (int, type(None)),
    "skip": (int,),
    "status": (int,),
    "code": (str, type(None)),
    "message": (str, type(None)),
    "seconds": (int, float),
    "latency_ms": (int,),
    "location": (str, type(None)),
    "body": (str, type(None)),
}


def _expect_types(values: Mapping[str, Any]) -> None:
    for key, value in values.items():
        allowed = _FIELD_TYPES.get(key)
        if allowed is None:
            continue
        if isinstance(value, bool) or not isinstance(value, allowed):
            raise ValueError(f"fault key {key!r} has the wrong type")


@dataclass(slots=True)
class _Armed:
    fault: Fault
    remaining: int | None
    to_skip: int


@dataclass(frozen=True, slots=True)
class FaultSelection:
    """What fires on one request: the summed latency and at most one other fault."""

    latency_ms: int = 0
    fault: Fault | None = None


@dataclass(frozen=True, slots=True)
class FiredFault:
    fault: Fault
    method: str
    path: str


class Faults:
    """Thread-safe queue of armed faults, plus the interruptible wait used by every delay."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._armed: list[_Armed] = []
        self._fired: list[FiredFault] = []
        self._stopping = threading.Event()

    def push(self, *faults: Fault) -> None:
        """Arm faults after the ones already armed."""
        with self._lock:
            self._armed.extend(_Armed(f, f.times, f.skip) for f in faults)

    def set(self, *faults: Fault) -> None:
        """Replace every armed fault with these."""
        with self._lock:
            self._armed = [_Armed(f, f.times, f.skip) for f in faults]

    def clear(self) -> None:
        with self._lock:
            self._armed.clear()

    def reset(self) -> None:
        """Disarm everything and forget what fired."""
        with self._lock:
            self._armed.clear()
            self._fired.clear()

    def pending(self) -> list[Fault]:
        """The armed faults, each with ``times`` showing what is left of it."""
        with self._lock:
            return [replace(a.fault, times=a.remaining, skip=a.to_skip) for a in self._armed]

    @property
    def fired(self) -> list[FiredFault]:
        with self._lock:
            return list(self._fired)

    def take(self, method: str, path: str) -> FaultSelection:
        """Consume the faults that fire on this request."""
        latency = 0
        chosen: Fault | None = None
        with self._lock:
            for armed in list(self._armed):
                fault = armed.fault
                if not fault.matches(method, path):
                    continue
                if fault.kind != "latency" and chosen is not None:
                    continue
                if armed.to_skip > 0:
                    armed.to_skip -= 1
                    continue
                if fault.kind == "latency":
                    latency += fault.latency_ms
                else:
                    chosen = fault
                self._fired.append(FiredFault(fault, method, path))
                if armed.remaining is not None:
                    armed.remaining -= 1
                    if armed.remaining <= 0:
                        self._armed.remove(armed)
        return FaultSelection(latency, chosen)

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; return True if interrupted by :meth:`interrupt`."""
        if seconds <= 0:
            return self._stopping.is_set()
        return self._stopping.wait(seconds)

    def interrupt(self) -> None:
        """Cut every current and future wait short (server shutdown)."""
        self._stopping.set()

    def resume(self) -> None:
        self._stopping.clear()

    @property
    def interrupted(self) -> bool:
        return self._stopping.is_set()
