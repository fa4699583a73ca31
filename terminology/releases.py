"""Readers for terminology release files: they stream `ConceptRecord`s and know nothing of the
database.

Columns are matched by header name, never by position (releases add and drop columns), and a
file that does not fit raises `ReleaseFormatError` naming the file, the line and the columns
that were expected.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from terminology.indexing import ConceptRecord, Designation, strip_semantic_tag

csv.field_size_limit(1 << 24)  # LOINC's RELATEDNAMES2 and DefinitionDescription run long.


class ReleaseFormatError(Exception):
    """The file is not what the importer expects; the message says where and why."""


@dataclass(frozen=True, slots=True)
class Source:
    """A file inside a folder, a zip, or on its own (plain or gzipped)."""

    path: Path
    member: str = ""

    @property
    def name(self) -> str:
        return f"{self.path}:{self.member}" if self.member else str(self.path)


@contextmanager
def open_text(source: Source) -> Iterator[IO[str]]:
    # utf-8-sig: some release files start with a byte-order mark that would stick to the first
    # header name.
    if source.member:
        with zipfile.ZipFile(source.path) as archive, archive.open(source.member) as raw:
            yield io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
    elif source.path.suffix == ".gz":
        with gzip.open(source.path, "rt", encoding="utf-8-sig", newline="") as text:
            yield text
    else:
        with source.path.open(encoding="utf-8-sig", newline="") as text:
            yield text


def _rows(
    source: Source, required: Sequence[str], *, delimiter: str = ","
) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row with upper-cased column names) for each data row."""
    with open_text(source) as text:
        # RF2 is tab-separated without quoting: a term may contain a double quote.
        if delimiter == "\t":
            reader = csv.reader(text, delimiter=delimiter, quoting=csv.QUOTE_NONE)
        else:
            reader = csv.reader(text, delimiter=delimiter)
        try:
            header = [name.strip().upper() for name in next(reader)]
        except StopIteration:
            raise ReleaseFormatError(f"{source.name} is empty.") from None
        except (UnicodeDecodeError, csv.Error, gzip.BadGzipFile, EOFError) as exc:
            raise ReleaseFormatError(f"{source.name}, line 1: unreadable ({exc}).") from None
        missing = [name for name in required if name.upper() not in header]
        if missing:
            raise ReleaseFormatError(
                f"{source.name}, line 1: missing column(s) {', '.join(missing)}; expected "
                f"a header with {', '.join(required)}."
            )
        try:
            for values in reader:
                if not values:
                    continue
                if len(values) != len(header):
                    raise ReleaseFormatError(
                        f"{source.name}, line {reader.line_num}: {len(values)} fields where the "
                        f"header has {len(header)} ({', '.join(required)} expected)."
                    )
                yield reader.line_num, dict(zip(header, values, strict=True))
        except (UnicodeDecodeError, csv.Error, gzip.BadGzipFile, EOFError) as exc:
            raise ReleaseFormatError(
                f"{source.name}, line {reader.line_num}: unreadable ({exc})."
            ) from None


# --- LOINC -----------------------------------------------------------------------------------

LOINC_REQUIRED = ("LOINC_NUM", "LONG_COMMON_NAME", "CLASS", "CLASSTYPE", "STATUS")
_LOINC_CODE = re.compile(r"^\d{1,7}-\d$")
# What counts as a report code (the DiagnosticReport.code picker), from CLASS: panels other
# than survey instruments, radiology, pathology/cytology/tumour registry, clinical documents,
# cardiology studies. Plus any term the full table marks as orderable (ORDER_OBS Order/Both):
# an orderable test is what a report reports on. Terms carrying a third-party copyright notice
# are kept out of the picker (Regenstrief's licence does not cover them).
_REPORT_CLASS_PREFIXES = (
    "PANEL.",
    "RAD",
    "PATH",
    "CYTO",
    "TUMRRGT",
    "DOC.",
    "DOCUMENT.",
    "CARD.US",
    "CARD.PROC",
)
SURVEY_CLASSTYPE = "4"
ACTIVE_LOINC_STATUSES = {"ACTIVE", "TRIAL"}


def loinc_source(path: Path) -> Source:
    """The LOINC table in a release zip, or the file itself."""
    if path.suffix.lower() != ".zip":
        return Source(path)
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except zipfile.BadZipFile:
        raise ReleaseFormatError(f"{path} is not a readable zip file.") from None
    for wanted in ("LoincTable/Loinc.csv", "LoincTableCore/LoincTableCore.csv"):
        for name in names:
            if name == wanted or name.endswith("/" + wanted):
                return Source(path, name)
    raise ReleaseFormatError(
        f"{path}: no LoincTable/Loinc.csv or LoincTableCore/LoincTableCore.csv inside."
    )


