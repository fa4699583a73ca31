"""The one module that talks HTTP to ClinikAPI.

Everything ClinikUI knows about the wire lives here: URL building, headers, pre-flight checks,
response parsing into small frozen dataclasses, error classification and the read-retry policy.
Section numbers in comments (§n) refer to the ClinikAPI contract (shared/clinikapi/CONTRACT.md);
SUB-/SEC-/WEB- ids refer to the reliability requirements.

Callers never see httpx or raw JSON: they get typed results or a `ClinikAPIError` subclass whose
class says what the caller may do next (retry, reconcile, park, show a form error).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import logging
import math
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from email.utils import parsedate_to_datetime
from importlib import metadata
from typing import TYPE_CHECKING, Any, ClassVar, Final, Protocol, Self
from urllib.parse import quote, urlsplit

import httpx
from django.core.signals import setting_changed

from reports.redaction import API_KEY_PATTERN, redact_secrets

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

logger = logging.getLogger("clinikui.clinikapi")

DEFAULT_BASE_URL: Final = "https://api.clinikapi.com"
# The in-process emulator is reached through a WSGI transport; `.invalid` can never resolve, so a
# misrouted request to this host fails instead of reaching someone else's server.
SANDBOX_BASE_URL: Final = "http://sandbox.clinikui.invalid"
SANDBOX_HOST: Final = "sandbox.clinikui.invalid"

MAX_BODY_BYTES: Final = 1_048_576  # §3: the vendor SDK's pre-send ceiling; server limit unknown
MAX_CONCLUSION_CHARS: Final = 5000  # §11.1
# The largest legitimate response is one report with ~1 MiB of inline attachments; anything far
# beyond that is a fault, and reading it would only exhaust memory.
MAX_RESPONSE_BYTES: Final = 16 * 1024 * 1024
MAX_PAGE_SIZE: Final = 100  # §5

BACKOFF_BASE_SECONDS: Final = 1.0  # SUB-06
BACKOFF_CAP_SECONDS: Final = 60.0  # SUB-06
MIN_RETRY_AFTER_SECONDS: Final = 1.0  # SUB-06: garbage or extreme values are clamped
MAX_RETRY_AFTER_SECONDS: Final = 900.0

LAB_STATUSES: Final = frozenset(
    {
        "registered",
        "partial",
        "preliminary",
        "final",
        "amended",
        "corrected",
        "appended",
        "cancelled",
    }
)
LAB_CATEGORIES: Final = frozenset({"LAB", "RAD", "PAT"})
PATIENT_GENDERS: Final = frozenset({"male", "female", "other", "unknown"})
LAB_CREATE_FIELDS: Final = frozenset(
    {
        "status",
        "code",
        "patientId",
        "category",
        "encounterId",
        "effectiveDateTime",
        "effectivePeriod",
        "resultIds",
        "conclusion",
        "conclusionCodes",
        "performer",
        "resultsInterpreter",
        "specimenIds",
        "presentedForm",
        "basedOn",
        "media",
    }
)
# §11.4: what the simplified PATCH can change; the rest needs a corrected report.
LAB_UPDATABLE_FIELDS: Final = frozenset(
    {
        "status",
        "conclusion",
        "conclusionCodes",
        "resultIds",
        "resultsInterpreter",
        "presentedForm",
        "effectiveDateTime",
        "effectivePeriod",
        "performer",
    }
)
LAB_NOT_UPDATABLE_FIELDS: Final = frozenset(
    {"patientId", "code", "category", "encounterId", "specimenIds", "basedOn", "media"}
)
ATTACHMENT_FIELDS: Final = frozenset({"contentType", "data", "url", "title"})  # §10
# HL7 v3 ObservationInterpretation codes for critical results ("panic values").
CRITICAL_INTERPRETATIONS: Final = frozenset({"HH", "LL", "AA"})
QUOTA_CODES: Final = frozenset({"MONTHLY_QUOTA_EXCEEDED", "SANDBOX_QUOTA_EXCEEDED"})
NPI_SYSTEM: Final = "http://hl7.org/fhir/sid/us-npi"

_ID_PATTERN: Final = re.compile(r"[A-Za-z0-9._-]{1,128}")  # §3, used with fullmatch
_KEY_PREFIXES: Final = ("clk_live_", "clk_test_")


# --------------------------------------------------------------------------------------------
# Secrets


def _mask_key(api_key: str) -> str:
    for prefix in _KEY_PREFIXES:
        if api_key.startswith(prefix):
            return prefix + "[redacted]"
    return "[redacted]" if api_key else "[missing]"


class _DropQueryStrings(logging.Filter):
    """httpx logs every request's full URL at INFO; our query strings carry patient names and
    birth dates (PHI, SEC-02), so the URLs it logs lose their query. Installed on the "httpx"
    logger itself, so it applies whatever level or handlers the deployment configures."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                arg.copy_with(query=None) if isinstance(arg, httpx.URL) and arg.query else arg
                for arg in record.args
            )
        return True


logging.getLogger("httpx").addFilter(_DropQueryStrings())


# --------------------------------------------------------------------------------------------
# Errors (SUB-04 outcome classes)


@dataclass(frozen=True, slots=True)
class Issue:
    """One validation problem: `field` is a dotted path, `message` never echoes a value (§7.1)."""

    field: str
    message: str
    severity: str = "error"


class ClinikAPIError(Exception):
    """Base of every failure raised by this module."""

    #: Whether sending the same request again later can succeed (the caller's policy decides when).
    retryable: ClassVar[bool] = False
    default_message: ClassVar[str] = "ClinikAPI request failed"

    def __init__(
        self,
        message: str | None = None,
        *,
        status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
        issues: Sequence[Issue] = (),
        retry_after: float | None = None,
        operation: str | None = None,
    ) -> None:
        self.message = redact_secrets(message or self.default_message)
        self.status = status
        self.code = code
        self.request_id = request_id
        self.issues = tuple(issues)
        self.retry_after = retry_after
        self.operation = operation  # "GET /v1/labs/lab_1": method and path, never a query string
        super().__init__(self.message)

    def __str__(self) -> str:
        details = [
            f"{label} {value}"
            for label, value in (
                ("HTTP", self.status),
                ("code", self.code),
                ("request", self.request_id),
                ("during", self.operation),
            )
            if value is not None
        ]
        return f"{self.message} ({', '.join(details)})" if details else self.message

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, status={self.status!r}, code={self.code!r},"
            f" request_id={self.request_id!r}, issues={len(self.issues)})"
        )


class Misconfigured(ClinikAPIError, ValueError):
    """The settings cannot produce a safe client (bad base URL, missing key) (WEB-05)."""

    default_message = "ClinikAPI is misconfigured"


class Unavailable(ClinikAPIError):
    """The API could not be used; the operation may be retried by the caller's policy."""

    retryable = True
    default_message = "ClinikAPI is unavailable"


class NotSent(Unavailable):
    """Nothing was processed: connect error or timeout, pool timeout, DNS failure."""

    default_message = "The request could not be sent to ClinikAPI"


class RequestRefused(NotSent):
    """Our own pre-flight check refused the request; no byte left the machine.

    Sending it again unchanged will be refused again, hence `retryable = False`: fix the input.
    """

    retryable = False
    default_message = "The request was refused before sending"


class OutcomeUnknown(Unavailable):
    """The request may have been processed: reconcile before any resend of a write (SUB-05)."""

    default_message = "The outcome of the ClinikAPI request is unknown"


class DeadlineExceeded(OutcomeUnknown):
    """The overall per-attempt deadline ran out while the response was still arriving (SUB-09)."""

    default_message = "ClinikAPI did not answer within the deadline"


class ServerError(OutcomeUnknown):
    """Any 5xx: the server may or may not have stored the write (§9)."""

    default_message = "ClinikAPI reported a server error"


class UnexpectedResponse(OutcomeUnknown):
    """A redirect, an unreadable body or a shape we cannot use; the server may have acted."""

    default_message = "ClinikAPI sent an unexpected response"


class Rejected(ClinikAPIError):
    """The API answered 4xx and did not store anything."""

    default_message = "ClinikAPI rejected the request"


class InvalidRequest(Rejected):
    """400, 413 and any other 4xx without a more specific class."""

    default_message = "ClinikAPI refused the request as invalid"


class ValidationFailed(InvalidRequest):
    """422: the body failed validation; `issues` says which fields."""

    default_message = "ClinikAPI refused the request: validation failed"


class Unauthorized(Rejected):
    """401: key missing, malformed, unknown, revoked or expired."""

    default_message = "ClinikAPI did not accept the API key"


class Forbidden(Rejected):
    """403: the key lacks the scope (read / write) for this call."""

    default_message = "The ClinikAPI key is not allowed to do this"


class NotFound(Rejected):
    """404: missing, deleted, another tenant's, or in the other environment (§2)."""

    default_message = "ClinikAPI has no such resource"


