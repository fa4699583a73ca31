"""Django's development server with a release worker on a thread beside it, for the demo.

The in-process sandbox lives in the serving process's memory, so a worker in another process
would talk to another sandbox; in the demo the worker therefore runs in the same process.
Production runs gunicorn and `release_worker` processes instead (docs/operations.md).
"""

from __future__ import annotations

import threading
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from reports import outbox


class Command(BaseCommand):
    help = "Serve the demo (runserver without autoreload) with a release worker thread."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("addrport", nargs="?", default="127.0.0.1:8000")

    def handle(self, *args: Any, **options: Any) -> None:
        if settings.IS_PRODUCTION:
            raise CommandError("serve_demo is for demo and development machines only.")
        stop = threading.Event()
        worker = threading.Thread(
            target=outbox.Worker(name="demo-worker").run,
            kwargs={"stop": stop},
            name="release-worker",
            daemon=True,
        )
        worker.start()
        try:
            call_command("runserver", options["addrport"], use_reloader=False)
        finally:
            stop.set()
