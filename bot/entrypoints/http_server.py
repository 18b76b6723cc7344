"""The HTTP server of `release-bot serve`: aiohttp's C parser and event loop, calling the bot's
WSGI application on the loop's own thread.

Called by bot.entrypoints.server. The server binds when built (a taken port fails at once) and
serves from `run()` until one of the signals it is given to stop on (SIGTERM, and server.Stopper's
own on a fatal error), then closes its connections. The application runs on the loop, one request at
a time, as a Bolt AsyncApp's listeners do: a listener only acknowledges (at most one Redis read, for
the read-only commands) and leaves everything slower to handlers' after-ack pool (handlers.app).
Handing each request to a thread pool instead cost about 0.3 ms of CPU a request in thread wake-ups
and more in the p99 (bench/README.md). A Redis that hangs holds each read-only answer for its 2 s
socket timeout, as it held a pool's threads; /readyz waits at most READINESS_TIMEOUT_S for a fresh
answer.
"""

from __future__ import annotations

import asyncio
import io
import logging
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from wsgiref.types import WSGIApplication, WSGIEnvironment

import structlog
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

LISTEN_BACKLOG = 1024
"""Connections the kernel queues before the loop accepts them (Slack opens many at once)."""

SHUTDOWN_GRACE_S = 5.0
"""At a stop, how long answers still being worked out get (Slack waits 3 s for one)."""

log = structlog.get_logger("release_bot.http_server")


class HttpServer:
    """Serves `app` on host:port; `max_body_bytes` larger bodies are left unread for `app` to
    refuse on their declared Content-Length."""

    def __init__(self, app: WSGIApplication, *, host: str, port: int, max_body_bytes: int) -> None:
        self._socket = socket.create_server((host, port), backlog=LISTEN_BACKLOG)
        self._port = str(self._socket.getsockname()[1])  # the one bound, also when given 0
        self._app = app
        self._max_body_bytes = max_body_bytes

    def run(
        self,
        *,
        stop_on: Sequence[signal.Signals] = (),
        on_stop: Callable[[signal.Signals], None] = lambda signum: None,
    ) -> None:
        """Serve until one of `stop_on` arrives (`on_stop` is told which), then close; signals
        can only be given in the main thread."""
        loop = asyncio.new_event_loop()
        for signum in stop_on:
            loop.add_signal_handler(signum, _stop, loop, signum, on_stop)
        runner: web.ServerRunner | None = None
        try:
            runner = loop.run_until_complete(self._start())
            loop.run_forever()
        finally:
            if runner is not None:
                loop.run_until_complete(runner.cleanup())
            loop.close()

    async def _start(self) -> web.ServerRunner:
        server = web.Server(
            self._answer, access_log=None, logger=_OneLineRefusals(logging.getLogger("aiohttp"))
        )
        runner = web.ServerRunner(server, shutdown_timeout=SHUTDOWN_GRACE_S)
        await runner.setup()
        await web.SockSite(runner, self._socket, backlog=LISTEN_BACKLOG).start()
        return runner

    def close(self) -> None:
        """Release the port of a server that will not run."""
        self._socket.close()

    async def _answer(self, request: web.BaseRequest) -> web.Response:
        answer = _call(self._app, await self._environ(request))
        return web.Response(
            status=answer.status, reason=answer.reason, headers=answer.headers, body=answer.body
        )

    async def _environ(self, request: web.BaseRequest) -> WSGIEnvironment:
        """The WSGI environ of `request`, its body read unless declared too large."""
        declared = request.content_length
        too_large = declared is not None and declared > self._max_body_bytes
        body = b"" if too_large else await _read_at_most(request, self._max_body_bytes + 1)
        environ: dict[str, Any] = {
            "REQUEST_METHOD": request.method,
            "PATH_INFO": request.path,
            "QUERY_STRING": request.query_string,
            "CONTENT_TYPE": request.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": request.headers.get("Content-Length", str(len(body))),
            "SERVER_NAME": request.host.split(":", 1)[0],
            "SERVER_PORT": self._port,
            "SERVER_PROTOCOL": f"HTTP/{request.version.major}.{request.version.minor}",
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": False,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        for name in request.headers.keys() - {"Content-Type", "Content-Length"}:
            key = "HTTP_" + name.upper().replace("-", "_")
            environ[key] = ",".join(request.headers.getall(name))
        return environ


class _OneLineRefusals(logging.LoggerAdapter):  # type: ignore[type-arg]
    """aiohttp's logger for its connections: a request its parser refuses (aiohttp answers it
    400) is one warning naming the reason, with no traceback and none of the request's bytes (a
    header may carry a token); anything else is logged as aiohttp logs it."""

    def exception(self, msg: object, *args: object, exc_info: Any = True, **kwargs: Any) -> None:
        if isinstance(exc_info, HttpProcessingError):
            reason = exc_info.message.split("\n", 1)[0].rstrip(": ")
            log.warning("http_request_unparsable", status=exc_info.code, reason=reason)
            return
        super().exception(msg, *args, exc_info=exc_info, **kwargs)


def _stop(
    loop: asyncio.AbstractEventLoop,
    signum: signal.Signals,
    on_stop: Callable[[signal.Signals], None],
) -> None:
    on_stop(signum)
    loop.stop()


async def _read_at_most(request: web.BaseRequest, limit: int) -> bytes:
    """The body, or its first `limit` bytes when longer (a chunked body declares no length)."""
    body = bytearray()
    while len(body) < limit:
        chunk = await request.content.read(limit - len(body))
        if not chunk:
            break
        body += chunk
    return bytes(body)


@dataclass
class _Answer:
    status: int = 500
    reason: str = "Internal Server Error"
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b'{"error": "internal error"}'


def _call(app: WSGIApplication, environ: WSGIEnvironment) -> _Answer:
    """Run the WSGI application on one request; a failure is a 500."""
    answer = _Answer()

    def start_response(
        status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Callable[[bytes], object]:
        code, _, reason = status.partition(" ")
        answer.status, answer.reason = int(code), reason
        answer.headers = [
            (name, value) for name, value in headers if name.lower() != "content-length"
        ]
        return _no_write

    try:
        chunks = app(environ, start_response)
        try:
            answer.body = b"".join(chunks)
        finally:
            getattr(chunks, "close", lambda: None)()
    except Exception:
        log.error("http_request_failed", path=environ.get("PATH_INFO"), exc_info=True)
        return _Answer()
    return answer


def _no_write(data: bytes) -> object:
    raise NotImplementedError("the bot's WSGI applications return their body")
