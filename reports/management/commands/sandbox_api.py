"""Run the offline ClinikAPI sandbox as a real HTTP server on loopback.

    python manage.py sandbox_api --port 3000 [--lag 10] [--latency-ms 200] [--rate-limit 100]
                                 [--key clk_test_abc] [--key clk_test_ro:read] [--strict]

``--key`` may be repeated; each is ``KEY[:SCOPE[:TENANT]]`` (scope ``*``, ``read`` or ``write``).
Without ``--key`` any well-formed ``clk_live_`` / ``clk_test_`` key is accepted. The control
routes (``/_sandbox/faults``, ``/_sandbox/state`` ...) let tests and tools arm faults at run time.
"""

from __future__ import annotations

from typing import Any, cast

from django.core.management.base import BaseCommand, CommandError, CommandParser

from reports.sandbox import KeyInfo, Sandbox, SandboxConfig
from reports.sandbox.app import Scope
from reports.sandbox.server import make_server

SCOPES = ("*", "read", "write")


def parse_key(spec: str, default_tenant: str) -> tuple[str, KeyInfo]:
    key, _, rest = spec.partition(":")
    scope, _, tenant = rest.partition(":")
    scope = scope or "*"
    if scope not in SCOPES:
        raise CommandError(f"Key scope must be one of {', '.join(SCOPES)}.")
    if not key.startswith(("clk_live_", "clk_test_")):
        raise CommandError("Sandbox keys must start with clk_live_ or clk_test_.")
    return key, KeyInfo(tenant=tenant or default_tenant, scope=cast(Scope, scope))


class Command(BaseCommand):
    help = "Serve the ClinikAPI sandbox (an offline emulator of the API) on 127.0.0.1."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="Loopback address to bind.")
        parser.add_argument("--port", type=int, default=3000, help="Port (0 = any free port).")
        parser.add_argument(
            "--lag", type=float, default=0.0, help="Search-index lag in seconds (CONTRACT §6)."
        )
        parser.add_argument(
            "--latency-ms", type=int, default=0, help="Delay added to every API request."
        )
        parser.add_argument(
            "--rate-limit", type=int, default=100, help="Requests per rolling minute per tenant."
        )
        parser.add_argument(
            "--key",
            action="append",
            default=[],
            metavar="KEY[:SCOPE[:TENANT]]",
            help="Accept only these keys (repeatable).",
        )
        parser.add_argument("--tenant", default="org_sandbox", help="Tenant of accepted keys.")
        parser.add_argument(
            "--strict", action="store_true", help="Referential checks, strict PATCH, transitions."
        )
        parser.add_argument("--no-seed", action="store_true", help="Start with empty datasets.")
        parser.add_argument(
            "--no-control", action="store_true", help="Disable the /_sandbox control routes."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["lag"] < 0 or options["latency_ms"] < 0 or options["rate_limit"] < 1:
            raise CommandError("--lag and --latency-ms must be >= 0, --rate-limit >= 1.")
        tenant = options["tenant"]
        keys = dict(parse_key(spec, tenant) for spec in options["key"]) or None
        config = SandboxConfig(
            search_lag_seconds=options["lag"],
            latency_ms=options["latency_ms"],
            rate_limit_per_minute=options["rate_limit"],
            accepted_keys=keys,
            default_tenant=tenant,
            strict=options["strict"],
            seed=not options["no_seed"],
            control_routes=not options["no_control"],
        )
        sandbox = Sandbox(config)
        try:
            server = make_server(sandbox, options["host"], options["port"])
        except (OSError, ValueError) as exc:
            raise CommandError(f"Cannot start the sandbox: {exc}") from exc
        host, port = server.server_address[:2]
        shown_host = f"[{host!s}]" if ":" in str(host) else str(host)
        accepting = f"{len(keys)} configured key(s)" if keys else "any clk_live_/clk_test_ key"
        self.stdout.write(
            f"ClinikAPI sandbox on http://{shown_host}:{port} "
            f"(search lag {config.search_lag_seconds:g} s, {accepting}). Ctrl-C to stop."
        )
        try:
            server.serve_forever(poll_interval=0.2)
        except KeyboardInterrupt:
            self.stdout.write("Stopping the sandbox.")
        finally:
            sandbox.faults.interrupt()
            server.server_close()
