"""Serve the sandbox over a real socket on loopback.

A threaded ``wsgiref`` server (``ThreadingMixIn`` + ``WSGIServer``, daemon threads). Its request
handler puts the raw socket into the WSGI environ (``environ["sandbox.socket"]``) and carries out
:class:`SandboxConnectionDropped` for real: FIN without a response (``close``), RST (``reset``:
``SO_LINGER`` 0 then close) or non-HTTP bytes (``garbage``). Logging is quiet: no per-request
lines, never the ``x-api-key``.

For tests::

    with serve_in_thread(Sandbox()) as running:
        httpx.get(f"{running.url}/health")

``stop()`` interrupts any fault that is hanging, shuts the server down and joins its thread.
"""

from __future__ import annotations

import io
import ipaddress
import logging
import socket
import socketserver
import struct
import sys
import threading
from dataclasses import dataclass, field
from types import TracebackType
from typing import IO, Any, cast
from wsgiref.handlers import SimpleHandler
from wsgiref.simple_server import ServerHandler, WSGIRequestHandler, WSGIServer

from reports.sandbox.app import Sandbox, SandboxConfig
from reports.sandbox.faults import SandboxConnectionDropped

logger = logging.getLogger(__name__)

GARBAGE = b"\x00\x13SANDBOX GARBAGE \xff\xfe not an HTTP response\r\n\r\n"


class _QuietServerHandler(ServerHandler):
    """wsgiref's handler, minus stderr tracebacks, passing connection drops up to the server."""

    def handle_error(self) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, SandboxConnectionDropped):
            raise error
        super().handle_error()

    def log_exception(self, exc_info: Any) -> None:
        logger.error("Sandbox server error", exc_info=exc_info)

    def close(self) -> None:
        # ServerHandler.close logs the request line; the sandbox keeps its own request log.
        SimpleHandler.close(self)


class _RequestHandler(WSGIRequestHandler):
    timeout = 60  # a client that connects and never sends must not pin a thread for ever

    def handle(self) -> None:
        self.raw_requestline = self.rfile.readline(65537)
        if len(self.raw_requestline) > 65536:
            self.requestline = ""
            self.request_version = ""
            self.command = ""
            self.send_error(414)
            return
        if not self.parse_request():
            return
        environ = self.get_environ()
        environ["sandbox.socket"] = self.connection
        handler = _QuietServerHandler(
            self.rfile, cast(IO[bytes], self.wfile), io.StringIO(), environ, multithread=True
        )
        handler.request_handler = self  # type: ignore[attr-defined]  # wsgiref's back-pointer
        try:
            handler.run(self.server.get_app())  # type: ignore[attr-defined]
        except SandboxConnectionDropped as dropped:
            self._abort(dropped)
        except OSError:
            pass  # the client went away first

    def _abort(self, dropped: SandboxConnectionDropped) -> None:
        connection: socket.socket = self.connection
        try:
            if dropped.mode == "garbage":
                connection.sendall(GARBAGE)
                connection.shutdown(socket.SHUT_RDWR)
            elif dropped.mode == "reset":
                connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                # The buffered reader holds a reference to the socket; close both so the kernel
                # really closes it now, with linger 0, which sends RST.
                self.rfile.close()
                connection.close()
            else:
                connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 -- base signature
        """No per-request logging (and so never a header value)."""


class SandboxHTTPServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128

    def server_bind(self) -> None:
        # HTTPServer.server_bind would resolve the host name (getfqdn); loopback needs none.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)
        self.setup_environ()


def make_server(sandbox: Sandbox, host: str = "127.0.0.1", port: int = 0) -> SandboxHTTPServer:
    """Bind (not yet serve) a threaded server; only loopback addresses are accepted."""
    if not ipaddress.ip_address(host).is_loopback:
        raise ValueError("the sandbox binds to loopback only; its control routes have no auth")
    server_class: type[SandboxHTTPServer] = SandboxHTTPServer
    if ":" in host:
        server_class = type(
            "SandboxHTTPServer6", (SandboxHTTPServer,), {"address_family": socket.AF_INET6}
        )
    server = server_class((host, port), _RequestHandler)
    server.set_app(sandbox.wsgi_app)
    return server


@dataclass(slots=True)
class RunningSandbox:
    """A sandbox served on a background thread; use as a context manager or call ``stop()``."""

    url: str
    sandbox: Sandbox
    server: SandboxHTTPServer
    thread: threading.Thread
    _stopped: bool = field(default=False, repr=False)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def stop(self, timeout: float = 5.0) -> None:
        if self._stopped:
            return
        self._stopped = True
        self.sandbox.faults.interrupt()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout)

    def __enter__(self) -> RunningSandbox:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def serve_in_thread(
    sandbox: Sandbox | None = None,
    *,
    config: SandboxConfig | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
) -> RunningSandbox:
    """Start serving ``sandbox`` (or a new one built from ``config``) on a free port."""
    if sandbox is None:
        sandbox = Sandbox(config)
    elif config is not None:
        raise ValueError("pass either a sandbox or a config, not both")
    sandbox.faults.resume()
    server = make_server(sandbox, host, port)
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.05},
        name=f"clinikapi-sandbox-{server.server_address[1]}",
        daemon=True,
    )
    thread.start()
    bound_host = f"[{host}]" if ":" in host else host
    url = f"http://{bound_host}:{server.server_address[1]}"
    return RunningSandbox(url=url, sandbox=sandbox, server=server, thread=thread)
