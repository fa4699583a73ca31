"""Structural validation of the PDFs clinicians attach to reports (RELIABILITY FILE-01..03).

An upload is hostile until proven otherwise. `validate_pdf` is what the application calls: it
does the cheap envelope checks here (name, size, `%PDF-` at byte 0, `%%EOF` at the end), then
parses the file with qpdf (pikepdf) in a child process held to CPU-time, address-space and
wall-clock limits, because the parser is C++ facing attacker-chosen bytes. Anything that goes
wrong in the child — a crash, a limit hit, a timeout, unreadable output — rejects the file.

`validate_pdf_in_process` is the same check without the sandbox: for unit tests, benchmarks
and the child itself. Nothing here sanitises or rewrites a file: the stored attachment is
exactly the uploaded bytes, whose SHA-256 becomes part of the signed content (FILE-02).

Decisions worth knowing:

* Files qpdf would have to repair are rejected. The file is opened with `attempt_recovery=False`
  (no rebuilt cross-reference table) and any qpdf warning during the check — a wrong stream
  length, an unreadable object, a broken page tree — rejects it as damaged. A file that viewers
  disagree about is exactly what a shadow attack needs, and a clinician can re-save a damaged
  PDF in seconds.
* Dangerous features are found by walking the parsed object graph — the trailer and every
  object in the cross-reference table, those inside object streams included, each nested
  array and dictionary, cycles cut by object number — never by searching bytes. qpdf decodes
  `#xx` escapes in names, so `/J#61vaScript` is seen as `/JavaScript`.
* Links are allowed, because lab and radiology reports cite guidelines: only `/GoTo` (inside
  the document), `/URI` with an `http`, `https` or `mailto` address, and the four standard
  page-turning `/Named` actions. Every other action type is refused, unknown ones included.
* The decoded-size cap counts what the generic filters produce. Flate, RunLength, ASCIIHex and
  ASCII85 are decoded here, Flate in 1 MiB chunks, stopping as soon as the cap is passed, so
  a zip bomb never inflates. Image codecs (DCT, JPX, JBIG2, CCITT) are counted at their encoded
  size: their pixels are decoded by the viewer, not by us, and counting pixels would refuse
  ordinary multi-page scans. The rare LZW streams are decoded by qpdf in one piece and counted
  afterwards (the child's address-space limit bounds that allocation); a filter qpdf cannot
  apply (LZW before an image codec, Crypt, an unknown name) rejects the file as damaged.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import dataclasses
import hashlib
import io
import json
import math
import os
import re
import resource
import subprocess
import sys
import unicodedata
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Final

import pikepdf

# --- limits -----------------------------------------------------------------------------------

# ClinikAPI's SDK refuses a serialized body longer than 1,048,576 characters (CONTRACT §4, §11.8),
# and attachments travel inside that body as standard base64, which turns every 3 raw bytes
# (or the last 1–2) into 4 characters.
CLINIKAPI_BODY_LIMIT: Final = 1_048_576
# Room kept for the rest of the report JSON: a 5,000-character conclusion escaped at its worst
# (astral characters as two `\uXXXX` escapes, 12 characters each: 60,000) plus ~38 KB for codes
# with displays, result and specimen references, dates, keys and the attachment wrappers
# (`{"contentType": "application/pdf", "title": …, "data": …}`).
REPORT_JSON_ROOM: Final = 96 * 1024  # 98,304
# The signed report PDF (reports.signed_pdf renders it) travels in the same body as one more
# presentedForm entry; the renderer refuses to produce a larger one. Its base64 takes
# 4 × ceil(131,072 / 3) = 174,764 characters.
SIGNED_PDF_MAX_BYTES: Final = 128 * 1024  # 131,072
# The largest raw size whose base64 fits what is left:
# 1,048,576 − 98,304 − 174,764 = 775,508 base64 characters → 775,508 / 4 × 3 = 581,631 raw bytes
# (about 582 KB; CONTRACT §11.8 says "below ~700 KB" for everything inline). 4 × ceil(581,631 / 3)
# = 775,508, and 98,304 + 174,764 + 775,508 = 1,048,576 exactly. This is the budget for all of a
# report's own inline attachments together; pass what is left as `max_bytes`.
MAX_ATTACHMENT_BYTES: Final = (
    (CLINIKAPI_BODY_LIMIT - REPORT_JSON_ROOM - 4 * math.ceil(SIGNED_PDF_MAX_BYTES / 3)) // 4 * 3
)

MAX_PAGES: Final = 200
MAX_DECODED_BYTES: Final = 50_000_000


@dataclasses.dataclass(frozen=True)
class SandboxLimits:
    """What the validating child process may use before it is stopped (FILE-03)."""

    cpu_seconds: int = 5
    memory_bytes: int = 512 * 1024 * 1024
    wall_seconds: float = 10.0


SANDBOX_LIMITS: Final = SandboxLimits()


# --- results ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ValidatedPDF:
    """A PDF that passed every check; `filename` is safe to show and to offer as a download."""

    sha256: str
    size: int
    page_count: int
    filename: str


class PDFRejected(Exception):
    """The file is refused. `message` is for the clinician, `code` for programs and logs,
    `detail` (where in the file, what qpdf said) for logs only."""

    def __init__(self, code: str, message: str, *, detail: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.detail = detail


# Stable machine codes, one per kind of refusal.
REJECTION_CODES: Final = frozenset(
    {
        "not-pdf-name",
        "empty",
        "too-big",
        "not-pdf",
        "truncated",
        "trailing-data",
        "damaged",
        "encrypted",
        "no-pages",
        "too-many-pages",
        "too-much-content",
        "javascript",
        "automatic-action",
        "launch",
        "embedded-file",
        "form",
        "other-document",
        "multimedia",
        "external-content",
        "action",
        "link",
        "could-not-check",
    }
)

_RESAVE = " Save it again with “Print to PDF” and attach the new file."

# Every name FILE-02 lists, refused wherever it appears as a dictionary key or a name value,
# with the clinician-fit reason.
_FORBIDDEN_NAMES: Final[dict[str, tuple[str, str]]] = {
    "/JS": ("javascript", "This PDF contains JavaScript, which ClinikUI does not accept."),
    "/JavaScript": ("javascript", "This PDF contains JavaScript, which ClinikUI does not accept."),
    "/OpenAction": (
        "automatic-action",
        "This PDF runs an action when it is opened, which ClinikUI does not accept.",
    ),
    "/AA": (
        "automatic-action",
        "This PDF runs actions automatically (on opening a page, clicking or closing), "
        "which ClinikUI does not accept.",
    ),
    "/Launch": ("launch", "This PDF can start other programs, which ClinikUI does not accept."),
    "/EmbeddedFile": (
        "embedded-file",
        "This PDF contains embedded files, which ClinikUI does not accept.",
    ),
    "/EmbeddedFiles": (
        "embedded-file",
        "This PDF contains embedded files, which ClinikUI does not accept.",
    ),
    "/RichMedia": (
        "multimedia",
        "This PDF contains video, sound or 3D content, which ClinikUI does not accept.",
    ),
    "/XFA": ("form", "This PDF contains a fillable form, which ClinikUI does not accept."),
    "/AcroForm": ("form", "This PDF contains a fillable form, which ClinikUI does not accept."),
    "/SubmitForm": (
        "form",
        "This PDF can send form data over the internet, which ClinikUI does not accept.",
    ),
    "/ImportData": (
        "form",
        "This PDF can load data from another file, which ClinikUI does not accept.",
    ),
    "/GoToR": (
        "other-document",
        "This PDF opens other documents, which ClinikUI does not accept.",
    ),
    "/GoToE": (
        "other-document",
        "This PDF opens documents embedded in it, which ClinikUI does not accept.",
    ),
}

_MULTIMEDIA: Final = (
    "multimedia",
    "This PDF contains video, sound, 3D or attached-file content, which ClinikUI does not accept.",
)
# Refused as name values only (they are annotation subtypes, action types and media object
# types): as keys they only appear inside objects that one of these values already marks.
_FORBIDDEN_VALUES: Final[dict[str, tuple[str, str]]] = {
    "/FileAttachment": _FORBIDDEN_NAMES["/EmbeddedFiles"],
    "/Screen": _MULTIMEDIA,
    "/Movie": _MULTIMEDIA,
    "/Sound": _MULTIMEDIA,
    "/Rendition": _MULTIMEDIA,
    "/3D": _MULTIMEDIA,
    "/RichMediaExecute": _MULTIMEDIA,
    "/GoTo3DView": _MULTIMEDIA,
}

_ALLOWED_ACTIONS: Final = frozenset({"/GoTo", "/URI", "/Named"})
_ALLOWED_NAMED_ACTIONS: Final = frozenset({"/NextPage", "/PrevPage", "/FirstPage", "/LastPage"})
# Browsers drop ASCII whitespace and controls anywhere in a scheme (`java\tscript:`), so they are
# removed before the scheme is read.
_URI_IGNORED: Final = re.compile(r"[\x00-\x20\x7f]")
_ALLOWED_URI: Final = re.compile(r"(?:https?|mailto):", re.IGNORECASE)

_FLATE: Final = frozenset({"/FlateDecode", "/Fl"})
_ASCII_HEX: Final = frozenset({"/ASCIIHexDecode", "/AHx"})
_ASCII_85: Final = frozenset({"/ASCII85Decode", "/A85"})
_RUN_LENGTH: Final = frozenset({"/RunLengthDecode", "/RL"})
_IMAGE_CODECS: Final = frozenset(
    {"/DCTDecode", "/DCT", "/JPXDecode", "/JBIG2Decode", "/CCITTFaxDecode", "/CCF"}
)
# Whitespace as ISO 32000-1 Table 1 defines it: NUL, TAB, LF, FF, CR, SPACE.
_PDF_WHITESPACE: Final = b"\x00\t\n\x0c\r "
_INFLATE_CHUNK: Final = 1 << 20


# --- sizes and names --------------------------------------------------------------------------


def human_size(size: int, *, round_up: bool = False) -> str:
    """`size` bytes in decimal units for messages: "850 bytes", "4.2 KB", "713 KB", "1.3 MB".

    Rounds down by default, so a limit is never overstated; pass `round_up=True` for the size of
    a refused file, so it never reads as equal to the limit it exceeds.
    """
    step = math.ceil if round_up else math.floor
    if size < 1000:
        return f"{size} bytes"
    for unit, scale in (("KB", 1000), ("MB", 1000**2), ("GB", 1000**3)):
        if size < scale * 1000 or unit == "GB":
            value = size / scale
            if value < 10:
                return f"{step(value * 10) / 10:.1f} {unit}"
            return f"{step(value)} {unit}"
    raise AssertionError("unreachable")


def sanitize_filename(name: str) -> str:
    """The upload's name made safe to display and to put in a Content-Disposition header.

    Keeps the last path component, drops control and bidirectional-format characters (a U+202E
    between `evil` and `fdp.exe` makes that name look like `evilexe.pdf`; written out here, never
    as the character itself, which bandit B613 flags as a Trojan Source hazard), replaces
    characters that are special in file systems or headers, and shortens long names while keeping
    the `.pdf` extension.
    Raises `PDFRejected` when what is left does not end in `.pdf`.
    """
    text = unicodedata.normalize("NFC", name)
    text = re.split(r"[/\\]", text)[-1]
    text = "".join(ch for ch in text if unicodedata.category(ch)[0] not in {"C"})
    text = re.sub(r'[<>:"|?*;\x7f]', "_", text)
    # Trailing dots and spaces are dropped (Windows does too); leading ones stay until the
    # extension is read, so ".pdf" is a nameless PDF rather than a file called "pdf".
    text = re.sub(r"\s+", " ", text).strip(" ").rstrip(" .")
    stem, dot, extension = text.rpartition(".")
    if not dot or extension.lower() != "pdf":
        raise PDFRejected(
            "not-pdf-name",
            "Only PDF files (ending in .pdf) can be attached.",
            detail=f"name {name[:100]!r}",
        )
    stem = stem.strip(" .")[:120].rstrip(" .") or "attachment"
    return f"{stem}.pdf"


# --- the checks -------------------------------------------------------------------------------


def validate_pdf(
    data: bytes,
    *,
    filename: str,
    max_bytes: int = MAX_ATTACHMENT_BYTES,
    limits: SandboxLimits = SANDBOX_LIMITS,
) -> ValidatedPDF:
    """Check an uploaded PDF, parsing it in a resource-limited child process (FILE-01..03).

    Raises `PDFRejected`; a child that crashes, times out or hits a limit rejects the file
    with code "could-not-check".
    """
    display_name = sanitize_filename(filename)
    _check_envelope(data, max_bytes=max_bytes)
    page_count = _check_structure_in_child(data, limits=limits)
    return ValidatedPDF(
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        page_count=page_count,
        filename=display_name,
    )


def validate_pdf_in_process(
    data: bytes, *, filename: str, max_bytes: int = MAX_ATTACHMENT_BYTES
) -> ValidatedPDF:
    """The same checks as `validate_pdf`, run in this process without limits: for tests,
    benchmarks and the sandbox child only. Raises `PDFRejected`."""
    display_name = sanitize_filename(filename)
    _check_envelope(data, max_bytes=max_bytes)
    page_count = check_structure(data)
    return ValidatedPDF(
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
        page_count=page_count,
        filename=display_name,
    )


def _check_envelope(data: bytes, *, max_bytes: int) -> None:
    """Size and the byte-level frame of FILE-01; cheap, so done before any parsing."""
    if not data:
        raise PDFRejected("empty", "This file is empty.")
    if len(data) > max_bytes:
        raise PDFRejected(
            "too-big",
            f"This file is {human_size(len(data), round_up=True)}; attachments can be at most "
            f"{human_size(max_bytes)} so the report fits ClinikAPI's 1 MiB limit.",
            detail=f"{len(data)} > {max_bytes} bytes",
        )
    if not data.startswith(b"%PDF-"):
        raise PDFRejected("not-pdf", "This file is not a PDF.", detail=repr(data[:8]))
    if not data.rstrip(_PDF_WHITESPACE).endswith(b"%%EOF"):
        if b"%%EOF" in data:
            raise PDFRejected(
                "trailing-data",
                "This PDF has extra data after its end, which ClinikUI does not accept." + _RESAVE,
                detail=f"{len(data) - data.rindex(b'%%EOF') - 5} bytes after the last %%EOF",
            )
        raise PDFRejected(
            "truncated",
            "This PDF is incomplete: it may not have finished saving or downloading.",
        )


def check_structure(data: bytes) -> int:
    """Parse `data` with qpdf and walk every object (FILE-01, FILE-02); return the page count.

    Expects the envelope checked already. Raises `PDFRejected`.
    """
    try:
        pdf = pikepdf.open(io.BytesIO(data), attempt_recovery=False)
    except pikepdf.PasswordError as exc:
        raise PDFRejected("encrypted", "This PDF is password-protected.") from exc
    except pikepdf.PdfError as exc:
        raise _damaged(str(exc)) from exc
    with pdf:
        # An owner-password-only file opens without a password but is still encrypted (and its
        # "permissions" are advisory); we store only files anyone can read in full.
        if pdf.is_encrypted:
            raise PDFRejected("encrypted", "This PDF is password-protected.")
        try:
            page_count = len(pdf.pages)
            _walk(pdf)
        except PDFRejected:
            raise
        except (pikepdf.PdfError, ValueError, TypeError, KeyError) as exc:
            raise _damaged(str(exc)) from exc
        warnings = pdf.get_warnings()
        if warnings:
            raise _damaged("; ".join(str(w) for w in warnings))
    if page_count == 0:
        raise PDFRejected("no-pages", "This PDF has no pages.")
    if page_count > MAX_PAGES:
        raise PDFRejected(
            "too-many-pages",
            f"This PDF has {page_count} pages; attachments can have at most {MAX_PAGES}.",
        )
    return page_count


def _damaged(detail: str) -> PDFRejected:
    return PDFRejected(
        "damaged", "This PDF is damaged and cannot be read reliably." + _RESAVE, detail=detail[:500]
    )


ObjGen = tuple[int, int]
_DIRECT: Final[ObjGen] = (0, 0)


def _walk(pdf: pikepdf.Pdf) -> None:
    """Visit the trailer and every object once, nested values included, without recursion
    (deep nesting cannot exhaust the stack) and cutting reference cycles by object number.

    Each stacked value carries the number of the object that holds it, for the log detail."""
    decoded_budget = MAX_DECODED_BYTES
    seen: set[ObjGen] = set()
    stack: list[tuple[object, ObjGen]] = [(pdf.trailer, _DIRECT)]
    stack.extend((obj, _DIRECT) for obj in pdf.objects)
    while stack:
        obj, owner = stack.pop()
        # pikepdf hands out numbers, booleans and null as Python values: nothing to check.
        if not isinstance(obj, pikepdf.Object):
            continue
        if obj.is_indirect:
            owner = obj.objgen
            if owner in seen:
                continue
            seen.add(owner)
        kind = obj._type_code
        if kind == pikepdf.ObjectType.name_:
            _check_name(str(obj), owner)
        elif kind == pikepdf.ObjectType.array:
            stack.extend((item, owner) for item in obj)
        elif kind in (pikepdf.ObjectType.dictionary, pikepdf.ObjectType.stream):
            for key, value in obj.items():
                if key in _FORBIDDEN_NAMES:
                    raise _forbidden(_FORBIDDEN_NAMES[key], key, owner)
                if key in ("/A", "/Next"):
                    _check_actions(value, owner)
                stack.append((value, owner))
            if obj.get("/Type") == pikepdf.Name.Action:
                _check_actions(obj, owner)
            if kind == pikepdf.ObjectType.stream:
                if "/F" in obj.stream_dict:
                    raise PDFRejected(
                        "external-content",
                        "This PDF takes content from other files, which ClinikUI does not accept.",
                        detail=_where(owner),
                    )
                decoded_budget -= _decoded_length(obj, limit=decoded_budget, owner=owner)


def _is(value: object, kind: pikepdf.ObjectType) -> bool:
    return isinstance(value, pikepdf.Object) and value._type_code == kind


def _check_name(name: str, owner: ObjGen) -> None:
    reason = _FORBIDDEN_NAMES.get(name) or _FORBIDDEN_VALUES.get(name)
    if reason is not None:
        raise _forbidden(reason, name, owner)


def _forbidden(reason: tuple[str, str], name: str, owner: ObjGen) -> PDFRejected:
    code, message = reason
    return PDFRejected(code, message, detail=f"{name} in {_where(owner)}")


def _where(owner: ObjGen) -> str:
    return "the trailer" if owner == _DIRECT else f"object {owner[0]} {owner[1]}"


def _check_actions(value: object, owner: ObjGen) -> None:
    """An action (a `/A` or `/Next` value, or a dictionary typed /Action) must be one we allow.

    `/A` also names structure attributes and movie activations, which carry no `/S` name:
    those are left to the walk."""
    if not isinstance(value, pikepdf.Object):
        return
    actions = value if value._type_code == pikepdf.ObjectType.array else [value]
    for action in actions:
        if not _is(action, pikepdf.ObjectType.dictionary):
            continue
        where = action.objgen if action.is_indirect else owner
        kind = action.get("/S")
        if not _is(kind, pikepdf.ObjectType.name_):
            continue
        name = str(kind)
        _check_name(name, where)
        if name not in _ALLOWED_ACTIONS:
            raise PDFRejected(
                "action",
                "This PDF contains an interactive action ClinikUI does not accept." + _RESAVE,
                detail=f"{name} action in {_where(where)}",
            )
        if name == "/Named" and str(action.get("/N")) not in _ALLOWED_NAMED_ACTIONS:
            raise PDFRejected(
                "action",
                "This PDF contains an interactive action ClinikUI does not accept." + _RESAVE,
                detail=f"named action {action.get('/N')} in {_where(where)}",
            )
        if name == "/URI":
            _check_uri(action.get("/URI"), where)


def _check_uri(uri: object, owner: ObjGen) -> None:
    text = str(uri) if _is(uri, pikepdf.ObjectType.string) else ""
    if not _ALLOWED_URI.match(_URI_IGNORED.sub("", text)):
        raise PDFRejected(
            "link",
            "This PDF contains a link ClinikUI does not accept: only web (http, https) and "
            "e-mail links are allowed.",
            detail=f"URI {text[:80]!r} in {_where(owner)}",
        )


def _filters(stream: pikepdf.Object, owner: ObjGen) -> list[str]:
    value = stream.stream_dict.get("/Filter")
    if value is None:
        return []
    items = value if _is(value, pikepdf.ObjectType.array) else [value]
    names = [str(item) for item in items if _is(item, pikepdf.ObjectType.name_)]
    if len(names) != len(items):
        raise _damaged(f"malformed /Filter in {_where(owner)}")
    return names


def _decoded_length(stream: pikepdf.Object, *, limit: int, owner: ObjGen) -> int:
    """How many bytes the stream's generic filters produce, refusing past `limit` without
    ever holding more than `limit` (+ one chunk) decoded bytes."""
    filters = _filters(stream, owner)
    generic = next(
        (filters[:index] for index, name in enumerate(filters) if name in _IMAGE_CODECS),
        filters,
    )
    data = stream.read_raw_bytes()
    for index, name in enumerate(generic):
        if name in _FLATE:
            chunks = _inflate(data, limit=limit, owner=owner)
            if index == len(generic) - 1:
                # The last stage: only its length matters, so nothing is kept.
                return sum(len(chunk) for chunk in chunks)
            data = b"".join(chunks)
        elif name in _ASCII_HEX:
            data = _ascii_hex_decode(data, owner=owner)
        elif name in _ASCII_85:
            data = _ascii85_decode(data, owner=owner)
        elif name in _RUN_LENGTH:
            data = _run_length_decode(data, limit=limit, owner=owner)
        else:
            # LZW or a filter qpdf cannot apply (Crypt, unknown): qpdf decodes the whole chain
            # or we refuse the file; see the module notes.
            try:
                data = stream.read_bytes(decode_level=pikepdf.StreamDecodeLevel.generalized)
            except pikepdf.PdfError as exc:
                raise _damaged(str(exc)) from exc
            _charge(len(data), limit=limit, owner=owner)
            break
        _charge(len(data), limit=limit, owner=owner)
    return len(data)


def _charge(size: int, *, limit: int, owner: ObjGen) -> None:
    if size > limit:
        raise PDFRejected(
            "too-much-content",
            f"This PDF expands to more than {human_size(MAX_DECODED_BYTES)} when opened, "
            "which ClinikUI does not accept.",
            detail=f"decoded-size cap reached at {_where(owner)}",
        )


def _inflate(data: bytes, *, limit: int, owner: ObjGen) -> Iterator[bytes]:
    """Inflate in bounded chunks, stopping as soon as the output passes `limit`."""
    inflater = zlib.decompressobj()
    produced = 0
    pending = data
    try:
        while pending and not inflater.eof:
            chunk = inflater.decompress(pending, _INFLATE_CHUNK)
            pending = inflater.unconsumed_tail
            produced += len(chunk)
            _charge(produced, limit=limit, owner=owner)
            yield chunk
        chunk = inflater.flush()
    except zlib.error as exc:
        raise _damaged(f"bad Flate data in {_where(owner)}: {exc}") from exc
    _charge(produced + len(chunk), limit=limit, owner=owner)
    yield chunk


def _ascii_hex_decode(data: bytes, *, owner: ObjGen) -> bytes:
    digits = re.sub(rb"[\x00\t\n\x0c\r ]", b"", data.split(b">", 1)[0])
    if len(digits) % 2:
        digits += b"0"
    try:
        return binascii.unhexlify(digits)
    except binascii.Error as exc:
        raise _damaged(f"bad ASCIIHex data in {_where(owner)}") from exc


def _run_length_decode(data: bytes, *, limit: int, owner: ObjGen) -> bytes:
    out = bytearray()
    position = 0
    while position < len(data):
        length = data[position]
        if length == 128:  # end of data
            break
        if length < 128:  # copy the next length + 1 bytes
            out += data[position + 1 : position + 2 + length]
            position += 2 + length
        else:  # repeat the next byte 257 - length times
            out += data[position + 1 : position + 2] * (257 - length)
            position += 2
        _charge(len(out), limit=limit, owner=owner)
    return bytes(out)


def _ascii85_decode(data: bytes, *, owner: ObjGen) -> bytes:
    body = data.split(b"~>", 1)[0].removeprefix(b"<~")
    try:
        return base64.a85decode(body, ignorechars=_PDF_WHITESPACE)
    except ValueError as exc:
        raise _damaged(f"bad ASCII85 data in {_where(owner)}") from exc


# --- the sandbox ------------------------------------------------------------------------------


def _child_command() -> list[str]:
    # -I: the child ignores PYTHON* variables, the user site and the working directory, so it
    # runs this file with only the standard library and the venv's pikepdf.
    return [sys.executable, "-I", str(Path(__file__).resolve())]


def _check_structure_in_child(data: bytes, *, limits: SandboxLimits) -> int:
    """Run `check_structure` in a child process under `limits`; return the page count."""
    command = [
        *_child_command(),
        f"--cpu-seconds={limits.cpu_seconds}",
        f"--memory-bytes={limits.memory_bytes}",
    ]
    try:
        completed = subprocess.run(
            command,
            input=data,
            capture_output=True,
            timeout=limits.wall_seconds,
            check=False,
            # Nothing of ours (API key, database URL) is the child's business.
            env={"LC_ALL": "C.UTF-8"},
        )
    except subprocess.TimeoutExpired as exc:
        raise _could_not_check(f"no answer within {limits.wall_seconds} s") from exc
    except OSError as exc:
        raise _could_not_check(f"could not start the checker: {exc}") from exc
    if completed.returncode != 0:
        raise _could_not_check(
            f"checker exited with {completed.returncode}: {completed.stderr[-300:]!r}"
        )
    return _read_child_answer(completed.stdout)


def _read_child_answer(output: bytes) -> int:
    """Trust the child's answer only in its exact expected shape: a compromised parser could
    print anything. Hash, size and name are computed by the parent anyway."""
    try:
        answer = json.loads(output)
    except ValueError as exc:
        raise _could_not_check(f"unreadable answer {output[:200]!r}") from exc
    if not isinstance(answer, dict):
        raise _could_not_check(f"unexpected answer {output[:200]!r}")
    pages = answer.get("pages")
    if set(answer) == {"pages"} and isinstance(pages, int) and 1 <= pages <= MAX_PAGES:
        return pages
    code, message, detail = answer.get("code"), answer.get("message"), answer.get("detail", "")
    if (
        set(answer) <= {"code", "message", "detail"}
        and code in REJECTION_CODES
        and isinstance(message, str)
        and len(message) <= 300
        and isinstance(detail, str)
    ):
        raise PDFRejected(code, message, detail=detail[:500])
    raise _could_not_check(f"unexpected answer {output[:200]!r}")


def _could_not_check(detail: str) -> PDFRejected:
    return PDFRejected(
        "could-not-check",
        "This PDF could not be checked, so it was not attached." + _RESAVE,
        detail=detail,
    )


def _limit_resources(*, cpu_seconds: int, memory_bytes: int) -> None:
    # Set by the child on itself, before reading any input: `preexec_fn` is not safe in a
    # threaded server. CPU: SIGXCPU at the soft limit, SIGKILL a second later. No core files,
    # and no files written at all.
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))


def main(argv: Sequence[str] | None = None) -> int:
    """The child: limit itself, read the PDF from stdin, print one JSON answer."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cpu-seconds", type=int, required=True)
    parser.add_argument("--memory-bytes", type=int, required=True)
    args = parser.parse_args(argv)
    _limit_resources(cpu_seconds=args.cpu_seconds, memory_bytes=args.memory_bytes)
    data = sys.stdin.buffer.read()
    try:
        answer: dict[str, object] = {"pages": check_structure(data)}
    except PDFRejected as exc:
        answer = {"code": exc.code, "message": exc.message, "detail": exc.detail}
    sys.stdout.write(json.dumps(answer))
    sys.stdout.flush()
    # Skip interpreter teardown: nothing left to clean up, and it costs time.
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
