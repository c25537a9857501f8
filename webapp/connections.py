"""Limits on each client connection, the same under `python wsgi.py` and gunicorn's gevent worker.

A client that stops reading must not pin a greenlet, a socket and megabytes of kernel memory:

- A stream's socket gets a small kernel send buffer (SEND_BUFFER_BYTES), so a client that stops
  reading fills it after a few dozen snapshots instead of after megabytes.
- A write that the kernel has not taken within the write timeout (two heartbeats) aborts the
  connection with a reset, which frees whatever is still queued for it at once. A stream's
  writes are not waited for past SSE_MAX_LIFETIME either.
- A request body may not go silent for REQUEST_TIMEOUT seconds, and must keep up an average of
  MIN_BODY_RATE bytes a second beyond its first REQUEST_TIMEOUT seconds (Apache mod_reqtimeout's
  `body=N,MinRate=R`), else 408 and the connection closes: a slow but steady upload (a 20 MB
  import on a slow link) arrives, a client trickling bytes to hold a connection does not.

`ConnectionLimits` does this for both servers, given the client socket in the environ
(gunicorn's `gunicorn.socket`, or ours from `EmbeddedHandler`). The embedded server's handler
also bounds the time to send a request line and headers, and answers HEAD with headers only.
See docs/ARCHITECTURE.md, "Connections".
"""

from __future__ import annotations

import logging
import socket
import struct
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import gevent
from gevent.pywsgi import WSGIHandler, WSGIServer
from werkzeug.exceptions import RequestTimeout

log = logging.getLogger(__name__)

# Linux doubles the value asked for; 32 KiB gives a 64 KiB queue, a few dozen snapshots.
SEND_BUFFER_BYTES = 32 * 1024
# Where EmbeddedHandler puts the client socket in the environ (gunicorn uses "gunicorn.socket").
SOCKET_KEY = "weighin.socket"
# The embedded server's read buffer per connection (EmbeddedHandler).
READ_BUFFER_BYTES = 1024
# After a stream's lifetime a stalled write still gets this long (its last chunk, the terminator).
STREAM_END_GRACE = 1.0


def client_socket(environ: dict) -> socket.socket | None:
    """The request's client socket, when the server hands it over (None under the test client)."""
    return environ.get(SOCKET_KEY) or environ.get("gunicorn.socket")


def _on_twin(sock: socket.socket, action: Callable[[socket.socket], None]) -> None:
    # A duplicate descriptor of the same connection: shutting that down wakes a greenlet waiting
    # on the original with EPIPE, which both servers treat as a client gone. Shutting down the
    # original would wake it with gevent's EBADF instead, which they log as a server error.
    try:
        with socket.fromfd(sock.fileno(), sock.family, sock.type) as twin:
            action(twin)
    except OSError:
        pass  # already closed: nothing left to limit


def abort(sock: socket.socket) -> None:
    """End a connection now: a reset when it closes, so the kernel drops what it still queues."""

    def reset(twin: socket.socket) -> None:
        twin.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        twin.shutdown(socket.SHUT_RDWR)

    _on_twin(sock, reset)


def _stop_reading(sock: socket.socket) -> None:
    # Neither server then waits for the rest of a body that is not coming before it answers.
    _on_twin(sock, lambda twin: twin.shutdown(socket.SHUT_RD))


