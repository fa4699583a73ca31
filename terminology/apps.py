from __future__ import annotations

from django.apps import AppConfig


class TerminologyConfig(AppConfig):
    name = "terminology"
    verbose_name = "Terminology (LOINC, SNOMED CT)"
