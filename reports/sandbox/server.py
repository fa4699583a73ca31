"""Serve the sandbox over a real socket on loopback.

A threaded ``wsgiref`` server (``ThreadingMixIn`` + ``WSGIServer``, daemon threads). Its request
handler puts the raw socket into the WSGI environ (``environ["sandbox.socket"]``) and carries out
:class:`SandboxConnectionDropped` for real: FIN without a response (``close``), RST (``reset``:
``SO_LINGER`` 0 then close) or non-HTTP bytes (``garbage``). Logging is quiet: no per-request
lines, never the ``x-api-key``.

It speaks HTTP/1.1 with persistent connections, as a real API server does, so that a pooled
client really reuses its connection (benchmark B5 counts them: ``connections_accepted``). A
connection ends when the client asks (``Connection: close``, or HTTP/1.0), after a response
without ``Content-Length`` (the slow drip), after a dropped-connection fault, or after
``KEEP_ALIVE_IDLE_SECONDS`` without a request. ``stop()`` also shuts every open connection, so a
stopped sandbox is really down even for a client holding a pooled connection.

For tests::

    with serve_in_thread(Sandbox()) as running:
        httpx.get(f"{running.url}/health")

``stop()`` interrupts any fault that is hanging, shuts the server down and joins its thread.
"""

from __future__ import annotations

import contextlib
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
# How long a kept-alive connection may sit idle between requests before the server ends it.
KEEP_ALIVE_IDLE_SECONDS = 15.0


class _QuietServerHandler(ServerHandler):
    """wsgiref's handler, minus stderr tracebacks, passing connection drops up to the server."""

    http_version = "1.1"

    def handle_error(self) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, SandboxConnectionDropped):
            raise error
        super().handle_error()

    def log_exception(self, exc_info: Any) -> None:
        logger.error("Sandbox server error", exc_info=exc_info)

    sent_headers: Any = None

    def close(self) -> None:
        # Kept for the keep-alive decision: the base class forgets the headers when it closes.
        self.sent_headers = getattr(self, "headers", None)
        # ServerHandler.close logs the request line; the sandbox keeps its own request log.
        SimpleHandler.close(self)


class _BodyReader:
    """The request body as `wsgi.input`, limited to Content-Length, so whatever the application
    left unread can be drained before the next request on the same connection."""

    def __init__(self, stream: IO[bytes], length: int) -> None:
        self._stream = stream
        self.remaining = length

    def read(self, size: int = -1) -> bytes:
        if size < 0 or size > self.remaining:
            size = self.remaining
        data = self._stream.read(size) if size else b""
        self.remaining -= len(data)
        return data

    def readline(self, size: int = -1) -> bytes:
        if size < 0 or size > self.remaining:
            size = self.remaining
        data = self._stream.readline(size) if size else b""
        self.remaining -= len(data)
        return data

    def __iter__(self) -> Any:
        return iter(self.readline, b"")

    def drain(self) -> None:
        while self.remaining and self.read(65536):
            pass


class _RequestHandler(WSGIRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = KEEP_ALIVE_IDLE_SECONDS  # an idle or silent client must not pin a thread for ever

    def setup(self) -> None:
        super().setup()
        # wsgiref writes the status line, the headers and the body separately; without this,
        # Nagle's algorithm holds the body back for the client's delayed ACK (~40 ms a request).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def handle(self) -> None:
        self.server.track(self.connection)  # type: ignore[attr-defined]
        try:
            self.close_connection = True
            self.handle_one_request()
            while not self.close_connection:
                self.handle_one_request()
        except (OSError, ValueError):
            pass  # idle timeout, or the client (or stop()) closed the connection
        finally:
            self.server.untrack(self.connection)  # type: ignore[attr-defined]

    def handle_one_request(self) -> None:
        self.close_connection = True
        self.raw_requestline = self.rfile.readline(65537)
        if not self.raw_requestline:
            return
        if len(self.raw_requestline) > 65536:
            self.requestline = ""
            self.request_version = ""
            self.command = ""
            self.send_error(414)
            return
        if not self.parse_request():
            return
        # parse_request() decided from the request's version and Connection header whether the
        # client wants the connection kept; the response may still end it (below).
        keep_alive = not self.close_connection
        self.close_connection = True
        environ = self.get_environ()
        environ["sandbox.socket"] = self.connection
        body = _BodyReader(cast(IO[bytes], self.rfile), _content_length(environ))
        handler = _QuietServerHandler(
            cast(IO[bytes], body),
            cast(IO[bytes], self.wfile),
            io.StringIO(),
            environ,
            multithread=True,
        )
        handler.request_handler = self  # type: ignore[attr-defined]  # wsgiref's back-pointer
        try:
            handler.run(self.server.get_app())  # type: ignore[attr-defined]
        except SandboxConnectionDropped as dropped:
            self._abort(dropped)
            return
        except OSError:
            return  # the client went away first
        sent: Any = handler.sent_headers or {}
        framed = "Content-Length" in sent
        if keep_alive and framed and sent.get("Connection", "").lower() != "close":
            body.drain()
            self.close_connection = False

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

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        self.connections_accepted = 0
        super().__init__(*args, **kwargs)

    def track(self, connection: socket.socket) -> None:
        with self._open_lock:
            self._open.add(connection)
            self.connections_accepted += 1

    def untrack(self, connection: socket.socket) -> None:
        with self._open_lock:
            self._open.discard(connection)

    def close_open_connections(self) -> None:
        """End every connection still open (kept-alive or mid-request): the server is going."""
        with self._open_lock:
            connections = list(self._open)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def server_bind(self) -> None:
        # HTTPServer.server_bind would resolve the host name (getfqdn); loopback needs none.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)
        self.setup_environ()


def _content_length(environ: dict[str, Any]) -> int:
    try:
        return max(0, int(environ.get("CONTENT_LENGTH") or 0))
    except ValueError:
        return 0


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

    @property
    def connections_accepted(self) -> int:
        """TCP connections the server has taken so far (a pooled client should need one)."""
        return self.server.connections_accepted

    def stop(self, timeout: float = 5.0) -> None:
        if self._stopped:
            return
        self._stopped = True
        self.sandbox.faults.interrupt()
        self.server.shutdown()
        self.server.server_close()
        self.server.close_open_connections()
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
