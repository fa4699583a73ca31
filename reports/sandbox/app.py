"""The ClinikAPI sandbox as a plain WSGI application (CONTRACT.md §21 emulator checklist).

``Sandbox(config).wsgi_app`` (or the ``Sandbox`` instance itself, which is callable) serves:

* ``/v1/labs`` create / read / search / PATCH / DELETE; ``/v1/patients``, ``/v1/encounters``,
  ``/v1/observations``, ``/v1/practitioners``, ``/v1/specimens`` search / read / POST (seeding),
  PATCH for observations and specimens, DELETE for specimens;
* ``GET /health`` and ``GET /v1/metadata`` without a key;
* ``/_sandbox/...`` control routes (no key; see ``Sandbox._control``) used by the real-socket
  server and by other processes: faults, state, reset, config, request and write logs.

Order of checks on an API route: latency, auth (401), faults armed ``before``, per-minute rate
limit (429), quotas (429, only if enforced), method-override headers (400), body size (413),
JSON (400), route (404), key scope (403), body validation (422), the handler itself, faults armed
``after``.

Everything is in memory (``reports.sandbox.store``), thread-safe, and never logs an API key.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import secrets
import string
import threading
import time
import unicodedata
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any, Literal
from urllib.parse import parse_qs
from wsgiref.types import StartResponse, WSGIEnvironment

from reports.sandbox import validation
from reports.sandbox.clock import utc_now
from reports.sandbox.faults import Fault, Faults, SandboxConnectionDropped
from reports.sandbox.store import ID_PREFIXES, KINDS, RequestRecord, Resource, Store

logger = logging.getLogger(__name__)

Scope = Literal["*", "read", "write"]
JSON_MEDIA_TYPES = frozenset(
    {"application/json", "application/fhir+json", "application/json-patch+json"}
)
METHOD_OVERRIDE_HEADERS = (
    "HTTP_X_HTTP_METHOD_OVERRIDE",
    "HTTP_X_HTTP_METHOD",
    "HTTP_X_METHOD_OVERRIDE",
)
KEY_PREFIXES = {"clk_live_": "live", "clk_test_": "test"}
KEY_TAIL_ALPHABET = frozenset(string.ascii_letters + string.digits)
INCLUDE_VALUES = frozenset(
    {"Observation", "DiagnosticReport:Observation", "DiagnosticReport:result"}
)
PATCHABLE = frozenset({"labs", "observations", "specimens"})
DELETABLE = frozenset({"labs", "specimens"})
DEFAULT_PAGE = 20
MAX_PAGE = 100
# Bodies up to this size are read in full even when refused, so the client never sees a reset
# while it is still sending; beyond it the sandbox stops reading.
HARD_BODY_CAP = 64 * 1024 * 1024
_ID_ALPHABET = string.ascii_lowercase + string.digits
_TRANSLITERATION = str.maketrans(
    {
        "ø": "o",
        "Ø": "O",
        "æ": "ae",
        "Æ": "AE",
        "œ": "oe",
        "Œ": "OE",
        "ß": "ss",
        "ł": "l",
        "Ł": "L",
        "đ": "d",
        "Đ": "D",
        "ı": "i",
        "þ": "th",
        "’": "'",
        "‘": "'",
    }
)
_RUNTIME_SETTINGS = frozenset(
    {
        "search_lag_seconds",
        "latency_ms",
        "rate_limit_per_minute",
        "rate_limit_window_seconds",
        "monthly_quota",
        "sandbox_quota",
        "enforce_quotas",
        "strict",
        "omit_attachment_data_in_lists",
        "dirty_search_results",
        "accepted_keys",
    }
)


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """What the sandbox knows about one API key (used when ``accepted_keys`` is a mapping)."""

    tenant: str = "org_sandbox"
    scope: Scope = "*"
    revoked: bool = False
    expired: bool = False
    expires_at: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "tenant": self.tenant,
            "scope": self.scope,
            "revoked": self.revoked,
            "expired": self.expired,
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> KeyInfo:
        scope = data.get("scope", "*")
        if scope not in ("*", "read", "write"):
            raise ValueError("scope must be '*', 'read' or 'write'")
        expires = data.get("expires_at")
        expires_at = datetime.fromisoformat(expires) if isinstance(expires, str) else None
        if expires_at is not None and expires_at.tzinfo is None:
            raise ValueError("expires_at must carry a timezone")
        return cls(
            tenant=str(data.get("tenant", "org_sandbox")),
            scope=scope,
            revoked=bool(data.get("revoked", False)),
            expired=bool(data.get("expired", False)),
            expires_at=expires_at,
        )


@dataclass(frozen=True, slots=True)
class SandboxConfig:
    """How the sandbox behaves; change it at run time with ``Sandbox.configure``.

    ``accepted_keys=None`` accepts any ``clk_(live|test)_[A-Za-z0-9]+`` key for ``default_tenant``;
    a mapping accepts only its keys, so unknown / revoked / expired / read-only keys can be tested.
    ``clock`` (monotonic seconds) drives the search lag and the rate-limit window; ``now`` (aware
    UTC datetime) stamps ``createdAt``, ``updatedAt`` and ``meta.timestamp``. Inject a
    ``ManualClock`` for both to test lag and rate limits without sleeping.
    """

    search_lag_seconds: float = 0.0
    latency_ms: int = 0
    accepted_keys: Mapping[str, KeyInfo] | None = None
    default_tenant: str = "org_sandbox"
    rate_limit_per_minute: int = 100
    rate_limit_window_seconds: float = 60.0
    monthly_quota: int = 1000
    sandbox_quota: int = 1000
    enforce_quotas: bool = False
    strict: bool = False
    seed: bool = True
    max_body_bytes: int = 1_048_576
    omit_attachment_data_in_lists: bool = True
    dirty_search_results: bool = False
    control_routes: bool = True
    clock: Callable[[], float] = time.monotonic
    now: Callable[[], datetime] = utc_now


@dataclass(frozen=True, slots=True)
class _RateState:
    limit: int
    remaining: int
    reset: int
    allowed: bool = True


@dataclass(slots=True)
class _Response:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    drip_seconds: float | None = None


@dataclass(slots=True)
class _Call:
    """Everything known about one API request while it is served."""

    request_id: str
    method: str
    path: str
    query_string: str
    params: dict[str, list[str]]
    environ: WSGIEnvironment
    raw_body: bytes
    body_too_large: bool
    started: float
    timestamp: str
    key: KeyInfo | None = None
    environment: str | None = None
    rate: _RateState | None = None
    quota_used: int = 0
    sandbox_used: int = 0
    body: Any = None
    resource_id: str | None = None
    fault: Fault | None = None
    stored: bool = False

    def param(self, name: str) -> str | None:
        values = self.params.get(name)
        return values[0] if values else None


class _BadParameter(Exception):
    def __init__(self, issues: list[str]) -> None:
        super().__init__("; ".join(issues))
        self.issues = issues


class Sandbox:
    """The emulator: ``wsgi_app`` (or the instance itself) is the WSGI callable.

    ``faults`` arms misbehaviour, ``store`` is the ground truth (resources, request log, write
    log). Safe to share between threads; one instance can back both an in-process
    ``httpx.WSGITransport`` and a real socket server at once.
    """

    def __init__(self, config: SandboxConfig | None = None) -> None:
        self._config = config or SandboxConfig()
        self.faults = Faults()
        self.store = Store(clock=self._clock_now, seed=self._seed_loader())
        self._lock = threading.Lock()
        self._hits: dict[str, deque[float]] = {}
        self._quota: dict[tuple[str, str, str], int] = {}
        self._inflight = 0
        self._idle = threading.Condition()

    # -- public API -----------------------------------------------------------------------------

    @property
    def config(self) -> SandboxConfig:
        return self._config

    def configure(self, **changes: Any) -> SandboxConfig:
        """Change settings at run time (e.g. ``configure(search_lag_seconds=10)``)."""
        self._config = replace(self._config, **changes)
        return self._config

    def reset(self) -> None:
        """Back to a freshly seeded sandbox: no created data, faults, counters or logs."""
        self.faults.reset()
        self.store.reset(seed=self._seed_loader())
        with self._lock:
            self._hits.clear()
            self._quota.clear()

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until no request is being served (e.g. a hang has finished); True if idle."""
        with self._idle:
            return self._idle.wait_for(lambda: self._inflight == 0, timeout)

    def wsgi_app(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        path = str(environ.get("PATH_INFO", "") or "/")
        if self._config.control_routes and path.startswith("/_sandbox"):
            return self._send(self._control(environ, method, path), start_response)
        call = self._begin(environ, method, path)
        status: int | None = None
        with self._idle:
            self._inflight += 1
        try:
            try:
                response = self._serve(call)
            except SandboxConnectionDropped:
                raise
            except Exception:
                logger.exception("Sandbox failed while serving a request")
                response = self._error(call, 500, "INTERNAL_ERROR", "Unexpected sandbox failure")
            status = response.status
            return self._send(response, start_response)
        finally:
            self._log(call, status)
            with self._idle:
                self._inflight -= 1
                self._idle.notify_all()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        return self.wsgi_app(environ, start_response)

    # -- the pipeline ---------------------------------------------------------------------------

    def _begin(self, environ: WSGIEnvironment, method: str, path: str) -> _Call:
        raw, too_large = _read_body(environ, self._config.max_body_bytes)
        query = str(environ.get("QUERY_STRING", ""))
        return _Call(
            request_id=_random_id("req", 8),
            method=method,
            path=path,
            query_string=query,
            params=parse_qs(query, keep_blank_values=True),
            environ=environ,
            raw_body=raw,
            body_too_large=too_large,
            started=self._config.clock(),
            timestamp=self._timestamp(),
        )

    def _serve(self, call: _Call) -> _Response:
        selection = self.faults.take(call.method, call.path)
        call.fault = selection.fault
        delay_ms = self._config.latency_ms + selection.latency_ms
        if delay_ms > 0 and self.faults.wait(delay_ms / 1000):
            raise SandboxConnectionDropped("close")

        if call.path in ("/health", "/v1/metadata"):
            early = self._fire_before(call)
            if early is not None:
                return early
            return self._fire_after(call, self._system(call))

        failure = self._authenticate(call)
        if failure is not None:
            return failure
        early = self._fire_before(call)
        if early is not None:
            return early
        failure = self._count_request(call)
        if failure is not None:
            return failure
        if any(call.environ.get(h) is not None for h in METHOD_OVERRIDE_HEADERS):
            return self._error(
                call, 400, "METHOD_OVERRIDE_REJECTED", "Method override headers are not accepted"
            )
        if call.body_too_large:
            return self._error(
                call,
                413,
                "PAYLOAD_TOO_LARGE",
                f"Request body exceeds {self._config.max_body_bytes} bytes",
            )
        failure = self._parse_json(call)
        if failure is not None:
            return failure

        route = _route(call.method, call.path)
        if route is None:
            return self._error(call, 404, "NOT_FOUND", "Route not found")
        action, kind, resource_id = route
        if not _scope_allows(call.key, call.method):
            return self._error(
                call, 403, "FORBIDDEN", "API key scope does not allow this operation"
            )

        response = action(self, call, kind, resource_id)
        return self._fire_after(call, response)

    def _system(self, call: _Call) -> _Response:
        if call.method != "GET":
            return self._error(call, 404, "NOT_FOUND", "Route not found")
        if call.path == "/health":
            return self._json(
                200,
                {"status": "ok", "timestamp": self._timestamp()},
                [("X-Request-Id", call.request_id)],
            )
        return self._json(
            200,
            _capability_statement(),
            [("X-Request-Id", call.request_id)],
            content_type="application/fhir+json",
        )

    # -- auth, limits, body -----------------------------------------------------------------------

    def _authenticate(self, call: _Call) -> _Response | None:
        key = call.environ.get("HTTP_X_API_KEY")
        if not key:
            return self._error(call, 401, "UNAUTHORIZED", "Missing x-api-key header")
        key = str(key)
        environment = next((env for p, env in KEY_PREFIXES.items() if key.startswith(p)), None)
        if environment is None:
            return self._error(
                call, 401, "INVALID_KEY_FORMAT", "API key must start with clk_live_ or clk_test_"
            )
        accepted = self._config.accepted_keys
        tail = key[len("clk_test_") :]
        info: KeyInfo | None
        if accepted is None:
            well_formed = bool(tail) and set(tail) <= KEY_TAIL_ALPHABET
            info = KeyInfo(tenant=self._config.default_tenant) if well_formed else None
        else:
            info = accepted.get(key)
        if info is None:
            return self._error(call, 401, "INVALID_KEY", "API key is not valid")
        if info.revoked:
            return self._error(call, 401, "KEY_REVOKED", "API key has been revoked")
        if info.expired or (info.expires_at is not None and info.expires_at <= self._config.now()):
            return self._error(call, 401, "KEY_EXPIRED", "API key has expired")
        call.key = info
        call.environment = environment
        return None

    def _count_request(self, call: _Call) -> _Response | None:
        """Per-minute rolling window per tenant (§8), then the monthly pools."""
        assert call.key is not None and call.environment is not None
        config = self._config
        tenant = call.key.tenant
        now = config.clock()
        window = config.rate_limit_window_seconds
        limit = config.rate_limit_per_minute
        month = config.now().strftime("%Y-%m")
        with self._lock:
            hits = self._hits.setdefault(tenant, deque())
            while hits and hits[0] <= now - window:
                hits.popleft()
            if len(hits) >= limit:
                reset = max(1, math.ceil(hits[0] + window - now))
                call.rate = _RateState(limit, 0, reset, allowed=False)
            else:
                hits.append(now)
                reset = max(1, math.ceil(hits[0] + window - now))
                call.rate = _RateState(limit, max(0, limit - len(hits)), reset)
                self._quota[(tenant, month, "all")] = self._quota.get((tenant, month, "all"), 0) + 1
                if call.environment == "test":
                    sandbox_key = (tenant, month, "sandbox")
                    self._quota[sandbox_key] = self._quota.get(sandbox_key, 0) + 1
            call.quota_used = self._quota.get((tenant, month, "all"), 0)
            call.sandbox_used = self._quota.get((tenant, month, "sandbox"), 0)
        if not call.rate.allowed:
            return self._error(
                call,
                429,
                "RATE_LIMITED",
                "Per-minute request limit reached",
                headers=[("Retry-After", str(call.rate.reset))],
            )
        if config.enforce_quotas:
            if call.quota_used > config.monthly_quota:
                return self._error(
                    call, 429, "MONTHLY_QUOTA_EXCEEDED", "Monthly request quota exhausted"
                )
            if call.environment == "test" and call.sandbox_used > config.sandbox_quota:
                return self._error(
                    call, 429, "SANDBOX_QUOTA_EXCEEDED", "Monthly sandbox request quota exhausted"
                )
        return None

    def _peek_rate(self, call: _Call) -> None:
        """Fill rate-limit figures for a response the limiter did not count (forced faults)."""
        if call.key is None or call.rate is not None:
            return
        config = self._config
        now = config.clock()
        with self._lock:
            hits = self._hits.get(call.key.tenant, deque())
            live = [h for h in hits if h > now - config.rate_limit_window_seconds]
            reset = (
                max(1, math.ceil(live[0] + config.rate_limit_window_seconds - now))
                if live
                else math.ceil(config.rate_limit_window_seconds)
            )
            month = config.now().strftime("%Y-%m")
            call.quota_used = self._quota.get((call.key.tenant, month, "all"), 0)
            call.sandbox_used = self._quota.get((call.key.tenant, month, "sandbox"), 0)
        limit = config.rate_limit_per_minute
        call.rate = _RateState(limit, max(0, limit - len(live)), reset)

    def _parse_json(self, call: _Call) -> _Response | None:
        if not call.raw_body:
            return None
        content_type = str(call.environ.get("CONTENT_TYPE", "") or "")
        media_type = content_type.split(";", 1)[0].strip().lower()
        if media_type not in JSON_MEDIA_TYPES:
            # Like a JSON body parser limited to JSON media types: other bodies are not read.
            return None
        try:
            call.body = json.loads(call.raw_body.decode("utf-8"), parse_constant=_reject_constant)
        except (ValueError, UnicodeDecodeError):
            return self._error(call, 400, "INVALID_JSON", "Request body is not valid JSON")
        return None

    # -- faults -----------------------------------------------------------------------------------

    def _fire_before(self, call: _Call) -> _Response | None:
        fault = call.fault
        if fault is None or fault.when != "before" or fault.kind == "drip":
            return None
        if fault.kind == "hang":
            self.faults.wait(fault.seconds)
            raise SandboxConnectionDropped("close", stored=False)
        return self._fault_response(call, fault, stored=False)

    def _fire_after(self, call: _Call, response: _Response) -> _Response:
        fault = call.fault
        if fault is None:
            return response
        if fault.kind == "drip":
            response.drip_seconds = fault.seconds
            return response
        if fault.when != "after":
            return response
        if fault.kind == "hang":
            if self.faults.wait(fault.seconds):
                raise SandboxConnectionDropped("close", stored=call.stored)
            return response
        replaced = self._fault_response(call, fault, stored=call.stored)
        return replaced if replaced is not None else response

    def _fault_response(self, call: _Call, fault: Fault, *, stored: bool) -> _Response | None:
        if fault.kind in ("drop", "reset", "garbage"):
            mode: Literal["close", "reset", "garbage"] = (
                "close" if fault.kind == "drop" else "reset" if fault.kind == "reset" else "garbage"
            )
            raise SandboxConnectionDropped(mode, stored=stored)
        if fault.kind == "redirect":
            assert fault.location is not None
            return _Response(
                302,
                b"",
                [
                    ("Location", fault.location),
                    ("X-Request-Id", call.request_id),
                    ("Content-Length", "0"),
                ],
            )
        if fault.kind != "error":
            return None
        self._peek_rate(call)
        code = fault.code or _default_code(fault.status)
        extra: list[tuple[str, str]] = []
        if fault.retry_after is not None:
            extra.append(("Retry-After", fault.retry_after))
        if code == "RATE_LIMITED" and call.rate is not None:
            reset = fault.retry_after if (fault.retry_after or "").isdigit() else None
            call.rate = replace(
                call.rate, remaining=0, reset=int(reset) if reset else call.rate.reset
            )
        if fault.body is not None:
            response = _Response(
                fault.status,
                fault.body.encode("utf-8"),
                [("Content-Type", "text/plain; charset=utf-8"), ("X-Request-Id", call.request_id)],
            )
            response.headers.extend(extra)
        else:
            response = self._error(
                call,
                fault.status,
                code,
                fault.message or _default_message(code),
                headers=extra,
            )
        overrides = {name.lower() for name, _ in fault.headers}
        omitted = {name.lower() for name in fault.omit_headers} | overrides
        response.headers = [(k, v) for k, v in response.headers if k.lower() not in omitted]
        response.headers.extend(fault.headers)
        return response

    # -- resource handlers ------------------------------------------------------------------------

    def _create(self, call: _Call, kind: str, _resource_id: str | None) -> _Response:
        assert call.key is not None and call.environment is not None
        body = call.body if call.body is not None else {}
        strict = self._config.strict
        cleaned, issues = validation.validate_create(kind, body, strict=strict)
        if not issues and strict:
            issues = self._reference_issues(call, kind, cleaned)
        if issues:
            return self._validation_error(call, issues)
        now = self._timestamp()
        resource: Resource = {"id": self._new_id(call, kind)}
        if kind == "patients":
            resource["fullName"] = _full_name(cleaned)
        resource.update(cleaned)
        if kind in ("patients", "practitioners"):
            resource.setdefault("active", True)
        resource["createdAt"] = now
        resource["updatedAt"] = now
        stored = self.store.insert(
            kind,
            call.environment,
            call.key.tenant,
            resource,
            lag=self._config.search_lag_seconds,
            request_id=call.request_id,
            timestamp=now,
        )
        call.resource_id = stored["id"]
        call.stored = True
        return self._ok(call, 201, self._present(kind, stored))

    def _read(self, call: _Call, kind: str, resource_id: str | None) -> _Response:
        assert call.key is not None and call.environment is not None and resource_id is not None
        found = self.store.get(kind, call.environment, call.key.tenant, resource_id)
        if found is None:
            return self._error(call, 404, "NOT_FOUND", "Resource not found")
        extra: dict[str, Any] = {}
        if kind == "labs" and self._wants_observations(call):
            observations = [
                self.store.get("observations", call.environment, call.key.tenant, obs_id)
                for obs_id in found.get("resultIds", [])
                if isinstance(obs_id, str)
            ]
            extra["included"] = [obs for obs in observations if obs is not None]
        return self._ok(call, 200, self._present(kind, found), extra=extra)

    def _patch(self, call: _Call, kind: str, resource_id: str | None) -> _Response:
        assert call.key is not None and call.environment is not None and resource_id is not None
        existing = self.store.get(kind, call.environment, call.key.tenant, resource_id)
        if existing is None:
            return self._error(call, 404, "NOT_FOUND", "Resource not found")
        body = call.body if call.body is not None else {}
        strict = self._config.strict
        cleaned, issues = validation.validate_patch(kind, body, strict=strict)
        if strict and not issues:
            if kind == "labs" and "status" in cleaned:
                problem = validation.transition_issue(str(existing["status"]), cleaned["status"])
                issues.extend([problem] if problem else [])
            issues.extend(self._reference_issues(call, kind, {**existing, **cleaned}))
        if issues:
            return self._validation_error(call, issues)
        updated = {k: v for k, v in existing.items() if k not in ("createdAt", "updatedAt")}
        updated.update(cleaned)
        now = self._timestamp()
        updated["createdAt"] = existing.get("createdAt", now)
        updated["updatedAt"] = now
        stored = self.store.replace(
            kind,
            call.environment,
            call.key.tenant,
            updated,
            lag=self._config.search_lag_seconds,
            request_id=call.request_id,
            timestamp=now,
        )
        call.resource_id = resource_id
        call.stored = True
        return self._ok(call, 200, self._present(kind, stored))

    def _delete(self, call: _Call, kind: str, resource_id: str | None) -> _Response:
        assert call.key is not None and call.environment is not None and resource_id is not None
        deleted = self.store.delete(
            kind,
            call.environment,
            call.key.tenant,
            resource_id,
            lag=self._config.search_lag_seconds,
            request_id=call.request_id,
            timestamp=self._timestamp(),
        )
        if not deleted:
            return self._error(call, 404, "NOT_FOUND", "Resource not found")
        call.resource_id = resource_id
        call.stored = True
        return _Response(204, b"", self._meta_headers(call))

    def _search(self, call: _Call, kind: str, _resource_id: str | None) -> _Response:
        assert call.key is not None and call.environment is not None
        try:
            keep = _search_filter(kind, call)
        except _BadParameter as exc:
            return self._error(
                call, 400, "INVALID_PARAMETER", "Invalid query parameter", issues=exc.issues
            )
        # Read-only use: the page is serialised right away, so no copies are needed.
        rows = self.store.searchable(kind, call.environment, call.key.tenant, keep, copies=False)
        rows = _sorted(kind, rows, call.param("sort"))
        count = _page_size(call.param("count"))
        offset = _offset(call.param("cursor"))
        page = rows[offset : offset + count]
        has_more = offset + count < len(rows)
        items = [self._present(kind, row, listing=True) for row in page]
        if self._config.dirty_search_results:
            items = self._dirty(call, kind, items)
        data = {
            "data": items,
            "total": len(rows),
            "cursor": str(offset + count) if has_more else None,
            "hasMore": has_more,
        }
        return self._ok(call, 200, data)

    def _dirty(self, call: _Call, kind: str, items: list[Resource]) -> list[Resource]:
        """The search-result hygiene problems of §5 / §22.36, on request: a phantom row with an
        empty id, and (when ``patientId`` was sent) a row of another patient."""
        assert call.key is not None and call.environment is not None
        wanted = call.param("patientId")
        if wanted:
            others = self.store.searchable(
                kind,
                call.environment,
                call.key.tenant,
                lambda r: r.get("patientId") not in (None, wanted),
                copies=False,
            )
            items = [self._present(kind, others[0], listing=True), *items] if others else items
        return [*items, {"id": "", "resourceType": "OperationOutcome"}]

    def _reference_issues(self, call: _Call, kind: str, data: Mapping[str, Any]) -> list[str]:
        """Strict mode only: referenced resources must exist (and results be the patient's)."""
        assert call.key is not None and call.environment is not None
        env, tenant = call.environment, call.key.tenant

        def exists(ref_kind: str, ref_id: object) -> Resource | None:
            if not isinstance(ref_id, str):
                return None
            return self.store.get(ref_kind, env, tenant, ref_id)

        issues: list[str] = []
        if kind != "patients" and "patientId" in data and not exists("patients", data["patientId"]):
            issues.append("patientId: Referenced resource not found")
        if "encounterId" in data and not exists("encounters", data["encounterId"]):
            issues.append("encounterId: Referenced resource not found")
        for index, obs_id in enumerate(data.get("resultIds") or []):
            observation = exists("observations", obs_id)
            if observation is None:
                issues.append(f"resultIds.{index}: Referenced resource not found")
            elif observation.get("patientId") != data.get("patientId"):
                issues.append(f"resultIds.{index}: Observation belongs to another patient")
        for index, spec_id in enumerate(data.get("specimenIds") or []):
            if not exists("specimens", spec_id):
                issues.append(f"specimenIds.{index}: Referenced resource not found")
        return issues

    def _wants_observations(self, call: _Call) -> bool:
        requested = call.params.get("include", []) + call.params.get("_include", [])
        return any(value in INCLUDE_VALUES for value in requested)

    def _present(self, kind: str, resource: Resource, *, listing: bool = False) -> Resource:
        if (
            listing
            and kind == "labs"
            and self._config.omit_attachment_data_in_lists
            and isinstance(resource.get("presentedForm"), list)
        ):
            resource = dict(resource)
            resource["presentedForm"] = [
                {k: v for k, v in form.items() if k != "data"} if isinstance(form, dict) else form
                for form in resource["presentedForm"]
            ]
        return resource

    def _new_id(self, call: _Call, kind: str) -> str:
        assert call.key is not None and call.environment is not None
        taken = self.store.ids_in_use(kind, call.environment, call.key.tenant)
        while True:
            candidate = _random_id(ID_PREFIXES[kind], 12)
            if candidate not in taken:
                return candidate

    # -- responses --------------------------------------------------------------------------------

    def _timestamp(self) -> str:
        return iso_timestamp(self._config.now())

    def _clock_now(self) -> float:
        return self._config.clock()

    def _meta_headers(self, call: _Call) -> list[tuple[str, str]]:
        headers = [("X-Request-Id", call.request_id), ("X-Timestamp", self._timestamp())]
        if call.rate is not None:
            headers += [
                ("X-RateLimit-Limit", str(call.rate.limit)),
                ("X-RateLimit-Remaining", str(call.rate.remaining)),
                ("X-RateLimit-Reset", str(call.rate.reset)),
            ]
        if call.key is not None and call.rate is not None:
            config = self._config
            headers += [
                ("X-Quota-Limit", str(config.monthly_quota)),
                ("X-Quota-Used", str(call.quota_used)),
                ("X-Quota-Remaining", str(max(0, config.monthly_quota - call.quota_used))),
                ("X-Quota-Billable", "true" if call.environment == "live" else "false"),
                ("X-Quota-Reset", _next_month(config.now())),
            ]
            if call.quota_used > config.monthly_quota:
                headers.append(("X-Quota-Overage", str(call.quota_used - config.monthly_quota)))
            if call.environment == "test":
                headers += [
                    ("X-Sandbox-Limit", str(config.sandbox_quota)),
                    ("X-Sandbox-Used", str(call.sandbox_used)),
                    ("X-Sandbox-Remaining", str(max(0, config.sandbox_quota - call.sandbox_used))),
                ]
        return headers

    def _ok(
        self, call: _Call, status: int, data: Any, *, extra: Mapping[str, Any] | None = None
    ) -> _Response:
        meta: dict[str, Any] = {
            "requestId": call.request_id,
            "timestamp": self._timestamp(),
            "status": status,
        }
        if call.rate is not None:
            meta["rateLimitTotal"] = call.rate.limit
            meta["rateLimitRemaining"] = call.rate.remaining
            meta["rateLimitReset"] = call.rate.reset
        payload: dict[str, Any] = {"data": data}
        payload.update(extra or {})
        payload["meta"] = meta
        return self._json(status, payload, self._meta_headers(call))

    def _error(
        self,
        call: _Call,
        status: int,
        code: str,
        message: str,
        *,
        issues: list[str] | None = None,
        headers: list[tuple[str, str]] | None = None,
    ) -> _Response:
        body: dict[str, Any] = {
            "error": _error_title(status, code),
            "message": message,
            "code": code,
            "requestId": call.request_id,
        }
        if issues:
            body["issues"] = [
                {"severity": "error", "code": "invalid", "diagnostics": text} for text in issues
            ]
        return self._json(status, body, self._meta_headers(call) + (headers or []))

    def _validation_error(self, call: _Call, issues: list[str]) -> _Response:
        return self._error(
            call, 422, "VALIDATION_ERROR", "Request body failed validation", issues=issues
        )

    def _json(
        self,
        status: int,
        payload: Any,
        headers: list[tuple[str, str]],
        *,
        content_type: str = "application/json",
    ) -> _Response:
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        return _Response(
            status, body, [("Content-Type", f"{content_type}; charset=utf-8"), *headers]
        )

    def _send(self, response: _Response, start_response: StartResponse) -> Iterable[bytes]:
        headers = [(k, v) for k, v in response.headers if k.lower() != "content-length"]
        if response.status != 204:
            headers.append(("Content-Length", str(len(response.body))))
        reason = HTTPStatus(response.status).phrase
        start_response(f"{response.status} {reason}", headers)
        if response.status == 204:
            return []
        if response.drip_seconds is not None:
            return _drip(response.body, response.drip_seconds, self.faults)
        return [response.body]

    def _log(self, call: _Call, status: int | None) -> None:
        headers = tuple(
            (name[5:].replace("_", "-").lower(), str(value))
            for name, value in call.environ.items()
            if name.startswith("HTTP_") and name != "HTTP_X_API_KEY"
        )
        content_type = call.environ.get("CONTENT_TYPE")
        if content_type:
            headers += (("content-type", str(content_type)),)
        self.store.log_request(
            RequestRecord(
                request_id=call.request_id,
                method=call.method,
                path=call.path,
                query=call.query_string,
                at=call.started,
                timestamp=call.timestamp,
                status=status,
                environment=call.environment,
                tenant=call.key.tenant if call.key else None,
                fault=call.fault.kind if call.fault else None,
                resource_id=call.resource_id,
                body=call.body,
                headers=headers,
            )
        )

    def _seed_loader(self) -> Callable[[], Mapping[str, list[Resource]]] | None:
        if not self._config.seed:
            return None
        from reports.sandbox.seed import seed_data

        return seed_data

    # -- control routes -------------------------------------------------------------------------

    def _control(self, environ: WSGIEnvironment, method: str, path: str) -> _Response:
        """Unauthenticated routes for tests and tools (the server binds to loopback only).

        GET /_sandbox/state                    config, armed faults, dataset counts
        GET|POST|PUT|DELETE /_sandbox/faults   list / append / replace / clear faults
        POST /_sandbox/reset                   back to a freshly seeded sandbox
        POST /_sandbox/config                  change runtime settings (JSON object)
        GET /_sandbox/requests                 request log (?method=&path=)
        GET /_sandbox/writes                   write log
        GET /_sandbox/resources/{kind}         ground truth (?environment=test&tenant=...)
        """
        raw, _ = _read_body(environ, HARD_BODY_CAP)
        params = parse_qs(str(environ.get("QUERY_STRING", "")))
        try:
            payload = json.loads(raw.decode("utf-8")) if raw else None
        except (ValueError, UnicodeDecodeError):
            return _plain(400, {"error": "body is not valid JSON"})
        try:
            return self._control_route(method, path, payload, params)
        except (ValueError, TypeError) as exc:
            return _plain(400, {"error": str(exc)})

    def _control_route(
        self, method: str, path: str, payload: Any, params: Mapping[str, list[str]]
    ) -> _Response:
        def first(name: str, default: str) -> str:
            return params.get(name, [default])[0]

        if path == "/_sandbox/state" and method == "GET":
            return _plain(200, self.state())
        if path == "/_sandbox/faults":
            if method == "GET":
                return _plain(200, {"faults": [f.to_dict() for f in self.faults.pending()]})
            if method == "DELETE":
                self.faults.clear()
                return _plain(200, {"faults": []})
            if method in ("POST", "PUT"):
                items = payload if isinstance(payload, list) else [payload]
                faults = [Fault.from_dict(item) for item in items]
                (self.faults.push if method == "POST" else self.faults.set)(*faults)
                return _plain(200, {"faults": [f.to_dict() for f in self.faults.pending()]})
        if path == "/_sandbox/reset" and method == "POST":
            self.reset()
            return _plain(200, self.state())
        if path == "/_sandbox/config" and method == "POST":
            if not isinstance(payload, dict):
                raise ValueError("config must be a JSON object")
            unknown = set(payload) - _RUNTIME_SETTINGS
            if unknown:
                raise ValueError(f"not changeable at run time: {sorted(unknown)}")
            changes = dict(payload)
            if "accepted_keys" in changes and changes["accepted_keys"] is not None:
                changes["accepted_keys"] = {
                    str(key): KeyInfo.from_dict(info)
                    for key, info in dict(changes["accepted_keys"]).items()
                }
            self.configure(**changes)
            return _plain(200, self.state())
        if path == "/_sandbox/requests" and method == "GET":
            wanted_method = first("method", "").upper()
            wanted_path = first("path", "")
            rows = [
                r.to_dict()
                for r in self.store.requests
                if (not wanted_method or r.method == wanted_method)
                and (not wanted_path or r.path == wanted_path)
            ]
            return _plain(200, {"requests": rows})
        if path == "/_sandbox/writes" and method == "GET":
            return _plain(200, {"writes": [w.to_dict() for w in self.store.writes]})
        if path.startswith("/_sandbox/resources/") and method == "GET":
            kind = path.rsplit("/", 1)[1]
            if kind not in KINDS:
                return _plain(404, {"error": "unknown resource kind"})
            rows = self.store.resources(
                kind,
                env=first("environment", "test"),
                tenant=first("tenant", self._config.default_tenant),
            )
            return _plain(200, {"resources": rows})
        return _plain(404, {"error": "unknown control route"})

    def state(self) -> dict[str, Any]:
        """A JSON-ready summary: settings, armed faults, resource counts per dataset."""
        config = self._config
        settings = {
            "search_lag_seconds": config.search_lag_seconds,
            "latency_ms": config.latency_ms,
            "rate_limit_per_minute": config.rate_limit_per_minute,
            "rate_limit_window_seconds": config.rate_limit_window_seconds,
            "monthly_quota": config.monthly_quota,
            "sandbox_quota": config.sandbox_quota,
            "enforce_quotas": config.enforce_quotas,
            "strict": config.strict,
            "omit_attachment_data_in_lists": config.omit_attachment_data_in_lists,
            "dirty_search_results": config.dirty_search_results,
            "default_tenant": config.default_tenant,
            "accepted_keys": None
            if config.accepted_keys is None
            else len(config.accepted_keys),  # the keys themselves are never shown
        }
        return {
            "config": settings,
            "faults": [f.to_dict() for f in self.faults.pending()],
            "datasets": [
                {"environment": env, "tenant": tenant, "counts": self.store.counts(env, tenant)}
                for env, tenant in self.store.datasets()
            ],
            "requests": len(self.store.requests),
            "writes": len(self.store.writes),
        }


# -- routing ------------------------------------------------------------------------------------

_Action = Callable[[Sandbox, _Call, str, str | None], _Response]


def _route(method: str, path: str) -> tuple[_Action, str, str | None] | None:
    parts = path.rstrip("/").split("/")
    if len(parts) not in (3, 4) or parts[0] != "" or parts[1] != "v1" or parts[2] not in KINDS:
        return None
    kind = parts[2]
    if len(parts) == 3:
        if method == "GET":
            return Sandbox._search, kind, None
        if method == "POST":
            return Sandbox._create, kind, None
        return None
    resource_id = parts[3]
    if not resource_id:
        return None
    if method == "GET":
        return Sandbox._read, kind, resource_id
    if method == "PATCH" and kind in PATCHABLE:
        return Sandbox._patch, kind, resource_id
    if method == "DELETE" and kind in DELETABLE:
        return Sandbox._delete, kind, resource_id
    return None


def _scope_allows(key: KeyInfo | None, method: str) -> bool:
    if key is None or key.scope == "*":
        return True
    is_read = method in ("GET", "HEAD")
    return is_read if key.scope == "read" else not is_read


# -- search -------------------------------------------------------------------------------------

_STATUS_ENUMS: Mapping[str, tuple[str, ...]] = {
    "labs": validation.LAB_STATUSES,
    "encounters": validation.ENCOUNTER_STATUSES,
    "observations": validation.OBSERVATION_STATUSES,
    "specimens": validation.SPECIMEN_STATUSES,
}


def _search_filter(kind: str, call: _Call) -> Callable[[Resource], bool]:
    """Build the predicate for one search; raises ``_BadParameter`` on malformed values."""
    checks: list[Callable[[Resource], bool]] = []
    issues: list[str] = []

    def exact(field_name: str, param: str) -> None:
        value = call.param(param)
        if value is not None and value != "":
            checks.append(lambda r: r.get(field_name) == value)

    def enum(param: str, allowed: tuple[str, ...], field_name: str | None = None) -> None:
        value = call.param(param)
        if value is None or value == "":
            return
        if value not in allowed:
            issues.append(f"{param}: Invalid enum value")
            return
        checks.append(lambda r: r.get(field_name or param) == value)

    def boolean(param: str, default: bool | None = None) -> None:
        value = call.param(param)
        wanted: bool | None = default
        if value is not None and value != "":
            if value not in ("true", "false"):
                issues.append(f"{param}: Expected boolean")
                return
            wanted = value == "true"
        if wanted is not None:
            checks.append(lambda r: bool(r.get(param, True)) == wanted)

    def date_range(extract: Callable[[Resource], str | None]) -> None:
        bounds: dict[str, str] = {}
        for param in ("dateFrom", "dateTo"):
            value = call.param(param)
            if value is None or value == "":
                continue
            day = value[:10]
            if not validation.is_date(day) or (
                len(value) > 10 and not validation.is_datetime(value)
            ):
                issues.append(f"{param}: Invalid date")
                continue
            bounds[param] = day
        if not bounds:
            return

        def within(resource: Resource) -> bool:
            instant = extract(resource)
            if not instant:
                return False
            day = instant[:10]
            low = bounds.get("dateFrom")
            high = bounds.get("dateTo")
            return (low is None or day >= low) and (high is None or day <= high)

        checks.append(within)

    def name(param: str) -> None:
        value = call.param(param)
        if value is None or not value.strip():
            return
        needle = fold(" ".join(value.split()))
        checks.append(lambda r: any(needle in fold(part) for part in _name_parts(r)))

    if kind in ("labs", "encounters", "observations", "specimens"):
        exact("patientId", "patientId")
    if kind in _STATUS_ENUMS:
        enum("status", _STATUS_ENUMS[kind])
    if kind == "labs":
        exact("category", "category")
        date_range(_lab_date)
    elif kind == "encounters":
        date_range(lambda r: _dig(r, "period.start"))
    elif kind == "observations":
        enum("category", validation.OBSERVATION_CATEGORIES)
        date_range(lambda r: _dig(r, "effectiveDateTime"))
    elif kind == "specimens":
        value = call.param("type")
        if value:
            checks.append(lambda r: fold(str(r.get("type", ""))) == fold(value))
        date_range(lambda r: _dig(r, "collection.collectedDateTime") or _dig(r, "receivedTime"))
    elif kind == "patients":
        name("name")
        exact("email", "email")
        exact("phone", "phone")
        enum("gender", validation.GENDERS)
        birth = call.param("birthDate")
        if birth:
            if validation.is_date(birth):
                checks.append(lambda r: r.get("birthDate") == birth)
            else:
                issues.append("birthDate: Invalid date")
        boolean("active")
    elif kind == "practitioners":
        name("name")
        exact("npi", "npi")
        specialty = call.param("specialty")
        if specialty:
            checks.append(lambda r: fold(specialty) in fold(str(r.get("specialty", ""))))
        # Deactivated practitioners appear only when asked for with active=false (§15).
        boolean("active", default=True)
    if issues:
        raise _BadParameter(issues)
    return lambda resource: all(check(resource) for check in checks)


def _name_parts(resource: Resource) -> list[str]:
    first = str(resource.get("firstName", ""))
    last = str(resource.get("lastName", ""))
    return [first, last, f"{first} {last}", str(resource.get("fullName", ""))]


def fold(text: str) -> str:
    """Case- and accent-insensitive form used by name searches ("Zoë" matches "zoe")."""
    decomposed = unicodedata.normalize("NFKD", text.translate(_TRANSLITERATION))
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def _dig(resource: Resource, dotted: str) -> str | None:
    value: Any = resource
    for part in dotted.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value if isinstance(value, str) else None


def _lab_date(resource: Resource) -> str | None:
    return _dig(resource, "effectiveDateTime") or _dig(resource, "effectivePeriod.start")


_DATE_SORT_FIELDS: Mapping[str, Callable[[Resource], Any]] = {
    "labs": lambda r: _lab_date(r) or r.get("createdAt"),
    "encounters": lambda r: _dig(r, "period.start"),
    "observations": lambda r: _dig(r, "effectiveDateTime"),
    "specimens": lambda r: _dig(r, "collection.collectedDateTime") or _dig(r, "receivedTime"),
    "patients": lambda r: r.get("birthDate"),
    "practitioners": lambda r: r.get("createdAt"),
}


def _sorted(kind: str, rows: list[Resource], sort: str | None) -> list[Resource]:
    """Default: newest ``createdAt`` first (the store's order); ``-x`` sorts x descending.

    ``date`` means the resource's clinical time; other names are (dotted) field paths. Rows
    without a value for the field go last in either direction.
    """
    if not sort:
        return rows
    descending = sort.startswith("-")
    key = _sort_key(kind, sort.lstrip("-+ "))
    present = [r for r in rows if isinstance(key(r), str | int | float)]
    missing = [r for r in rows if not isinstance(key(r), str | int | float)]
    with contextlib.suppress(TypeError):  # mixed types in one field: keep the default order
        present.sort(key=key, reverse=descending)
    return present + missing


def _sort_key(kind: str, name: str) -> Callable[[Resource], Any]:
    if name == "date":
        return _DATE_SORT_FIELDS[kind]

    def by_field(resource: Resource) -> Any:
        value: Any = resource
        for part in name.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        return value

    return by_field


def _page_size(value: str | None) -> int:
    if value is None or not value.strip().isdigit():
        return DEFAULT_PAGE
    number = int(value.strip())
    if number <= 0:
        return DEFAULT_PAGE
    return min(number, MAX_PAGE)


def _offset(value: str | None) -> int:
    if value is None or not value.strip().isdigit():
        return 0
    return max(0, int(value.strip()))


# -- helpers ------------------------------------------------------------------------------------


def _read_body(environ: WSGIEnvironment, limit: int) -> tuple[bytes, bool]:
    """Read the request body; the flag says it was larger than ``limit``."""
    try:
        length = int(str(environ.get("CONTENT_LENGTH") or "0"))
    except ValueError:
        length = 0
    if length <= 0:
        return b"", False
    stream = environ["wsgi.input"]
    if length > HARD_BODY_CAP:
        return b"", True
    raw: bytes = stream.read(length)
    return (b"", True) if len(raw) > limit else (raw, False)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _random_id(prefix: str, length: int) -> str:
    return f"{prefix}_" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(length))