class Conflict(Rejected):
    """409: re-read and reconcile with the clinician (§9)."""

    default_message = "ClinikAPI reported a conflicting change"


class RateLimited(Rejected):
    """429 RATE_LIMITED: wait `retry_after` seconds (None: use backoff) and retry."""

    retryable = True
    default_message = "ClinikAPI rate limit reached"


class QuotaExceeded(Rejected):
    """429 monthly or sandbox quota: retrying is pointless until the quota resets (OPS-03)."""

    default_message = "ClinikAPI quota exhausted"


# --------------------------------------------------------------------------------------------
# Lenient readers for JSON values; every parser below tolerates absent or mistyped fields.


def _obj(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _seq(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _first(value: object) -> Mapping[str, Any]:
    """The first object of a FHIR repeating element, or the object itself when not a list."""
    if isinstance(value, list):
        return next((item for item in value if isinstance(item, Mapping)), {})
    return _obj(value)


def _text(value: object) -> str | None:
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, int | Decimal) and not isinstance(value, bool):
        return str(value)
    return None


def _texts(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    return tuple(text for item in _seq(value) if (text := _text(item)) is not None)


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    try:
        number = Decimal(str(value).strip()) if isinstance(value, str | Decimal) else None
    except InvalidOperation:
        return None
    if number is None or not number.is_finite() or number != number.to_integral_value():
        return None
    return int(number)


def _decimal(value: object) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, int | Decimal | float | str):
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _bool(value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return None


def _datetime(value: object) -> datetime | None:
    text = _text(value)
    if text is None:
        return None
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return datetime(day.year, day.month, day.day, tzinfo=UTC)
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    # §3 says the API speaks UTC; a naive echo is read as UTC rather than as server-local time.
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _date(value: object) -> date | None:
    text = _text(value)
    if text is None:
        return None
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        return None  # FHIR allows partial dates ("1984", "1984-11"); we cannot show them as dates


def _ref_id(value: object) -> str | None:
    """`"Patient/pt_1"`, `{"reference": "Patient/pt_1"}` or a plain id → `"pt_1"`."""
    if isinstance(value, Mapping):
        value = value.get("reference")
    text = _text(value)
    if text is None:
        return None
    return text.rstrip("/").rsplit("/", 1)[-1] or None


def _ref_ids(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    return tuple(ref for item in _seq(value) if (ref := _ref_id(item)) is not None)


def _actor(value: object) -> str | None:
    """A practitioner id from a flat string or a FHIR Reference (falling back to its display)."""
    item = _first(value) if isinstance(value, list) else value
    if isinstance(item, Mapping):
        return _ref_id(item) or _text(item.get("display"))
    return _text(item)


def _note_text(value: object) -> str | None:
    """A flat string, or the texts of FHIR Annotations joined."""
    if isinstance(value, list):
        parts = [_text(_obj(item).get("text")) or _text(item) for item in value]
        return "\n".join(part for part in parts if part) or None
    return _text(value)


def _utc_z(value: datetime, field_name: str) -> str:
    """§3 / §22.11: date-times go out as UTC with a `Z` suffix."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise RequestRefused(
            "A date-time without a timezone was refused",
            issues=(Issue(field_name, "must be timezone-aware"),),
        )
    value = value.astimezone(UTC)
    if value.microsecond:
        return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def _put(payload: dict[str, Any], key: str, value: object) -> None:
    """Set `key` only when `value` says something (NewLab drops None and empty values)."""
    if value is None or value == "" or value == () or value == []:
        return
    payload[key] = value


# --------------------------------------------------------------------------------------------
# Value shapes (§10)


@dataclass(frozen=True, slots=True)
class Code:
    """A coded value normalised from a string, `{system, code, display}` or a CodeableConcept."""

    system: str | None = None
    code: str | None = None
    display: str | None = None

    @classmethod
    def free_text(cls, text: str) -> Self:
        return cls(display=text)

    @classmethod
    def parse(cls, value: object) -> Self | None:
        if isinstance(value, str):
            return cls.free_text(value.strip()) if value.strip() else None
        if not isinstance(value, Mapping):
            return None
        if "coding" in value or ("text" in value and "code" not in value):
            codings = [item for item in _seq(value.get("coding")) if isinstance(item, Mapping)]
            chosen = next((item for item in codings if _text(item.get("code"))), None)
            text = _text(value.get("text"))
            if chosen is not None:
                display = _text(chosen.get("display")) or text
                return cls(_text(chosen.get("system")), _text(chosen.get("code")), display)
            return cls.free_text(text) if text else None
        code, display = _text(value.get("code")), _text(value.get("display"))
        if code is None and display is None:
            return None
        return cls(_text(value.get("system")), code, display)

    @property
    def label(self) -> str:
        """What a person reads: the display, else the bare code."""
        return self.display or self.code or ""

    def to_payload(self) -> dict[str, str] | str:
        """§10 code input: an object when there is a code, else free text."""
        if self.code is None:
            return self.display or ""
        payload = {"system": self.system, "code": self.code, "display": self.display}
        return {key: value for key, value in payload.items() if value}


def _code_payload(value: Code | str) -> dict[str, str] | str:
    return value.to_payload() if isinstance(value, Code) else value


@dataclass(frozen=True, slots=True)
class Quantity:
    value: Decimal
    unit: str | None = None
    system: str | None = None
    code: str | None = None
    comparator: str | None = None  # FHIR "<", "<=", ">=", ">": "<0.01" must not read as 0.01

    @classmethod
    def parse(cls, value: object) -> Self | None:
        raw = _obj(value)
        number = _decimal(raw.get("value"))
        if number is None:
            return None
        return cls(
            value=number,
            unit=_text(raw.get("unit")) or _text(raw.get("code")),
            system=_text(raw.get("system")),
            code=_text(raw.get("code")),
            comparator=_text(raw.get("comparator")),
        )

    @property
    def number_text(self) -> str:
        return f"{self.comparator or ''}{self.value:f}"

    @property
    def display(self) -> str:
        return f"{self.number_text} {self.unit or ''}".strip()


@dataclass(frozen=True, slots=True)
class ReferenceRange:
    low: Quantity | None = None
    high: Quantity | None = None
    text: str | None = None

    @classmethod
    def parse(cls, value: object) -> Self | None:
        raw = _first(value)  # flat: one object; FHIR: a list
        low, high = Quantity.parse(raw.get("low")), Quantity.parse(raw.get("high"))
        text = _text(raw.get("text"))
        return cls(low, high, text) if (low or high or text) else None

    @property
    def display(self) -> str:
        if self.text:
            return self.text
        bound = self.high or self.low
        unit = bound.unit if bound else None
        suffix = f" {unit}" if unit else ""
        if self.low and self.high:
            return f"{self.low.number_text}–{self.high.number_text}{suffix}"
        if self.low:
            return f"≥ {self.low.number_text}{suffix}"
        if self.high:
            return f"≤ {self.high.number_text}{suffix}"
        return ""


@dataclass(frozen=True, slots=True)
class Period:
    start: datetime | None = None
    end: datetime | None = None

    @classmethod
    def parse(cls, value: object) -> Self | None:
        raw = _obj(value)
        start, end = _datetime(raw.get("start")), _datetime(raw.get("end"))
        return cls(start, end) if (start or end) else None

    def to_payload(self, field_name: str = "period") -> dict[str, str]:
        payload = {}
        if self.start is not None:
            payload["start"] = _utc_z(self.start, f"{field_name}.start")
        if self.end is not None:
            payload["end"] = _utc_z(self.end, f"{field_name}.end")
        return payload


@dataclass(frozen=True, slots=True)
class Attachment:
    """A `presentedForm` item (§10). `data` is standard base64, as sent and received."""

    content_type: str
    title: str | None = None
    data: str | None = None
    url: str | None = None

    @classmethod
    def parse(cls, value: object) -> Self | None:
        raw = _obj(value)
        content_type = _text(raw.get("contentType"))
        data, url, title = _text(raw.get("data")), _text(raw.get("url")), _text(raw.get("title"))
        if content_type is None and data is None and url is None:
            return None
        return cls(content_type or "application/octet-stream", title, data, url)

    @property
    def has_inline_data(self) -> bool:
        return bool(self.data)

    def to_payload(self) -> dict[str, str]:
        """Only the four keys the simplified route accepts (§22.23)."""
        payload = {"contentType": self.content_type}
        for key, value in (("title", self.title), ("data", self.data), ("url", self.url)):
            if value:
                payload[key] = value
        return payload


@dataclass(frozen=True, slots=True)
class MediaLink:
    link_id: str
    comment: str | None = None

    @classmethod
    def parse(cls, value: object) -> Self | None:
        raw = _obj(value)
        link_id = _text(raw.get("linkId")) or _ref_id(raw.get("link"))
        return cls(link_id, _text(raw.get("comment"))) if link_id else None

    def to_payload(self) -> dict[str, str]:
        payload = {"linkId": self.link_id}
        if self.comment:
            payload["comment"] = self.comment
        return payload


# --------------------------------------------------------------------------------------------
# Envelope metadata (§4, §8)


@dataclass(frozen=True, slots=True)
class RateLimit:
    limit: int | None
    remaining: int | None
    reset_seconds: int | None

    @classmethod
    def parse(cls, meta: Mapping[str, Any], headers: httpx.Headers) -> Self | None:
        """Body `meta` first, headers as fallback, field by field (§4)."""
        limit = _int(meta.get("rateLimitTotal"))
        remaining = _int(meta.get("rateLimitRemaining"))
        reset = _int(meta.get("rateLimitReset"))
        parsed = cls(
            limit if limit is not None else _int(headers.get("x-ratelimit-limit")),
            remaining if remaining is not None else _int(headers.get("x-ratelimit-remaining")),
            reset if reset is not None else _int(headers.get("x-ratelimit-reset")),
        )
        if parsed.limit is None and parsed.remaining is None and parsed.reset_seconds is None:
            return None
        return parsed


@dataclass(frozen=True, slots=True)
class ResponseMeta:
    request_id: str | None
    timestamp: datetime | None
    status: int
    rate_limit: RateLimit | None = None

    @classmethod
    def parse(cls, meta: object, headers: httpx.Headers, status: int) -> Self:
        raw = _obj(meta)
        return cls(
            request_id=_text(raw.get("requestId")) or _text(headers.get("x-request-id")),
            timestamp=_datetime(raw.get("timestamp")) or _datetime(headers.get("x-timestamp")),
            status=status,
            rate_limit=RateLimit.parse(raw, headers),
        )


# --------------------------------------------------------------------------------------------
# Resources, parsed from the flat shape or its FHIR equivalent


def _require_id(raw: Mapping[str, Any]) -> str:
    resource_id = _text(raw.get("id"))
    if resource_id is None:
        raise UnexpectedResponse("ClinikAPI returned a resource without an id")
    return resource_id


def _patient_ref(raw: Mapping[str, Any]) -> str | None:
    return _text(raw.get("patientId")) or _ref_id(raw.get("subject")) or _ref_id(raw.get("patient"))


def _category_code(value: object) -> str | None:
    """Flat `"LAB"` or FHIR `category[0].coding[0].code`."""
    if isinstance(value, str):
        return _text(value)
    code = Code.parse(_first(value))
    return (code.code or code.display) if code else None


def _human_name(raw: Mapping[str, Any]) -> Mapping[str, Any]:
    names = [item for item in _seq(raw.get("name")) if isinstance(item, Mapping)]
    official = next((item for item in names if item.get("use") == "official"), None)
    return official or (names[0] if names else {})


def _join(*parts: str | None) -> str:
    return " ".join(part for part in parts if part)


@dataclass(frozen=True, slots=True)
class Patient:
    """§12 patient summary (flat) or FHIR Patient."""

    id: str
    full_name: str
    first_name: str = ""
    middle_name: str = ""
    last_name: str = ""
    birth_date: date | None = None
    gender: str | None = None
    active: bool | None = None

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> Self:
        name = _human_name(raw)
        given = _texts(name.get("given"))
        first = _text(raw.get("firstName")) or (given[0] if given else "")
        middle = _text(raw.get("middleName")) or " ".join(given[1:])
        last = _text(raw.get("lastName")) or _text(name.get("family")) or ""
        full = _text(raw.get("fullName")) or _text(name.get("text")) or _join(first, last)
        return cls(
            id=_require_id(raw),
            full_name=full,
            first_name=first,
            middle_name=middle,
            last_name=last,
            birth_date=_date(raw.get("birthDate")),
            gender=_text(raw.get("gender")),
            active=_bool(raw.get("active")),
        )


@dataclass(frozen=True, slots=True)
class Practitioner:
    """§15: flat (ASSUMPTION) or FHIR Practitioner."""

    id: str
    first_name: str | None = None
    last_name: str | None = None
    prefix: tuple[str, ...] = ()
    suffix: tuple[str, ...] = ()
    text_name: str | None = None
    specialty: str | None = None
    npi: str | None = None
    active: bool | None = None

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> Self:
        name = _human_name(raw)
        given = _texts(name.get("given"))
        identifiers = [item for item in _seq(raw.get("identifier")) if isinstance(item, Mapping)]
        npi_identifier = next(
            (item for item in identifiers if item.get("system") == NPI_SYSTEM), None
        )
        return cls(
            id=_require_id(raw),
            first_name=_text(raw.get("firstName")) or (" ".join(given) or None),
            last_name=_text(raw.get("lastName")) or _text(name.get("family")),
            prefix=_texts(raw.get("prefix")) or _texts(name.get("prefix")),
            suffix=_texts(raw.get("suffix")) or _texts(name.get("suffix")),
            text_name=_text(name.get("text")),
            specialty=_text(raw.get("specialty")),
            npi=_text(raw.get("npi")) or _text(_obj(npi_identifier).get("value")),
            active=_bool(raw.get("active")),
        )

    @property
    def display_name(self) -> str:
        """`Dr. Marta López, MD`; falls back to the FHIR name text, then the id."""
        name = _join(*self.prefix, self.first_name, self.last_name)
        if not (self.first_name or self.last_name):
            name = self.text_name or self.id
        return ", ".join((name, *self.suffix))


@dataclass(frozen=True, slots=True)
class Encounter:
    """§13."""

    id: str
    status: str | None = None
    encounter_class: str | None = None
    patient_id: str | None = None
    practitioner_id: str | None = None
    period: Period | None = None
    encounter_type: str | None = None
    location: str | None = None
    length_minutes: int | None = None

    @property
    def start_time(self) -> datetime | None:
        return self.period.start if self.period else None

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> Self:
        participant = _first(raw.get("participant"))
        location = _first(raw.get("location"))
        raw_type = raw.get("type")
        type_code = Code.parse(_first(raw_type) if isinstance(raw_type, list) else raw_type)
        return cls(
            id=_require_id(raw),
            status=_text(raw.get("status")),
            encounter_class=_category_code(raw.get("class")),
            patient_id=_patient_ref(raw),
            practitioner_id=(
                _text(raw.get("practitionerId")) or _ref_id(participant.get("individual"))
            ),
            period=Period.parse(raw.get("period")),
            encounter_type=type_code.label if type_code else None,
            location=(
                _text(raw.get("location"))
                or _text(_obj(location.get("location")).get("display"))
                or _ref_id(location.get("location"))
            ),
            length_minutes=(
                _int(raw.get("lengthMinutes")) or _int(_obj(raw.get("length")).get("value"))
            ),
        )


@dataclass(frozen=True, slots=True)
class ObservationComponent:
    code: Code | None
    value_quantity: Quantity | None = None
    value_string: str | None = None

    @property
    def value_display(self) -> str:
        if self.value_quantity is not None:
            return self.value_quantity.display
        return self.value_string or ""


@dataclass(frozen=True, slots=True)
class Observation:
    """§14 observation (a result a report groups)."""

    id: str
    status: str | None = None
    code: Code | None = None
    patient_id: str | None = None
    encounter_id: str | None = None
    specimen_id: str | None = None
    category: str | None = None
    effective_time: datetime | None = None
    issued_at: datetime | None = None
    value_quantity: Quantity | None = None
    value_string: str | None = None
    value_code: Code | None = None
    components: tuple[ObservationComponent, ...] = ()
    interpretation: str | None = None
    reference_range: ReferenceRange | None = None
    note: str | None = None
    updated_at: datetime | None = None

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> Self:
        interpretation = raw.get("interpretation")
        if not isinstance(interpretation, str):
            interpretation_code = Code.parse(_first(interpretation))
            interpretation = interpretation_code.code if interpretation_code else None
        period = Period.parse(raw.get("effectivePeriod"))
        effective = _datetime(raw.get("effectiveDateTime")) or (period.start if period else None)
        components = tuple(
            ObservationComponent(
                Code.parse(item.get("code")),
                Quantity.parse(item.get("valueQuantity")),
                _text(item.get("valueString")),
            )
            for item in _seq(raw.get("component"))
            if isinstance(item, Mapping)
        )
        return cls(
            id=_require_id(raw),
            status=_text(raw.get("status")),
            code=Code.parse(raw.get("code")),
            patient_id=_patient_ref(raw),
            encounter_id=_text(raw.get("encounterId")) or _ref_id(raw.get("encounter")),
            specimen_id=_text(raw.get("specimenId")) or _ref_id(raw.get("specimen")),
            category=_category_code(raw.get("category")),
            effective_time=effective,
            issued_at=_datetime(raw.get("issued")),
            value_quantity=Quantity.parse(raw.get("valueQuantity")),
            value_string=_text(raw.get("valueString")),
            value_code=Code.parse(raw.get("valueCodeableConcept")),
            components=components,
            interpretation=_text(interpretation),
            reference_range=ReferenceRange.parse(raw.get("referenceRange")),
            note=_note_text(raw.get("note")),
            updated_at=_datetime(raw.get("updatedAt"))
            or _datetime(_obj(raw.get("meta")).get("lastUpdated")),
        )

    @property
    def value_display(self) -> str:
        """The result as a person reads it: `11.2 g/dL`, a string, a coded value or components."""
        if self.value_quantity is not None:
            return self.value_quantity.display
        if self.value_string:
            return self.value_string
        if self.value_code is not None:
            return self.value_code.label
        return "; ".join(
            f"{component.code.label if component.code else '?'}: {component.value_display}"
            for component in self.components
        )

    @property
    def unit(self) -> str | None:
        return self.value_quantity.unit if self.value_quantity else None

    @property
    def is_critical(self) -> bool:
        return self.interpretation in CRITICAL_INTERPRETATIONS

    @property
    def is_abnormal(self) -> bool:
        return self.interpretation not in (None, "N")

    @property
    def reference_range_text(self) -> str:
        return self.reference_range.display if self.reference_range else ""


@dataclass(frozen=True, slots=True)
class Specimen:
    """§16 (response shape undocumented; flat ASSUMPTION, FHIR accepted)."""

    id: str
    status: str | None = None
    specimen_type: str | None = None
    patient_id: str | None = None
    collected_at: datetime | None = None
    received_at: datetime | None = None
    note: str | None = None

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> Self:
        specimen_type = Code.parse(raw.get("type"))
        return cls(
            id=_require_id(raw),
            status=_text(raw.get("status")),
            specimen_type=specimen_type.label if specimen_type else None,
            patient_id=_patient_ref(raw),
            collected_at=_datetime(_obj(raw.get("collection")).get("collectedDateTime")),
            received_at=_datetime(raw.get("receivedTime")),
            note=_note_text(raw.get("note")),
        )


@dataclass(frozen=True, slots=True)
class Lab:
    """§11.6 report object (a DiagnosticReport), flat or FHIR per the §11.6 mapping."""

    id: str
    status: str
    code: Code | None
    patient_id: str | None
    category: str | None = None
    encounter_id: str | None = None
    effective_date_time: datetime | None = None
    effective_period: Period | None = None
    result_ids: tuple[str, ...] = ()
    conclusion: str | None = None
    conclusion_codes: tuple[Code, ...] = ()
    performer: str | None = None
    results_interpreter: str | None = None
    specimen_ids: tuple[str, ...] = ()
    presented_form: tuple[Attachment, ...] = ()
    based_on: tuple[str, ...] = ()
    media: tuple[MediaLink, ...] = ()
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> Self:
        conclusion_codes = [
            Code.parse(item)
            for item in _seq(raw.get("conclusionCodes") or raw.get("conclusionCode"))
        ]
        attachments = [Attachment.parse(item) for item in _seq(raw.get("presentedForm"))]
        media = [MediaLink.parse(item) for item in _seq(raw.get("media"))]
        return cls(
            id=_require_id(raw),
            status=_text(raw.get("status")) or "unknown",
            code=Code.parse(raw.get("code")),
            patient_id=_patient_ref(raw),
            category=_category_code(raw.get("category")),
            encounter_id=_text(raw.get("encounterId")) or _ref_id(raw.get("encounter")),
            effective_date_time=_datetime(raw.get("effectiveDateTime")),
            effective_period=Period.parse(raw.get("effectivePeriod")),
            result_ids=_ref_ids(raw.get("resultIds") or raw.get("result")),
            conclusion=_text(raw.get("conclusion")),
            conclusion_codes=tuple(code for code in conclusion_codes if code is not None),
            performer=_actor(raw.get("performer")),
            results_interpreter=_actor(raw.get("resultsInterpreter")),
            specimen_ids=_ref_ids(raw.get("specimenIds") or raw.get("specimen")),
            presented_form=tuple(item for item in attachments if item is not None),
            based_on=_ref_ids(raw.get("basedOn")),
            media=tuple(item for item in media if item is not None),
            created_at=_datetime(raw.get("createdAt")),
            updated_at=_datetime(raw.get("updatedAt"))
            or _datetime(_obj(raw.get("meta")).get("lastUpdated")),
        )

    @property
    def effective_start(self) -> datetime | None:
        if self.effective_date_time is not None:
            return self.effective_date_time
        return self.effective_period.start if self.effective_period else None


@dataclass(frozen=True, slots=True)
class LabWrite:
    """What create and update return: the stored report plus the request id to record (SUB-03)."""

    lab: Lab
    meta: ResponseMeta


@dataclass(frozen=True, slots=True)
class Page[T]:
    """One page of a search (§5). `total` may be absent; follow `has_more` / `next_cursor`."""

    items: tuple[T, ...]
    total: int | None
    next_cursor: str | None
    has_more: bool
    meta: ResponseMeta


@dataclass(frozen=True, slots=True)
class Health:
    """§20 `GET /health`."""

    status: str
    timestamp: datetime | None

    @property
    def is_ok(self) -> bool:
        return self.status == "ok"


# --------------------------------------------------------------------------------------------
# What we send (§11.1, §11.4)


@dataclass(frozen=True, slots=True)
class NewLab:
    """A report to create. `to_payload()` is what the outbox stores and replays."""

    status: str
    code: Code | str
    patient_id: str
    category: str | None = None
    encounter_id: str | None = None
    effective_date_time: datetime | None = None
    effective_period: Period | None = None
    result_ids: tuple[str, ...] = ()
    conclusion: str | None = None
    conclusion_codes: tuple[Code, ...] = ()
    performer: str | None = None
    results_interpreter: str | None = None
    specimen_ids: tuple[str, ...] = ()
    presented_form: tuple[Attachment, ...] = ()
    based_on: tuple[str, ...] = ()
    media: tuple[MediaLink, ...] = ()

    def to_payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {}
        _put(payload, "status", self.status)
        _put(payload, "code", _code_payload(self.code))
        _put(payload, "patientId", self.patient_id)
        _put(payload, "category", self.category)
        _put(payload, "encounterId", self.encounter_id)
        if self.effective_date_time is not None:
            payload["effectiveDateTime"] = _utc_z(self.effective_date_time, "effectiveDateTime")
        if self.effective_period is not None:
            _put(payload, "effectivePeriod", self.effective_period.to_payload("effectivePeriod"))
        _put(payload, "resultIds", list(self.result_ids))
        _put(payload, "conclusion", self.conclusion)
        _put(payload, "conclusionCodes", [code.to_payload() for code in self.conclusion_codes])
        _put(payload, "performer", self.performer)
        _put(payload, "resultsInterpreter", self.results_interpreter)
        _put(payload, "specimenIds", list(self.specimen_ids))
        _put(payload, "presentedForm", [item.to_payload() for item in self.presented_form])
        _put(payload, "basedOn", list(self.based_on))
        _put(payload, "media", [item.to_payload() for item in self.media])
        return payload


@dataclass(frozen=True, slots=True)
class LabChanges:
    """A partial update (§11.4). `None` leaves a field alone; an empty tuple clears a list,
    because lists are replaced wholesale (resend the attachments you want to keep)."""

    status: str | None = None
    conclusion: str | None = None
    conclusion_codes: tuple[Code, ...] | None = None
    result_ids: tuple[str, ...] | None = None
    results_interpreter: str | None = None
    presented_form: tuple[Attachment, ...] | None = None
    effective_date_time: datetime | None = None
    effective_period: Period | None = None
    performer: str | None = None

    def to_payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {}
        _put(payload, "status", self.status)
        if self.conclusion is not None:
            payload["conclusion"] = self.conclusion
        if self.conclusion_codes is not None:
            payload["conclusionCodes"] = [code.to_payload() for code in self.conclusion_codes]
        if self.result_ids is not None:
            payload["resultIds"] = list(self.result_ids)
        _put(payload, "resultsInterpreter", self.results_interpreter)
        if self.presented_form is not None:
            payload["presentedForm"] = [item.to_payload() for item in self.presented_form]
        if self.effective_date_time is not None:
            payload["effectiveDateTime"] = _utc_z(self.effective_date_time, "effectiveDateTime")
        if self.effective_period is not None:
            payload["effectivePeriod"] = self.effective_period.to_payload("effectivePeriod")
        _put(payload, "performer", self.performer)
        return payload


# --------------------------------------------------------------------------------------------
# Pre-flight checks: refuse before any byte is sent


def _refuse(message: str, *issues: Issue, operation: str | None = None) -> RequestRefused:
    return RequestRefused(message, issues=issues, operation=operation)


def check_id(resource_id: str, field_name: str = "id") -> str:
    """§3: ids are opaque but limited to `[A-Za-z0-9._-]{1,128}`; dot-only ids would be
    collapsed as path segments by URL normalisation, so they are refused as well."""
    if (
        not isinstance(resource_id, str)
        or not _ID_PATTERN.fullmatch(resource_id)
        or set(resource_id) == {"."}
    ):
        raise _refuse(
            "An invalid resource id was refused",
            Issue(field_name, "must be 1-128 characters of A-Z a-z 0-9 . _ -"),
        )
    return resource_id


def _check_attachments(value: object, field_name: str) -> list[Issue]:
    if not isinstance(value, list | tuple):
        return [Issue(field_name, "must be a list")]
    issues: list[Issue] = []
    for index, item in enumerate(value):
        path = f"{field_name}.{index}"
        if not isinstance(item, Mapping):
            issues.append(Issue(path, "must be an object"))
            continue
        issues.extend(
            Issue(f"{path}.{key}", "is not accepted") for key in set(item) - ATTACHMENT_FIELDS
        )
        content_type = item.get("contentType")
        if not isinstance(content_type, str) or not content_type:
            issues.append(Issue(f"{path}.contentType", "Required"))
        data = item.get("data")
        if data is None:
            continue
        try:
            decoded = base64.b64decode(data, validate=True) if isinstance(data, str) else None
        except (binascii.Error, ValueError):
            decoded = None
        if not decoded:
            issues.append(Issue(f"{path}.data", "must be standard base64"))
        elif content_type == "application/pdf" and not decoded.startswith(b"%PDF-"):
            issues.append(Issue(f"{path}.data", "is not a PDF"))
    return issues


def _check_lab_payload(payload: Mapping[str, Any], *, creating: bool) -> None:
    issues: list[Issue] = []
    keys = set(payload)
    if creating:
        issues.extend(
            Issue(key, "Required")
            for key in ("status", "code", "patientId")
            if not payload.get(key)
        )
        issues.extend(
            Issue(key, "is not a report field") for key in sorted(keys - LAB_CREATE_FIELDS)
        )
    else:
        if not keys:
            issues.append(Issue("", "nothing to change"))
        issues.extend(
            Issue(key, "cannot be changed by an update; create a corrected report")
            for key in sorted(keys & LAB_NOT_UPDATABLE_FIELDS)
        )
        issues.extend(
            Issue(key, "is not a report field")
            for key in sorted(keys - LAB_UPDATABLE_FIELDS - LAB_NOT_UPDATABLE_FIELDS)
        )
    if "status" in payload and payload["status"] not in LAB_STATUSES:
        issues.append(Issue("status", "must be one of the report statuses"))
    if "category" in payload and payload["category"] not in LAB_CATEGORIES:
        issues.append(Issue("category", "must be LAB, RAD or PAT"))
    conclusion = payload.get("conclusion")
    if conclusion is not None and not isinstance(conclusion, str):
        issues.append(Issue("conclusion", "must be text"))
    elif conclusion is not None and len(conclusion) > MAX_CONCLUSION_CHARS:
        issues.append(
            Issue("conclusion", f"must contain at most {MAX_CONCLUSION_CHARS} characters")
        )
    if "presentedForm" in payload:
        issues.extend(_check_attachments(payload["presentedForm"], "presentedForm"))
    if issues:
        raise RequestRefused("The report was refused before sending", issues=issues)


def _json_default(value: object) -> object:
    if isinstance(value, datetime):
        return _utc_z(value, "date-time")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, frozenset | set):
        return sorted(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _encode_body(payload: Mapping[str, Any]) -> bytes:
    try:
        body = json.dumps(
            payload, default=_json_default, ensure_ascii=False, separators=(",", ":")
        ).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise _refuse("The request body could not be serialised") from exc
    if len(body) > MAX_BODY_BYTES:
        raise _refuse(
            "The request body is larger than ClinikAPI accepts",
            Issue("", f"body must be at most {MAX_BODY_BYTES} bytes; attach large files by url"),
        )
    return body


def _check_choice(value: str | None, allowed: frozenset[str], field_name: str) -> None:
    if value is not None and value not in allowed:
        raise _refuse("An invalid search filter was refused", Issue(field_name, "is not allowed"))


# --------------------------------------------------------------------------------------------
# Configuration


def _default_user_agent() -> str:
    try:
        version = metadata.version("clinikui")
    except metadata.PackageNotFoundError:
        version = "dev"
    return f"ClinikUI/{version}"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class ClientConfig:
    base_url: str
    api_key: str = field(repr=False)
    connect_timeout: float = 3.0  # SUB-09
    read_timeout: float = 15.0
    write_timeout: float = 15.0
    pool_timeout: float = 5.0
    deadline: float = 30.0  # overall per attempt: httpx's read timeout does not bound a slow drip
    max_read_retries: int = 2
    # A read is not retried when the server asks for a longer wait than this: a page view should
    # fail fast and show "try again" rather than hang (the outbox has its own policy).
    max_retry_wait: float = 10.0
    user_agent: str = field(default_factory=_default_user_agent)
    transport: httpx.BaseTransport | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "base_url", self.base_url.strip().rstrip("/"))
        parts = urlsplit(self.base_url)
        host = parts.hostname or ""
        if parts.scheme not in ("https", "http") or not host:
            raise Misconfigured("ClinikAPI base URL must be an absolute https:// URL")
        if parts.scheme == "http" and not (_is_loopback(host) or host == SANDBOX_HOST):
            raise Misconfigured("ClinikAPI base URL must use https:// (WEB-05)")
        if parts.username or parts.password or parts.query or parts.fragment:
            raise Misconfigured("ClinikAPI base URL must not carry credentials, query or fragment")
        if parts.path.rstrip("/").endswith("/v1"):
            raise Misconfigured("ClinikAPI base URL must not end in /v1; paths add it (§1)")
        if not self.api_key.startswith(_KEY_PREFIXES) or not API_KEY_PATTERN.fullmatch(
            self.api_key
        ):
            raise Misconfigured("ClinikAPI secret key is missing or not a clk_live_/clk_test_ key")
        timeouts = (
            self.connect_timeout,
            self.read_timeout,
            self.write_timeout,
            self.pool_timeout,
            self.deadline,
        )
        if not all(value > 0 for value in timeouts) or self.max_read_retries < 0:
            raise Misconfigured("ClinikAPI timeouts must be positive and retries not negative")

    def __repr__(self) -> str:
        return (
            f"ClientConfig(base_url={self.base_url!r}, api_key={_mask_key(self.api_key)!r},"
            f" timeouts=({self.connect_timeout}, {self.read_timeout}, {self.write_timeout},"
            f" {self.pool_timeout}), deadline={self.deadline},"
            f" max_read_retries={self.max_read_retries},"
            f" transport={type(self.transport).__name__ if self.transport else None})"
        )

    @property
    def is_live(self) -> bool:
        return self.api_key.startswith("clk_live_")

    @classmethod
    def from_settings(cls, source: Any = None) -> ClientConfig:
        """Build from Django settings (or any object with the same attributes, for tests).

        CLINIKAPI_BASE_URL (default production; "sandbox" = in-process emulator),
        CLINIKAPI_SECRET_KEY, CLINIKAPI_TIMEOUT (overall deadline), CLINIKAPI_CONNECT_TIMEOUT,
        CLINIKAPI_READ_TIMEOUT, CLINIKAPI_WRITE_TIMEOUT, CLINIKAPI_POOL_TIMEOUT,
        CLINIKAPI_MAX_RETRIES, CLINIKAPI_MAX_RETRY_WAIT.
        """
        if source is None:
            from django.conf import settings as source  # read settings only when asked

        def number(name: str, default: float) -> float:
            value = getattr(source, name, None)
            if value is None:
                return default
            try:
                return float(value)
            except (TypeError, ValueError) as exc:
                raise Misconfigured(f"{name} must be a number of seconds") from exc

        base_url = str(getattr(source, "CLINIKAPI_BASE_URL", None) or DEFAULT_BASE_URL)
        api_key = str(getattr(source, "CLINIKAPI_SECRET_KEY", None) or "")
        transport: httpx.BaseTransport | None = None
        if base_url == "sandbox":
            transport = build_sandbox_transport(
                search_lag_seconds=number("CLINIKAPI_SANDBOX_SEARCH_LAG", 0.0)
            )
            base_url = SANDBOX_BASE_URL
            # The emulator accepts any well-formed test key; a live key must never go there.
            api_key = api_key or "clk_test_sandbox"
            if api_key.startswith("clk_live_"):
                raise Misconfigured("A live ClinikAPI key must not be used with the sandbox")
        return cls(
            base_url=base_url,
            api_key=api_key,
            connect_timeout=number("CLINIKAPI_CONNECT_TIMEOUT", 3.0),
            read_timeout=number("CLINIKAPI_READ_TIMEOUT", 15.0),
            write_timeout=number("CLINIKAPI_WRITE_TIMEOUT", 15.0),
            pool_timeout=number("CLINIKAPI_POOL_TIMEOUT", 5.0),
            deadline=number("CLINIKAPI_TIMEOUT", 30.0),
            max_read_retries=int(number("CLINIKAPI_MAX_RETRIES", 2)),
            max_retry_wait=number("CLINIKAPI_MAX_RETRY_WAIT", 10.0),
            transport=transport,
        )


def _dropped_connection_error(exc: BaseException, request: httpx.Request) -> httpx.TransportError:
    """What httpx raises over a real socket for each of the emulator's drop modes: a reset
    (RST) surfaces as a read error, a close (FIN) or garbage bytes as a protocol error."""
    if getattr(exc, "mode", "close") == "reset":
        return httpx.ReadError("Connection reset by peer", request=request)
    return httpx.RemoteProtocolError(
        "Server disconnected without a valid response", request=request
    )


class _DroppableStream(httpx.SyncByteStream):
    """Turns the emulator's "connection dropped" exception raised mid-body into what a real
    dropped socket produces, so the failure is classified exactly as in production."""

    def __init__(
        self, stream: Iterable[bytes], request: httpx.Request, dropped: type[BaseException]
    ) -> None:
        self._stream = stream
        self._request = request
        self._dropped = dropped

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._stream
        except self._dropped as exc:
            raise _dropped_connection_error(exc, self._request) from exc

    def close(self) -> None:
        if isinstance(self._stream, httpx.SyncByteStream):
            self._stream.close()


class SandboxTransport(httpx.WSGITransport):
    """The in-process emulator behind a WSGI transport, with dropped connections translated."""

    def __init__(self, app: WSGIApplication, *, dropped: type[BaseException]) -> None:
        super().__init__(app=app)
        self._dropped = dropped

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        try:
            response = super().handle_request(request)
        except self._dropped as exc:
            raise _dropped_connection_error(exc, request) from exc
        stream = response.stream
        assert isinstance(stream, httpx.SyncByteStream)  # a WSGI app is synchronous
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=_DroppableStream(stream, request, self._dropped),
        )


def build_sandbox_transport(*, search_lag_seconds: float = 0.0) -> SandboxTransport:
    # The emulator is only imported when asked for, so production never loads it.
    try:
        from reports.sandbox import SandboxConnectionDropped, default_sandbox
    except ImportError as exc:
        raise Misconfigured("The in-process ClinikAPI sandbox could not be loaded") from exc
    sandbox = default_sandbox()
    sandbox.configure(search_lag_seconds=search_lag_seconds)
    return SandboxTransport(sandbox, dropped=SandboxConnectionDropped)


# --------------------------------------------------------------------------------------------
# Retry policy (SUB-06)


def clamp_wait(seconds: float) -> float:
    return min(max(seconds, MIN_RETRY_AFTER_SECONDS), MAX_RETRY_AFTER_SECONDS)


def _seconds(raw: str | None) -> float | None:
    if raw is None:
        return None
    text = raw.strip()
    try:
        value = float(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)  # Retry-After may also be an HTTP date
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        value = (when - datetime.now(UTC)).total_seconds()
    return value if math.isfinite(value) else None


def parse_retry_after(headers: httpx.Headers, *, rate_limited: bool) -> float | None:
    """Seconds to wait: `Retry-After`, else (for 429) `X-RateLimit-Reset`; clamped to
    [1 s, 15 min]. Unparseable values are ignored; None means "no hint, use backoff"."""
    names = ("retry-after", "x-ratelimit-reset") if rate_limited else ("retry-after",)
    for name in names:
        value = _seconds(headers.get(name))
        if value is not None:
            return clamp_wait(value)
    return None


def backoff_delay(attempt: int, *, retry_after: float | None, rng: random.Random) -> float:
    """Full-jitter backoff (base 1 s, cap 60 s), never earlier than the server's hint (SUB-06).

    `attempt` is 0 for the first retry.
    """
    ceiling = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** min(attempt, 32))
    delay = rng.uniform(0.0, ceiling)
    return max(delay, retry_after) if retry_after is not None else delay


# --------------------------------------------------------------------------------------------
# The client


# Failures where httpx had not yet handed the request to a server (SUB-04 "not sent").
_NOT_SENT_ERRORS: Final = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.ProxyError,
    httpx.UnsupportedProtocol,
)


@dataclass(frozen=True, slots=True)
class _Reply:
    data: Any  # the unwrapped `data` (or bare FHIR / health object); None for an empty body
    meta: ResponseMeta


class _HasId(Protocol):
    @property
    def id(self) -> str: ...


def _parse_issues(payload: Mapping[str, Any]) -> tuple[Issue, ...]:
    """§7.1: `issues`, else FHIR OperationOutcome `issue`; field = text before ": "."""
    raw_issues = payload.get("issues")
    if not isinstance(raw_issues, list):
        raw_issues = payload.get("issue")
    issues = []
    for item in _seq(raw_issues):
        raw = _obj(item)
        text = (
            _text(raw.get("diagnostics"))
            or _text(_obj(raw.get("details")).get("text"))
            or _text(raw.get("message"))
            or ""
        )
        field_name, separator, message = text.partition(": ")
        if not separator:
            expression = _texts(raw.get("expression")) or _texts(raw.get("path"))
            field_name, message = (expression[0] if expression else ""), text
        issues.append(Issue(field_name, message, _text(raw.get("severity")) or "error"))
    return tuple(issues)


def _error_from_response(
    status: int, headers: httpx.Headers, body: bytes, operation: str
) -> ClinikAPIError:
    try:
        payload = _obj(json.loads(body)) if body else {}
    except ValueError:
        payload = {}
    code = _text(payload.get("code"))
    message = (
        _text(payload.get("message"))
        or _text(payload.get("error"))
        or httpx.codes.get_reason_phrase(status)
        or None
    )
    request_id = (
        _text(payload.get("requestId"))
        or _text(_obj(payload.get("meta")).get("requestId"))
        or _text(headers.get("x-request-id"))
    )
    error_class: type[ClinikAPIError]
    if status >= 500:
        error_class = ServerError
    elif status == 429:
        error_class = QuotaExceeded if code in QUOTA_CODES else RateLimited
    elif status == 401:
        error_class = Unauthorized
    elif status == 403:
        error_class = Forbidden
    elif status == 404:
        error_class = NotFound
    elif status == 409:
        error_class = Conflict
    elif status == 422:
        error_class = ValidationFailed
    elif 400 <= status < 500:
        error_class = InvalidRequest
    else:
        error_class = UnexpectedResponse  # 1xx / 3xx: redirects are never followed (WEB-05)
    retry_after = None
    if error_class is not QuotaExceeded:
        retry_after = parse_retry_after(headers, rate_limited=error_class is RateLimited)
    return error_class(
        message,
        status=status,
        code=code,
        request_id=request_id,
        issues=_parse_issues(payload),
        retry_after=retry_after,
        operation=operation,
    )


def _query(**filters: object) -> dict[str, str]:
    """Drop unset filters; booleans as true/false, dates as YYYY-MM-DD (§3, §22.10)."""
    params: dict[str, str] = {}
    for name, value in filters.items():
        if value is None or value == "":
            continue
        if isinstance(value, bool):
            params[name] = "true" if value else "false"
        elif isinstance(value, datetime):
            params[name] = value.astimezone(UTC).date().isoformat()
        elif isinstance(value, date):
            params[name] = value.isoformat()
        elif name == "count" and isinstance(value, int):
            params[name] = str(min(max(value, 1), MAX_PAGE_SIZE))
        else:
            params[name] = str(value)
    return params


class ClinikAPI:
    """One pooled httpx.Client and one method per endpoint. Thread-safe; share one instance."""

    def __init__(
        self,
        config: ClientConfig,
        *,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self._sleep = sleep
        self._rng = rng if rng is not None else random.Random()
        self._clock = clock
        self._rate_lock = threading.Lock()
        self._last_rate_limit: RateLimit | None = None
        # Each httpx timeout is capped by the deadline, so no single phase outlives the attempt.
        self._timeout = httpx.Timeout(
            connect=min(config.connect_timeout, config.deadline),
            read=min(config.read_timeout, config.deadline),
            write=min(config.write_timeout, config.deadline),
            pool=min(config.pool_timeout, config.deadline),
        )
        self._http = httpx.Client(
            headers={
                "x-api-key": config.api_key,
                "User-Agent": config.user_agent,
                "Accept": "application/json",
            },
            timeout=self._timeout,
            follow_redirects=False,  # WEB-05
            verify=True,
            transport=config.transport,
        )

    def __repr__(self) -> str:
        return f"<ClinikAPI {self.config.base_url}>"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    @property
    def last_rate_limit(self) -> RateLimit | None:
        """The most recent rate-limit figures seen on any response (for SUB-07 throttling)."""
        with self._rate_lock:
            return self._last_rate_limit

    # ---- labs (§11)

    def create_lab(self, body: NewLab | Mapping[str, Any]) -> LabWrite:
        """§11.1 POST /v1/labs. Never retried here: a retried POST can duplicate a report (§9)."""
        payload = body.to_payload() if isinstance(body, NewLab) else dict(body)
        _check_lab_payload(payload, creating=True)
        reply = self._call("POST", "/v1/labs", body=payload, retry=False)
        return LabWrite(self._resource(reply, Lab.parse, "POST /v1/labs"), reply.meta)

    def get_lab(self, lab_id: str) -> Lab:
        """§11.2 GET /v1/labs/{id} (observations are read separately, §22.8)."""
        return self._get_resource("/v1/labs", lab_id, Lab.parse)

    def search_labs(
        self,
        *,
        patient_id: str | None = None,
        status: str | None = None,
        category: str | None = None,
        date_from: date | None = None,
        date_to: date | None = None,
        sort: str | None = None,
        count: int | None = None,
        cursor: str | None = None,
    ) -> Page[Lab]:
        """§11.3 GET /v1/labs. Eventually consistent (§6): never poll it to confirm a write."""
        _check_choice(status, LAB_STATUSES, "status")
        _check_choice(category, LAB_CATEGORIES, "category")
        return self._search(
            "/v1/labs",
            Lab.parse,
            patient_id=patient_id,
            # §22.9: the category filter may be ignored by the server, so it is re-applied here.
            keep=(lambda lab: lab.category == category) if category else None,
            params={
                "status": status,
                "category": category,
                "dateFrom": date_from,
                "dateTo": date_to,
                "sort": sort,
                "count": count,
                "cursor": cursor,
            },
        )

    def update_lab(self, lab_id: str, changes: LabChanges | Mapping[str, Any]) -> LabWrite:
        """§11.4 PATCH /v1/labs/{id}: partial object, lists replace. Not retried here; the
        outbox worker owns write retries."""
        check_id(lab_id)
        payload = changes.to_payload() if isinstance(changes, LabChanges) else dict(changes)
        _check_lab_payload(payload, creating=False)
        path = f"/v1/labs/{quote(lab_id, safe='')}"
        reply = self._call("PATCH", path, body=payload, retry=False)
        return LabWrite(self._resource(reply, Lab.parse, f"PATCH {path}"), reply.meta)

    def delete_lab(self, lab_id: str) -> ResponseMeta:
        """§11.5 DELETE /v1/labs/{id} → 204. A 404 raises NotFound; after a retried delete the
        caller may count it as success (§22.31)."""
        check_id(lab_id)
        return self._call("DELETE", f"/v1/labs/{quote(lab_id, safe='')}", retry=False).meta

    # ---- look-ups (§12-§16)

    def search_patients(
        self,
        *,
        name: str | None = None,
        birth_date: date | None = None,
        gender: str | None = None,
        active: bool | None = None,
        count: int | None = None,
        cursor: str | None = None,
    ) -> Page[Patient]:
        """§12 GET /v1/patients (name is a partial, case-insensitive match)."""
        _check_choice(gender, PATIENT_GENDERS, "gender")
        params = {"name": name, "birthDate": birth_date, "gender": gender, "active": active}
        return self._search(
            "/v1/patients", Patient.parse, params={**params, "count": count, "cursor": cursor}
        )

    def get_patient(self, patient_id: str) -> Patient:
        """§12 GET /v1/patients/{id} (plain read; no _revinclude, which lags like search)."""
        return self._get_resource("/v1/patients", patient_id, Patient.parse)

    def search_encounters(
        self,
        *,
        patient_id: str | None = None,
        status: str | None = None,
        date_from: date | None = None,
        date_to: date | None = None,
        sort: str | None = None,
        count: int | None = None,
        cursor: str | None = None,
    ) -> Page[Encounter]:
        """§13 GET /v1/encounters."""
        params = {"status": status, "dateFrom": date_from, "dateTo": date_to, "sort": sort}
        return self._search(
            "/v1/encounters",
            Encounter.parse,
            patient_id=patient_id,
            params={**params, "count": count, "cursor": cursor},
        )

    def get_encounter(self, encounter_id: str) -> Encounter:
        """§13 GET /v1/encounters/{id}."""
        return self._get_resource("/v1/encounters", encounter_id, Encounter.parse)

    def search_observations(
        self,
        *,
        patient_id: str | None = None,
        status: str | None = None,
        category: str | None = None,
        date_from: date | None = None,
        date_to: date | None = None,
        sort: str | None = None,
        count: int | None = None,
        cursor: str | None = None,
    ) -> Page[Observation]:
        """§14 GET /v1/observations (no encounterId/code filters: filter the items)."""
        params = {"status": status, "category": category, "dateFrom": date_from, "dateTo": date_to}
        return self._search(
            "/v1/observations",
            Observation.parse,
            patient_id=patient_id,
            # §22.35: category may be ignored by the server, so it is re-applied here.
            keep=(lambda observation: observation.category == category) if category else None,
            params={**params, "sort": sort, "count": count, "cursor": cursor},
        )

    def get_observation(self, observation_id: str) -> Observation:
        """§14 GET /v1/observations/{id}."""
        return self._get_resource("/v1/observations", observation_id, Observation.parse)

    def search_practitioners(
        self,
        *,
        name: str | None = None,
        specialty: str | None = None,
        npi: str | None = None,
        active: bool | None = None,
        count: int | None = None,
        cursor: str | None = None,
    ) -> Page[Practitioner]:
        """§15 GET /v1/practitioners (inactive ones only with active=False)."""
        params = {"name": name, "specialty": specialty, "npi": npi, "active": active}
        return self._search(
            "/v1/practitioners",
            Practitioner.parse,
            params={**params, "count": count, "cursor": cursor},
        )

    def get_practitioner(self, practitioner_id: str) -> Practitioner:
        """§15 GET /v1/practitioners/{id}."""
        return self._get_resource("/v1/practitioners", practitioner_id, Practitioner.parse)

    def search_specimens(
        self,
        *,
        patient_id: str | None = None,
        status: str | None = None,
        type: str | None = None,
        date_from: date | None = None,
        date_to: date | None = None,
        count: int | None = None,
        cursor: str | None = None,
    ) -> Page[Specimen]:
        """§16 GET /v1/specimens."""
        params = {"status": status, "type": type, "dateFrom": date_from, "dateTo": date_to}
        return self._search(
            "/v1/specimens",
            Specimen.parse,
            patient_id=patient_id,
            params={**params, "count": count, "cursor": cursor},
        )

    def get_specimen(self, specimen_id: str) -> Specimen:
        """§16 GET /v1/specimens/{id}."""
        return self._get_resource("/v1/specimens", specimen_id, Specimen.parse)

    def health(self) -> Health:
        """§20 GET /health: no key sent, no retry (it is the circuit breaker's single probe)."""
        reply = self._call("GET", "/health", retry=False, with_key=False, envelope=False)
        raw = _obj(reply.data)
        return Health(_text(raw.get("status")) or "unknown", _datetime(raw.get("timestamp")))

    # ---- plumbing

    def _get_resource[T](
        self, collection: str, resource_id: str, parse: Callable[[Mapping[str, Any]], T]
    ) -> T:
        check_id(resource_id)
        path = f"{collection}/{quote(resource_id, safe='')}"
        return self._resource(self._call("GET", path, retry=True), parse, f"GET {path}")

    @staticmethod
    def _resource[T](reply: _Reply, parse: Callable[[Mapping[str, Any]], T], operation: str) -> T:
        if not isinstance(reply.data, Mapping):
            raise UnexpectedResponse(
                "ClinikAPI returned no resource",
                operation=operation,
                request_id=reply.meta.request_id,
            )
        try:
            return parse(reply.data)
        except UnexpectedResponse as exc:
            raise UnexpectedResponse(
                exc.message, operation=operation, request_id=reply.meta.request_id
            ) from exc

    def _search[T: _HasId](
        self,
        path: str,
        parse: Callable[[Mapping[str, Any]], T],
        *,
        params: Mapping[str, object],
        patient_id: str | None = None,
        keep: Callable[[T], bool] | None = None,
    ) -> Page[T]:
        if patient_id is not None:
            check_id(patient_id, "patientId")
        query = _query(patientId=patient_id, **params)
        reply = self._call("GET", path, params=query, retry=True)
        data = reply.data
        total: int | None = None
        cursor: str | None = None
        has_more = False
        if isinstance(data, Mapping) and data.get("resourceType") == "Bundle":
            raw_items = [_obj(entry).get("resource") for entry in _seq(data.get("entry"))]
            total = _int(data.get("total"))
        elif isinstance(data, Mapping):
            raw_items = _seq(data.get("data"))
            total = _int(data.get("total"))
            cursor = _text(data.get("cursor")) or _text(data.get("nextCursor"))  # §5
            said_more = _bool(data.get("hasMore"))
            # No cursor means nowhere to go, whatever hasMore says; no hasMore: trust the cursor.
            has_more = cursor is not None and said_more is not False
        elif isinstance(data, list):
            raw_items = data
        else:
            raise UnexpectedResponse(
                "ClinikAPI returned no page",
                operation=f"GET {path}",
                request_id=reply.meta.request_id,
            )
        items: list[T] = []
        dropped = 0
        for raw in raw_items:
            # §5 defensive filtering: phantom rows without an id, rows of other patients.
            if not isinstance(raw, Mapping) or _text(raw.get("id")) is None:
                dropped += 1
                continue
            item = parse(raw)
            if patient_id is not None and getattr(item, "patient_id", None) != patient_id:
                dropped += 1
                continue
            if keep is not None and not keep(item):
                dropped += 1
                continue
            items.append(item)
        if dropped:
            logger.warning(
                "ClinikAPI GET %s: dropped %d unusable search rows (request %s)",
                path,
                dropped,
                reply.meta.request_id or "-",
                extra={"clinikapi_path": path, "clinikapi_request_id": reply.meta.request_id},
            )
        return Page(tuple(items), total, cursor, has_more, reply.meta)

    def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
        retry: bool,
        with_key: bool = True,
        envelope: bool = True,
    ) -> _Reply:
        content = _encode_body(body) if body is not None else None
        attempts = 1 + (self.config.max_read_retries if retry else 0)
        for attempt in range(attempts):
            try:
                return self._attempt(method, path, params, content, with_key, envelope)
            except ClinikAPIError as exc:
                if attempt + 1 >= attempts or not exc.retryable:
                    raise
                delay = backoff_delay(attempt, retry_after=exc.retry_after, rng=self._rng)
                if delay > self.config.max_retry_wait:
                    raise
                logger.info(
                    "ClinikAPI %s %s: retry %d in %.1f s after %s",
                    method,
                    path,
                    attempt + 1,
                    delay,
                    type(exc).__name__,
                    extra={"clinikapi_method": method, "clinikapi_path": path},
                )
                self._sleep(delay)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _attempt(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None,
        content: bytes | None,
        with_key: bool,
        envelope: bool,
    ) -> _Reply:
        operation = f"{method} {path}"
        started = self._clock()
        deadline_at = started + self.config.deadline
        try:
            request = self._http.build_request(
                method,
                self.config.base_url + path,
                params=params,
                content=content,
                headers={"Content-Type": "application/json"} if content is not None else None,
                timeout=self._timeout,
            )
        except httpx.InvalidURL as exc:
            raise RequestRefused("The request URL was refused", operation=operation) from exc
        if not with_key:
            del request.headers["x-api-key"]
        try:
            response = self._http.send(request, stream=True)
        except _NOT_SENT_ERRORS as exc:
            self._log_failure(operation, started, exc)
            raise NotSent(operation=operation) from exc
        except httpx.RequestError as exc:
            self._log_failure(operation, started, exc)
            raise OutcomeUnknown(operation=operation) from exc
        try:
            raw_body = self._read_body(response, deadline_at, operation)
        except ClinikAPIError as exc:
            self._log_failure(operation, started, exc, response.status_code)
            raise
        finally:
            response.close()

        status, headers = response.status_code, response.headers
        if not 200 <= status < 300:
            error = _error_from_response(status, headers, raw_body, operation)
            self._remember_rate_limit(RateLimit.parse({}, headers))
            self._log_response(operation, started, status, error.request_id)
            raise error
        try:
            parsed = json.loads(raw_body, parse_float=Decimal) if raw_body.strip() else None
        except ValueError as exc:
            request_id = _text(headers.get("x-request-id"))
            self._log_response(operation, started, status, request_id)
            raise UnexpectedResponse(
                "ClinikAPI sent a body that is not JSON",
                status=status,
                request_id=request_id,
                operation=operation,
            ) from exc
        data, raw_meta = parsed, None
        # §4: unwrap the envelope unless this is bare FHIR (passthrough) or an unwrapped object.
        if (
            envelope
            and isinstance(parsed, Mapping)
            and "data" in parsed
            and "resourceType" not in parsed
        ):
            data, raw_meta = parsed["data"], parsed.get("meta")
        meta = ResponseMeta.parse(raw_meta, headers, status)
        self._remember_rate_limit(meta.rate_limit)
        self._log_response(operation, started, status, meta.request_id)
        return _Reply(data, meta)

    def _read_body(self, response: httpx.Response, deadline_at: float, operation: str) -> bytes:
        """Stream the body, enforcing the overall deadline between chunks (SUB-09)."""
        buffer = bytearray()
        try:
            for chunk in response.iter_bytes():
                buffer += chunk
                if self._clock() > deadline_at:
                    raise DeadlineExceeded(status=response.status_code, operation=operation)
                if len(buffer) > MAX_RESPONSE_BYTES:
                    raise UnexpectedResponse(
                        "ClinikAPI sent an oversized response",
                        status=response.status_code,
                        operation=operation,
                    )
        except httpx.RequestError as exc:
            raise OutcomeUnknown(status=response.status_code, operation=operation) from exc
        return bytes(buffer)

    def _remember_rate_limit(self, rate_limit: RateLimit | None) -> None:
        if rate_limit is not None:
            with self._rate_lock:
                self._last_rate_limit = rate_limit

    def _elapsed_ms(self, started: float) -> int:
        return round((self._clock() - started) * 1000)

    def _log_response(
        self, operation: str, started: float, status: int, request_id: str | None
    ) -> None:
        # SEC-02: method, path (ids only, never the query: it can hold names and birth dates),
        # status, request id, elapsed time. Never headers or bodies.
        elapsed_ms = self._elapsed_ms(started)
        logger.log(
            logging.INFO if status < 400 else logging.WARNING,
            "ClinikAPI %s -> %d in %d ms (request %s)",
            operation,
            status,
            elapsed_ms,
            request_id or "-",
            extra={
                "clinikapi_operation": operation,
                "clinikapi_status": status,
                "clinikapi_request_id": request_id,
                "clinikapi_elapsed_ms": elapsed_ms,
            },
        )

    def _log_failure(
        self, operation: str, started: float, exc: Exception, status: int | None = None
    ) -> None:
        elapsed_ms = self._elapsed_ms(started)
        logger.warning(
            "ClinikAPI %s failed after %d ms: %s",
            operation,
            elapsed_ms,
            type(exc).__name__,
            extra={
                "clinikapi_operation": operation,
                "clinikapi_status": status,
                "clinikapi_elapsed_ms": elapsed_ms,
                "clinikapi_error": type(exc).__name__,
            },
        )


def iter_all[T: _HasId](
    search: Callable[..., Page[T]], *, limit: int | None = None, **filters: Any
) -> Iterator[T]:
    """Every item of a search, following `cursor` while `has_more` (§5).

    The search method already drops phantom rows and rows of other patients; this also skips
    ids already yielded (offset cursors shift when the index changes between pages) and stops
    if the server hands back a cursor it already gave.
    """
    cursor: str | None = filters.pop("cursor", None)
    seen_cursors: set[str | None] = {cursor}
    seen_ids: set[str] = set()
    while True:
        page = search(cursor=cursor, **filters)
        for item in page.items:
            if item.id in seen_ids:
                continue
            seen_ids.add(item.id)
            yield item
            if limit is not None and len(seen_ids) >= limit:
                return
        if not page.has_more or page.next_cursor in seen_cursors:
            return
        cursor = page.next_cursor
        seen_cursors.add(cursor)


# --------------------------------------------------------------------------------------------
# The process-wide client


_default_client: ClinikAPI | None = None
_default_lock = threading.Lock()


def get_client() -> ClinikAPI:
    """The shared client built from settings (lazily, once per process, thread-safe)."""
    global _default_client
    client = _default_client
    if client is None:
        with _default_lock:
            if _default_client is None:
                _default_client = ClinikAPI(ClientConfig.from_settings())
            client = _default_client
    return client


def reset_client() -> None:
    """Close the shared client; the next `get_client()` builds a fresh one from settings."""
    global _default_client
    with _default_lock:
        client, _default_client = _default_client, None
    if client is not None:
        client.close()


def _on_setting_changed(*, setting: str, **kwargs: Any) -> None:
    if setting.startswith("CLINIKAPI_"):
        reset_client()


setting_changed.connect(_on_setting_changed, dispatch_uid="reports.clinikapi.reset_client")
