"""Offline ClinikAPI sandbox: a faithful emulator of the API described in CONTRACT.md.

It is hand-written on the standard library (``wsgiref`` + ``socketserver``) on purpose: the
sandbox must control the raw socket to inject faults (hang, close, reset, garbage, slow drip)
and must stay a dependency-free mirror of the contract, so it can never drift with a framework.
No Django import lives in this package; the ``sandbox_api`` management command is the only
Django-aware piece.

Usage::

    from reports.sandbox import Fault, Sandbox, SandboxConfig

    sandbox = Sandbox(SandboxConfig(search_lag_seconds=0.0))
    client = httpx.Client(transport=httpx.WSGITransport(app=sandbox.wsgi_app), base_url="http://sandbox")
    sandbox.faults.push(Fault.drop(route="POST /v1/labs", when="after"))
    sandbox.store.labs(env="test", tenant="org_sandbox")   # ground truth

    from reports.sandbox.server import serve_in_thread
    with serve_in_thread(sandbox) as running:          # a real socket on 127.0.0.1
        httpx.get(running.url + "/health")

``sandbox.wsgi_app`` and the ``Sandbox`` instance itself are both the WSGI callable. In-process,
connection-level faults raise :class:`SandboxConnectionDropped` out of ``client.send()``; over a
real socket they really drop, reset or garble the connection.
"""

from __future__ import annotations

from reports.sandbox.app import KeyInfo, Sandbox, SandboxConfig, default_sandbox
from reports.sandbox.clock import ManualClock
from reports.sandbox.faults import Fault, Faults, SandboxConnectionDropped
from reports.sandbox.store import RequestRecord, Store, WriteRecord

__all__ = [
    "Fault",
    "Faults",
    "KeyInfo",
    "ManualClock",
    "RequestRecord",
    "Sandbox",
    "SandboxConfig",
    "SandboxConnectionDropped",
    "Store",
    "WriteRecord",
    "default_sandbox",
]
