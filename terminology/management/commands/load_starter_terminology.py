"""python manage.py load_starter_terminology — the curated LOINC and SNOMED CT starter set."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from terminology import loading
from terminology.models import SYSTEM_NAMES


class Command(BaseCommand):
    help = (
        "Loads the curated starter set of LOINC report codes and SNOMED CT findings shipped in "
        "terminology/data/. Does nothing when it is already loaded or a release was imported."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        for result in loading.load_starter_set():
            name = SYSTEM_NAMES[result.system]
            if result.skipped_because:
                self.stdout.write(f"{name} starter set: skipped, {result.skipped_because}.")
            else:
                self.stdout.write(f"{name} starter set: loaded {result.count} concepts.")
