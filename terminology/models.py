"""Code systems held locally: concepts, the rows of their search index, and what was loaded.

A concept keeps every designation it was imported with (JSON), so its index rows can always be
rebuilt from the database alone. The index itself is `SearchTerm`: one row per distinct
designation, whose primary key (`key`) is built so that ascending key order *is* the ranking
order (see `terminology/indexing.py`). The full-text indexes over `SearchTerm.words` are
created by migration 0002 for the database in use: an FTS5 table on SQLite, a GIN index on
PostgreSQL.
"""

from __future__ import annotations

from django.db import models

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
SYSTEM_NAMES = {LOINC: "LOINC", SNOMED: "SNOMED CT"}


class Concept(models.Model):
    system = models.CharField(max_length=100)
    code = models.CharField(max_length=64)
    display = models.CharField(max_length=500, help_text="The preferred term, as released.")
    # [{"use": "preferred" | "synonym" | "fsn" | "short" | "component" | "related" | ..,
    #   "value": "..."}] — the preferred term included, in release order.
    designations = models.JSONField(default=list)
    active = models.BooleanField(default=True)
    status = models.CharField(max_length=20, blank=True, help_text="The release's own status.")
    kind = models.CharField(
        max_length=60, blank=True, help_text="LOINC CLASS or SNOMED CT semantic tag."
    )
    in_scope = models.BooleanField(
        default=False,
        help_text=(
            "LOINC: a report, panel, document or orderable code (the report-code picker). "
            "SNOMED CT: a finding or disorder (the conclusion-code picker)."
        ),
    )
    rank = models.PositiveIntegerField(null=True, blank=True, help_text="Lower is more common.")
    search_text = models.TextField(blank=True, help_text="Normalised designations, ' | '-joined.")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["system", "code"], name="terminology_concept_unique")
        ]

    def __str__(self) -> str:
        return f"{SYSTEM_NAMES.get(self.system, self.system)}#{self.code} {self.display}"


class SearchTerm(models.Model):
    """One searchable designation of a concept; `key` encodes partition and rank order."""

    key = models.BigIntegerField(primary_key=True)
    concept = models.ForeignKey(Concept, on_delete=models.CASCADE, related_name="search_terms")
    words = models.TextField(help_text="Normalised: casefolded, accents removed, alphanumerics.")

    def __str__(self) -> str:
        return self.words


class LocalSynonym(models.Model):
    """A site's own search term for a concept ("cmp", "bmp"): searchable, never displayed.

    Kept apart from the released designations so that re-importing a release, which replaces
    those, keeps them, and the released names are never edited.
    """

    system = models.CharField(max_length=100)
    code = models.CharField(max_length=64)
    term = models.CharField(max_length=200)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["system", "code", "term"], name="terminology_localsynonym_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.term} → {self.code}"


class ImportRecord(models.Model):
    """One completed load of terminology content, shown on the About page."""

    class Source(models.TextChoices):
        STARTER = "starter", "Curated starter set"
        RELEASE = "release", "Release file"

    system = models.CharField(max_length=100)
    source = models.CharField(max_length=10, choices=Source.choices)
    file_name = models.CharField(max_length=300)
    fingerprint = models.CharField(max_length=64, blank=True)
    concept_count = models.PositiveIntegerField()
    imported_at = models.DateTimeField()

    class Meta:
        ordering = ["-imported_at"]

    def __str__(self) -> str:
        return f"{self.file_name} ({self.concept_count} concepts)"
