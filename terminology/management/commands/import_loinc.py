"""python manage.py import_loinc PATH — LOINC from Loinc.csv, LoincTableCore.csv or a zip."""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from terminology import loading, releases
from terminology.management.progress import ProgressLine
from terminology.models import LOINC


class Command(BaseCommand):
    help = (
        "Imports LOINC terms from Loinc.csv or LoincTableCore.csv (plain or .gz) or from the "
        "release zip (LoincTable/Loinc.csv, else LoincTableCore/LoincTableCore.csv). A re-import "
        "updates the terms in place; a failed import changes nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", type=Path)
        parser.add_argument("--limit", type=int, help="Import only the first N terms.")

    def handle(self, *args: Any, path: Path, limit: int | None, **options: Any) -> None:
        if not path.exists():
            raise CommandError(f"{path} does not exist.")
        started = time.monotonic()
        progress = ProgressLine(self.stdout, "LOINC terms")
        try:
            source = releases.loinc_source(path)
            records = releases.read_loinc(source)
            if limit is not None:
                records = itertools.islice(records, limit)
            count = loading.import_records(LOINC, records, file_name=source.name, progress=progress)
        except releases.ReleaseFormatError as exc:
            progress.end()
            raise CommandError(f"Nothing was imported: {exc}") from None
        progress.end()
        self.stdout.write(
            self.style.SUCCESS(
                f"Imported {count:,} LOINC terms from {source.name} "
                f"in {time.monotonic() - started:.1f} s."
            )
        )