def limit_send_buffer(sock: socket.socket) -> None:
    """Keep at most about SEND_BUFFER_BYTES queued in the kernel for this client."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
    except OSError:
        pass


# The slowest average a request body may keep up after its first REQUEST_TIMEOUT seconds: about
# 128 kbit/s, below a poor mobile link; 20 MB then has about 21 minutes.
MIN_BODY_RATE = 16 * 1024
# A body is read in pieces of this size, each with its own idle limit.
READ_PIECE = 8 * 1024


class _BodyTimeout(Exception):
    """Raised into a greenlet whose request body has not arrived in time."""


class _DeadlineInput:
    """wsgi.input with the body's time limits (see the module): past them, 408 and no more reading."""

    def __init__(self, stream, sock: socket.socket, started: float, idle_timeout: float, min_rate: float):
        self._stream = stream
        self._sock = sock
        self._started = started
        self._idle_timeout = idle_timeout
        self._min_rate = min_rate
        self._received = 0
        self.timed_out = False

    def _allowed(self) -> float:
        """Seconds the next read may wait: the idle limit, within what the bytes so far have earned."""
        earned = self._started + self._idle_timeout + self._received / self._min_rate
        return min(self._idle_timeout, earned - time.monotonic())

    def _call(self, method, *args):
        remaining = self._allowed()
        if remaining > 0:
            try:
                with gevent.Timeout(remaining, _BodyTimeout):
                    data = method(*args)
            except _BodyTimeout:
                pass
            else:
                self._received += len(data) if isinstance(data, bytes) else sum(map(len, data))
                return data
        self.timed_out = True
        _stop_reading(self._sock)
        raise RequestTimeout()

    def read(self, size: int | None = None) -> bytes:
        # In pieces, each waited for on its own: one read of a whole 1 MiB form (Werkzeug's for
        # urlencoded bodies) would otherwise have to arrive within one idle limit.
        parts = []
        left = -1 if size is None or size < 0 else size
        while left:
            part = self._call(self._stream.read, READ_PIECE if left < 0 else min(left, READ_PIECE))
            if not part:
                break
            parts.append(part)
            left = left if left < 0 else left - len(part)
        return b"".join(parts)

    def readline(self, *args):
        return self._call(self._stream.readline, *args)

    def readlines(self, *args):
        return self._call(self._stream.readlines, *args)

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line


class WriteGuard:
    """A timer on each write of a response body: a write that the kernel has not taken within the
    stall limit aborts the connection. Not attached to a socket (under the test client, say), it
    does nothing.

    _GuardedBody arms it around the server's writes of any body; a body that arms it itself
    around its own yields (the /events stream: `write_guard`) is handed to the server as it is,
    with no iterator of ours between them (issue 16)."""

    __slots__ = ("_sock", "_stall_limit", "_timer")

    def __init__(self, sock: socket.socket | None = None, stall_limit: Callable[[], float] | None = None):
        self._sock = sock
        self._stall_limit = stall_limit
        self._timer: Any = None  # a gevent timer while a write is pending

    def attach(self, sock: socket.socket, stall_limit: Callable[[], float]) -> None:
        self._sock, self._stall_limit = sock, stall_limit

    def arm(self) -> None:
        """A write starts now (a chunk handed to the server): abort if it stalls."""
        self.disarm()
        if self._stall_limit is None:
            return
        # One libev timer, not a greenlet: it only fires if the server's write has to wait.
        self._timer = gevent.get_hub().loop.timer(self._stall_limit())
        self._timer.start(self._stalled)

    def disarm(self) -> None:
        """The write is done (the server asks for the next chunk) or the body is closed."""
        if self._timer is not None:
            self._timer.close()
            self._timer = None

    def _stalled(self) -> None:
        log.info("dropping a client that stopped reading")
        if self._sock is not None:
            abort(self._sock)


class _GuardedBody:
    """The response body, with the guard armed for each write: a write that stalls aborts the connection."""

    def __init__(self, body: Iterable[bytes], guard: WriteGuard):
        self._body = body
        self._chunks: Iterator[bytes] | None = None
        self._guard = guard

    def __iter__(self) -> _GuardedBody:
        self._chunks = iter(self._body)
        return self

    def __next__(self) -> bytes:
        # The server asks for the next chunk only once the last one is written.
        self._guard.disarm()
        assert self._chunks is not None
        try:
            chunk = next(self._chunks)
        except StopIteration:
            self._guard.arm()  # the server still writes the end of the response; close() disarms
            raise
        self._guard.arm()
        return chunk

    def close(self) -> None:
        self._guard.disarm()
        close = getattr(self._body, "close", None)
        if close is not None:
            close()


