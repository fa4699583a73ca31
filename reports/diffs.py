"""Readable differences between two versions of a report, field by field.

Hand-written on `difflib` (standard library): the conclusion is compared word by word, which
is what a clinician reads, and every other field is shown as before → after.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Final, Literal

from reports.payload import (
    AMENDMENT_STATUSES,
    CATEGORIES,
    DRAFT_STATUSES,
    FIELD_LABELS,
    ReportContent,
)

STATUS_LABELS: Final = {**DRAFT_STATUSES, **AMENDMENT_STATUSES, "cancelled": "Cancelled"}

_WORDS: Final = re.compile(r"\s+|[^\s]+")


@dataclass(frozen=True, slots=True)
class Segment:
    """A run of conclusion text that is the same in both versions, removed, or added."""

    op: Literal["same", "removed", "added"]
    text: str


@dataclass(frozen=True, slots=True)
class FieldChange:
    field: str
    before: str
    after: str
    # Only for the conclusion: word-level segments for an inline view.
    segments: tuple[Segment, ...] = ()

    @property
    def label(self) -> str:
        return FIELD_LABELS.get(self.field, self.field)


def compare(old: ReportContent, new: ReportContent) -> list[FieldChange]:
    """The fields that differ between `old` and `new`, in the composer's order."""
    changes = []
    before, after = describe(old), describe(new)
    for name in FIELD_LABELS:
        if before.get(name, "") == after.get(name, ""):
            continue
        segments = _word_diff(old.conclusion, new.conclusion) if name == "conclusion" else ()
        changes.append(FieldChange(name, before.get(name, ""), after.get(name, ""), segments))
    return changes


def describe(content: ReportContent) -> dict[str, str]:
    """Each field as one line of plain text, as the history view shows it."""
    return {
        "patient_id": content.patient_id,
        "encounter_id": content.encounter_id,
        "code": f"{content.code.display} ({content.code.code})" if content.code else "",
        "category": CATEGORIES.get(content.category, content.category),
        "status": STATUS_LABELS.get(content.status, content.status),
        "effective": content.effective.isoformat().replace("+00:00", "Z")
        if content.effective
        else "",
        "result_ids": ", ".join(content.result_ids),
        "specimen_ids": ", ".join(content.specimen_ids),
        "performer": content.performer,
        "results_interpreter": content.results_interpreter,
        "conclusion": content.conclusion,
        "conclusion_codes": "; ".join(f"{c.display} ({c.code})" for c in content.conclusion_codes),
        "attachments": "; ".join(
            f"{item.filename} (SHA-256 {item.sha256[:12]}…)" for item in content.attachments
        ),
    }


def _word_diff(old: str, new: str) -> tuple[Segment, ...]:
    old_words, new_words = _WORDS.findall(old), _WORDS.findall(new)
    matcher = difflib.SequenceMatcher(a=old_words, b=new_words, autojunk=False)
    segments: list[Segment] = []
    for op, a1, a2, b1, b2 in matcher.get_opcodes():
        if op == "equal":
            segments.append(Segment("same", "".join(old_words[a1:a2])))
            continue
        if a2 > a1:
            segments.append(Segment("removed", "".join(old_words[a1:a2])))
        if b2 > b1:
            segments.append(Segment("added", "".join(new_words[b1:b2])))
    return tuple(segments)