def _loinc_rank(row: dict[str, str]) -> int | None:
    ranks = []
    for column in ("COMMON_TEST_RANK", "COMMON_ORDER_RANK"):
        value = row.get(column, "").strip()
        if value.isdigit() and int(value) > 0:
            ranks.append(int(value))
    return min(ranks) if ranks else None


def is_loinc_report_code(row: dict[str, str]) -> bool:
    if row.get("EXTERNAL_COPYRIGHT_NOTICE", "").strip():
        return False
    loinc_class = row["CLASS"].strip().upper()
    if row["CLASSTYPE"].strip() == SURVEY_CLASSTYPE:
        return False
    if loinc_class.startswith(_REPORT_CLASS_PREFIXES):
        return True
    return row.get("ORDER_OBS", "").strip().lower() in {"order", "both"}


def read_loinc(source: Source) -> Iterator[ConceptRecord]:
    """One record per row of Loinc.csv, LoincTableCore.csv or a file with their columns."""
    for line, row in _rows(source, LOINC_REQUIRED):
        code = row["LOINC_NUM"].strip()
        if not _LOINC_CODE.match(code):
            raise ReleaseFormatError(
                f"{source.name}, line {line}: LOINC_NUM {code[:40]!r} is not a LOINC code "
                "(digits, a dash and a check digit)."
            )
        display = (
            row["LONG_COMMON_NAME"].strip()
            or row.get("SHORTNAME", "").strip()
            or row.get("COMPONENT", "").strip()
        )
        if not display:
            raise ReleaseFormatError(f"{source.name}, line {line}: {code} has no name.")
        designations = [
            Designation(use, row.get(column, "").strip())
            for use, column in (
                ("short", "SHORTNAME"),
                ("display", "DISPLAYNAME"),
                ("consumer", "CONSUMER_NAME"),
                ("component", "COMPONENT"),
                # One designation for the whole keyword list: its words may match together
                # ("hgb blood"), and it sorts after every real name because it is long.
                ("related", "RELATEDNAMES2"),
            )
        ]
        status = row["STATUS"].strip().upper()
        yield ConceptRecord(
            code=code,
            display=display,
            designations=tuple(d for d in designations if d.value),
            active=status in ACTIVE_LOINC_STATUSES,
            status=status,
            kind=row["CLASS"].strip(),
            in_scope=is_loinc_report_code(row),
            rank=_loinc_rank(row),
        )


# --- SNOMED CT -------------------------------------------------------------------------------

SNOMED_CSV_REQUIRED = ("concept_id", "preferred_term", "fsn", "semantic_tag", "synonyms")
_SCTID = re.compile(r"^\d{6,18}$")
# The conclusion-code picker: what a report concludes is a finding or a disorder (and their
# close kin: situations, events, morphologic abnormalities).
CONCLUSION_TAGS = {"finding", "disorder", "situation", "event", "morphologic abnormality"}


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split("|") if part.strip()]


def read_snomed_csv(source: Source) -> Iterator[ConceptRecord]:
    """The one-row-per-concept CSV files (snomed_ips_gps_concepts, snomed_findings_disorders)."""
    for line, row in _rows(source, SNOMED_CSV_REQUIRED):
        code = row["CONCEPT_ID"].strip()
        if not _SCTID.match(code):
            raise ReleaseFormatError(
                f"{source.name}, line {line}: concept_id {code[:40]!r} is not a SNOMED CT id."
            )
        display = row["PREFERRED_TERM"].strip()
        if not display:
            raise ReleaseFormatError(f"{source.name}, line {line}: {code} has no preferred_term.")
        tag = row["SEMANTIC_TAG"].strip()
        designations = [Designation("fsn", row["FSN"].strip())]
        designations += [Designation("synonym", term) for term in _split(row["SYNONYMS"])]
        designations += [
            Designation("fsn", term) for term in _split(row.get("OTHER_FSN_VARIANTS", ""))
        ]
        on_problem_list = row.get("IPS_PROBLEM_LIST", "").strip() == "1"
        yield ConceptRecord(
            code=code,
            display=display,
            designations=tuple(d for d in designations if d.value),
            kind=tag,
            in_scope=tag in CONCLUSION_TAGS or (not tag and on_problem_list),
        )


# RF2 (tab-separated, header row). Identifiers from the RF2 specification.
FSN_TYPE = "900000000000003001"
SYNONYM_TYPE = "900000000000013009"
PREFERRED = "900000000000548007"
US_ENGLISH = "900000000000509007"
RF2_CONCEPT_COLUMNS = ("id", "effectiveTime", "active", "moduleId", "definitionStatusId")
RF2_DESCRIPTION_COLUMNS = (
    "id",
    "effectiveTime",
    "active",
    "moduleId",
    "conceptId",
    "languageCode",
    "typeId",
    "term",
    "caseSignificanceId",
)
RF2_LANGUAGE_COLUMNS = (
    "id",
    "effectiveTime",
    "active",
    "moduleId",
    "refsetId",
    "referencedComponentId",
    "acceptabilityId",
)