def iso_timestamp(moment: datetime) -> str:
    """``2026-03-02T14:05:01.217Z`` -- UTC with milliseconds."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _next_month(moment: datetime) -> str:
    moment = moment.astimezone(UTC)
    year, month = (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
    return iso_timestamp(datetime(year, month, 1, tzinfo=UTC))


def _full_name(data: Mapping[str, Any]) -> str:
    parts = [data.get("firstName"), data.get("middleName"), data.get("lastName")]
    return " ".join(str(p) for p in parts if p)


def _error_title(status: int, code: str) -> str:
    if code == "VALIDATION_ERROR":
        return "Validation Error"
    if code in ("MONTHLY_QUOTA_EXCEEDED", "SANDBOX_QUOTA_EXCEEDED"):
        return "Quota exceeded"
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


_DEFAULT_CODES = {
    400: "INVALID_JSON",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    409: "CONFLICT",
    413: "PAYLOAD_TOO_LARGE",
    422: "VALIDATION_ERROR",
    429: "RATE_LIMITED",
}
_DEFAULT_MESSAGES = {
    "RATE_LIMITED": "Per-minute request limit reached",
    "MONTHLY_QUOTA_EXCEEDED": "Monthly request quota exhausted",
    "SANDBOX_QUOTA_EXCEEDED": "Monthly sandbox request quota exhausted",
    "INTERNAL_ERROR": "Unexpected server error",
    "CONFLICT": "Resource version conflict",
    "KEY_REVOKED": "API key has been revoked",
    "KEY_EXPIRED": "API key has expired",
    "UNAUTHORIZED": "Missing x-api-key header",
    "FORBIDDEN": "API key scope does not allow this operation",
    "NOT_FOUND": "Resource not found",
}


def _default_code(status: int) -> str:
    return _DEFAULT_CODES.get(status, "INTERNAL_ERROR")


def _default_message(code: str) -> str:
    return _DEFAULT_MESSAGES.get(code, "Request failed")


def _plain(status: int, payload: Any) -> _Response:
    body = json.dumps(payload, ensure_ascii=False, default=str).encode("utf-8")
    return _Response(status, body, [("Content-Type", "application/json; charset=utf-8")])


def _drip(body: bytes, seconds: float, faults: Faults) -> Iterator[bytes]:
    """Headers first (the empty chunk flushes them), then one byte per interval."""
    yield b""
    for index in range(len(body)):
        if faults.wait(seconds):
            return
        yield body[index : index + 1]


def _capability_statement() -> dict[str, Any]:
    resources = ["DiagnosticReport", "Patient", "Encounter", "Observation", "Practitioner"]
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-01-01",
        "kind": "instance",
        "software": {"name": "ClinikAPI sandbox"},
        "fhirVersion": "4.0.1",
        "format": ["json"],
        "rest": [
            {
                "mode": "server",
                "resource": [
                    {"type": t, "interaction": [{"code": "read"}, {"code": "search-type"}]}
                    for t in [*resources, "Specimen"]
                ],
            }
        ],
    }


_default_sandbox: Sandbox | None = None
_default_lock = threading.Lock()


def default_sandbox() -> Sandbox:
    """The process-wide sandbox (created on first use with the default config).

    Backs ``CLINIKAPI_BASE_URL=sandbox`` in-process; change its settings with ``configure()``
    and start it afresh with ``reset()``.
    """
    global _default_sandbox
    with _default_lock:
        if _default_sandbox is None:
            _default_sandbox = Sandbox()
        return _default_sandbox
