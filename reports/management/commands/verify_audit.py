"""Checks the audit trail's hash chain from its first event to its last."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from reports import audit


class Command(BaseCommand):
    help = "Verify the audit trail's hash chain; report the first broken link, if any."

    def handle(self, *args: Any, **options: Any) -> None:
        checked, broken = audit.verify()
        if broken is not None:
            raise CommandError(
                f"The audit chain is broken at event {broken.seq}: {broken.reason} "
                f"({checked} events before it are intact)."
            )
        self.stdout.write(f"The audit chain is whole: {checked} events verified.")