@dataclass(frozen=True, slots=True)
class RF2Snapshot:
    concepts: Source
    descriptions: tuple[Source, ...]
    language: tuple[Source, ...]


def find_rf2(path: Path) -> RF2Snapshot:
    """The snapshot files of an RF2 release folder or zip (first match of each kind)."""
    if path.is_dir():
        names = [str(p.relative_to(path)) for p in sorted(path.rglob("*.txt"))]

        def source(name: str) -> Source:
            return Source(path / name)
    else:
        try:
            with zipfile.ZipFile(path) as archive:
                names = sorted(archive.namelist())
        except zipfile.BadZipFile:
            raise ReleaseFormatError(f"{path} is neither a folder nor a readable zip.") from None

        def source(name: str) -> Source:
            return Source(path, name)

    def matching(prefix: str) -> list[str]:
        return [n for n in names if Path(n).name.startswith(prefix) and "Snapshot" in n]

    concepts = matching("sct2_Concept_Snapshot")
    descriptions = matching("sct2_Description_Snapshot")
    if not concepts or not descriptions:
        raise ReleaseFormatError(
            f"{path}: no sct2_Concept_Snapshot*.txt and sct2_Description_Snapshot*.txt found "
            "(an RF2 snapshot folder or zip is expected)."
        )
    return RF2Snapshot(
        concepts=source(concepts[0]),
        descriptions=tuple(source(n) for n in descriptions),
        language=tuple(source(n) for n in matching("der2_cRefset_LanguageSnapshot")),
    )


def read_rf2(
    snapshot: RF2Snapshot, *, language_refset: str = US_ENGLISH
) -> tuple[Iterator[ConceptRecord], set[str]]:
    """Records for the active concepts, and the ids of the inactive ones.

    Only active concepts and active descriptions are read; with a language reference set, only
    the descriptions it accepts, and the preferred synonym becomes the display.
    """
    active: set[str] = set()
    inactive: set[str] = set()
    for line, row in _rows(snapshot.concepts, RF2_CONCEPT_COLUMNS, delimiter="\t"):
        concept_id = row["ID"]
        if not _SCTID.match(concept_id) or row["ACTIVE"] not in {"0", "1"}:
            raise ReleaseFormatError(
                f"{snapshot.concepts.name}, line {line}: expected an SCTID and active 0/1 "
                f"({', '.join(RF2_CONCEPT_COLUMNS)})."
            )
        (active if row["ACTIVE"] == "1" else inactive).add(concept_id)

    accepted: set[str] | None = None
    preferred: set[str] = set()
    if snapshot.language:
        accepted = set()
        for source in snapshot.language:
            for _, row in _rows(source, RF2_LANGUAGE_COLUMNS, delimiter="\t"):
                if row["ACTIVE"] == "1" and row["REFSETID"] == language_refset:
                    accepted.add(row["REFERENCEDCOMPONENTID"])
                    if row["ACCEPTABILITYID"] == PREFERRED:
                        preferred.add(row["REFERENCEDCOMPONENTID"])

    # conceptId → [(typeId, is_preferred, term)]
    terms: dict[str, list[tuple[str, bool, str]]] = {}
    for source in snapshot.descriptions:
        for line, row in _rows(source, RF2_DESCRIPTION_COLUMNS, delimiter="\t"):
            if row["ACTIVE"] != "1" or row["CONCEPTID"] not in active:
                continue
            if row["TYPEID"] not in {FSN_TYPE, SYNONYM_TYPE}:
                continue
            if accepted is not None and row["ID"] not in accepted:
                continue
            if not row["TERM"].strip():
                raise ReleaseFormatError(f"{source.name}, line {line}: empty term.")
            terms.setdefault(row["CONCEPTID"], []).append(
                (row["TYPEID"], row["ID"] in preferred, row["TERM"].strip())
            )
    return _rf2_records(terms), inactive


def _rf2_records(terms: dict[str, list[tuple[str, bool, str]]]) -> Iterator[ConceptRecord]:
    for concept_id in sorted(terms, key=int):
        descriptions = terms[concept_id]
        fsns = [t for type_id, _, t in descriptions if type_id == FSN_TYPE]
        synonyms = [(is_pt, t) for type_id, is_pt, t in descriptions if type_id == SYNONYM_TYPE]
        fsn = fsns[0] if fsns else ""
        untagged, tag = strip_semantic_tag(fsn)
        preferred = [t for is_pt, t in synonyms if is_pt]
        display = preferred[0] if preferred else (untagged or synonyms[0][1])
        designations = [Designation("fsn", f) for f in fsns]
        designations += [Designation("synonym", t) for _, t in synonyms if t != display]
        yield ConceptRecord(
            code=concept_id,
            display=display,
            designations=tuple(designations),
            kind=tag,
            in_scope=tag in CONCLUSION_TAGS,
        )
