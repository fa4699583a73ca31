"""python manage.py import_snomed PATH — SNOMED CT from an RF2 snapshot or the CSV files."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from terminology import loading, releases
from terminology.management.progress import ProgressLine
from terminology.models import SNOMED


class Command(BaseCommand):
    help = (
        "Imports SNOMED CT concepts from an RF2 snapshot (a folder or zip holding "
        "sct2_Concept_Snapshot, sct2_Description_Snapshot and der2_cRefset_LanguageSnapshot; "
        "active rows only) or from a one-row-per-concept CSV (concept_id, preferred_term, fsn, "
        "semantic_tag, synonyms; plain or .gz). A re-import updates in place; a failed import "
        "changes nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", type=Path)
        parser.add_argument(
            "--language-refset",
            default=releases.US_ENGLISH,
            help="RF2 language reference set whose preferred terms are displayed "
            "(default US English 900000000000509007; GB English is 900000000000508004).",
        )

    def handle(self, *args: Any, path: Path, language_refset: str, **options: Any) -> None:
        if not path.exists():
            raise CommandError(f"{path} does not exist.")
        started = time.monotonic()
        progress = ProgressLine(self.stdout, "SNOMED CT concepts")
        try:
            if path.is_dir() or path.suffix.lower() == ".zip":
                snapshot = releases.find_rf2(path)
                records, inactive = releases.read_rf2(snapshot, language_refset=language_refset)
                name = snapshot.concepts.name
            else:
                records, inactive = releases.read_snomed_csv(releases.Source(path)), set()
                name = str(path)
            count = loading.import_records(
                SNOMED, records, file_name=name, inactive_codes=inactive, progress=progress
            )
        except releases.ReleaseFormatError as exc:
            progress.end()
            raise CommandError(f"Nothing was imported: {exc}") from None
        progress.end()
        self.stdout.write(
            self.style.SUCCESS(
                f"Imported {count:,} SNOMED CT concepts from {path} "
                f"in {time.monotonic() - started:.1f} s."
            )
        )
