"""Creates the demo accounts: two clinicians and one supervisor. For the demo only."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError, CommandParser

from reports.roles import CLINICIAN, SUPERVISOR, ensure_roles

DEMO_PASSWORD = "clinikui-demo"

DEMO_USERS = (
    # username, first name, last name, role
    ("clinician", "Demo", "Clinician", CLINICIAN),
    ("clinician2", "Second", "Clinician", CLINICIAN),
    ("supervisor", "Demo", "Supervisor", SUPERVISOR),
)


class Command(BaseCommand):
    help = "Create or reset the demo users (two clinicians, one supervisor). Refused in production."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--password",
            default=DEMO_PASSWORD,
            help="Password for every demo user (default: %(default)s).",
        )

    def handle(self, *args: Any, password: str, **options: Any) -> None:
        if settings.IS_PRODUCTION:
            raise CommandError("Demo users are never created in production.")
        ensure_roles()
        user_model = get_user_model()
        for username, first_name, last_name, role in DEMO_USERS:
            user, _ = user_model.objects.update_or_create(
                username=username,
                defaults={"first_name": first_name, "last_name": last_name, "is_active": True},
            )
            user.set_password(password)
            user.save()
            user.groups.set([Group.objects.get(name=role)])
        self.stdout.write(f"Demo logins (password for all: {password}):")
        for username, _, _, role in DEMO_USERS:
            self.stdout.write(f"  {username:<12} {role}")
