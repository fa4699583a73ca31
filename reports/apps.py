from __future__ import annotations

from django.apps import AppConfig


class ReportsConfig(AppConfig):
    name = "reports"
    verbose_name = "Diagnostic reports"

    def ready(self) -> None:
        from reports import (  # noqa: F401  (connect receivers, register system checks)
            checks,
            signals,
        )