class ConnectionLimits:
    """WSGI middleware: a small send buffer for streams, write and body timeouts (see the module)."""

    def __init__(self, wsgi_app, *, write_timeout: float, stream_lifetime: float, request_timeout: float):
        self.wsgi_app = wsgi_app
        self.write_timeout = write_timeout
        self.stream_lifetime = stream_lifetime
        self.request_timeout = request_timeout

    def __call__(self, environ, start_response):
        sock = client_socket(environ)
        if sock is None:
            return self.wsgi_app(environ, start_response)
        if environ.get("HTTP_UPGRADE", "").lower() == "websocket":
            # The WebSocket library reads the socket itself; its pings keep it honest.
            limit_send_buffer(sock)
            return self.wsgi_app(environ, start_response)

        started = time.monotonic()
        body = None
        if (
            environ.get("CONTENT_LENGTH", "0") not in ("", "0")
            or "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        ):
            body = _DeadlineInput(environ["wsgi.input"], sock, started, self.request_timeout, MIN_BODY_RATE)
            environ["wsgi.input"] = body
        stream_ends_at: float | None = None

        def limited_start_response(status, headers, exc_info=None):
            nonlocal stream_ends_at
            content_type = next((v for k, v in headers if k.lower() == "content-type"), "")
            if content_type.startswith("text/event-stream"):
                limit_send_buffer(sock)
                stream_ends_at = started + self.stream_lifetime
            if body is not None and body.timed_out:
                # The rest of the body never came: this connection cannot carry another request.
                headers = [(k, v) for k, v in headers if k.lower() != "connection"]
                headers.append(("Connection", "close"))
            return start_response(status, headers, exc_info)

        def stall_limit() -> float:
            if stream_ends_at is None:
                return self.write_timeout
            left = stream_ends_at - time.monotonic()
            return min(self.write_timeout, max(left, STREAM_END_GRACE))

        body_iter = self.wsgi_app(environ, limited_start_response)
        guard = getattr(body_iter, "write_guard", None)
        if isinstance(guard, WriteGuard):
            guard.attach(sock, stall_limit)  # the body arms it around its own writes
            return body_iter
        return _GuardedBody(body_iter, WriteGuard(sock, stall_limit))


class _RequestHeadTimeout(OSError):
    """The request line and headers did not arrive in time (an OSError: gevent closes quietly)."""


_REQUEST_TIMEOUT_RESPONSE = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"


class EmbeddedHandler(WSGIHandler):
    """gevent's handler, with a deadline on each request's head and HEAD answered by headers alone."""

    server: EmbeddedServer
    rfile: Any
    _head_deadline: gevent.Timeout | None = None

    def __init__(self, sock, address, server):
        super().__init__(sock, address, server)
        # gevent's reader buffers 8 KiB a connection for as long as it is open, an idle stream's
        # too (a quarter of its memory); a smaller buffer reads a head in a recv or two, and
        # bigger reads (a body's 8 KiB pieces) bypass it (issue 16).
        default_reader = self.rfile
        self.rfile = sock.makefile("rb", READ_BUFFER_BYTES)
        default_reader.close()  # the reader only: the socket stays open while a reader uses it

    def _end_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.close()
            self._head_deadline = None

    def read_requestline(self):
        # From the moment the server waits for a request (a new or a kept-alive connection) to
        # its last header: an idle or trickling client loses its socket, not everyone else theirs.
        self._end_head_deadline()
        self._head_deadline = gevent.Timeout(self.server.request_timeout, _RequestHeadTimeout)
        self._head_deadline.start()
        return super().read_requestline()

    def read_request(self, raw_requestline):
        try:
            return super().read_request(raw_requestline)
        finally:
            self._end_head_deadline()

    def handle_one_request(self):
        try:
            return super().handle_one_request()
        finally:
            self._end_head_deadline()

    def _handle_client_error(self, ex):
        if isinstance(ex, _RequestHeadTimeout):
            return ("408", _REQUEST_TIMEOUT_RESPONSE)
        return super()._handle_client_error(ex)

    def get_environ(self):
        environ = super().get_environ()
        environ[SOCKET_KEY] = self.socket
        return environ

    def finalize_headers(self):
        super().finalize_headers()
        if self.command == "HEAD":
            # The headers are the ones GET would get, but a HEAD response has no body, so no
            # chunk framing either: a stray terminator would be read as the next response.
            self.response_use_chunked = False

    def _write(self, data, *args):
        if self.command != "HEAD":
            super()._write(data, *args)


class EmbeddedServer(WSGIServer):
    """gevent's WSGI server with EmbeddedHandler and its request timeout."""

    handler_class = EmbeddedHandler

    def __init__(self, listener, application, *, request_timeout: float, **kwargs):
        super().__init__(listener, application, **kwargs)
        self.request_timeout = request_timeout
