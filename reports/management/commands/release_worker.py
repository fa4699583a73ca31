"""The release worker: sends signed reports to ClinikAPI from the outbox (see reports/outbox.py).

Run one or more beside the web processes (`python manage.py release_worker`); they share the
database and never send a row twice. `--once` sends what is due and exits; `--resume` lifts a hold
(refused key, exhausted quota) once an administrator has dealt with its cause.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from reports import outbox


class Command(BaseCommand):
    help = "Send released reports to ClinikAPI from the outbox, exactly once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="Send what is due now, then exit.")
        parser.add_argument(
            "--resume",
            action="store_true",
            help="Lift a hold (refused API key, exhausted quota) and requeue what it held.",
        )
        parser.add_argument(
            "--after-restore",
            action="store_true",
            help="Run once after restoring the database from a backup: waiting reports are "
            "searched for in ClinikAPI before any is sent again.",
        )
        parser.add_argument(
            "--poll", type=float, default=1.0, help="Seconds between looks when idle (default 1)."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["resume"]:
            resumed = outbox.resume_sending()
            self.stdout.write(f"Sending resumed; {resumed} held reports are queued again.")
            return
        if options["after_restore"]:
            marked = outbox.reconcile_after_restore()
            self.stdout.write(
                f"{marked} waiting reports will be looked for in ClinikAPI before being sent."
            )
            return
        worker = outbox.Worker()
        if options["once"]:
            steps = worker.run_until_idle()
            self.stdout.write(f"{steps} steps done; nothing more is due now.")
            return
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        worker.run(stop=stop, poll_seconds=options["poll"])
