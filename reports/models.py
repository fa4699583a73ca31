"""ClinikUI's own data."""

from __future__ import annotations

from django.db import models


class GlobalPermission(models.Model):
    """Holds the product's permissions that belong to no single table.

    There is no table behind it (`managed = False`); it exists so that the permissions below get
    rows in `auth_permission` and can be granted to the Clinician and Supervisor groups
    (see `reports/roles.py`).
    """

    class Meta:
        managed = False
        default_permissions = ()
        permissions = [
            ("lookup_patients", "Can look up patients, encounters and results in ClinikAPI"),
            ("compose_report", "Can compose reports and sign them as author"),
            ("verify_report", "Can review reports, verify them or return them to the author"),
        ]

    def __str__(self) -> str:
        return "ClinikUI permissions"
