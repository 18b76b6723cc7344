"""The WSGI application of /slack/events: checks a request, then hands it to Bolt's dispatch.

Called by server.build_wsgi_app. Every request passes these checks, in this order, before Bolt
sees it:

1. POST only (405 otherwise);
2. a Content-Length of at most MAX_BODY_BYTES (1 MiB; Slack's payloads are a few KiB): 400,
   and the body is not read;
3. Slack's signature (`X-Slack-Signature`, HMAC-SHA256 of `v0:{timestamp}:{body}` with the
   signing secret) and a timestamp within MAX_CLOCK_SKEW_S (5 min) of now: 401 otherwise, so a
   forged, tampered or replayed request never reaches a parser or a listener. This is the one
   signature check: the Bolt app is built with request_verification_enabled=False;
4. a body Bolt can read: UTF-8, `application/x-www-form-urlencoded` or `application/json`, and
   parsed by Bolt's own BoltRequest without error (a `payload` that is not a JSON object...):
   400 otherwise. That BoltRequest is the one dispatched: the body is parsed once.

A rejection is answered with a short JSON error and logged as one line naming the reason: no
traceback, and nothing from the body or the headers (which may carry a token).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from collections.abc import Callable, Iterable, Sequence
from http import HTTPStatus
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

import structlog
from slack_bolt.request import BoltRequest
from slack_bolt.response import BoltResponse

MAX_BODY_BYTES = 1024 * 1024
"""The largest body accepted on /slack/events; Slack's own payloads stay far below."""

MAX_CLOCK_SKEW_S = 5 * 60
"""A request whose X-Slack-Request-Timestamp is further from now is a replay (Slack's advice)."""

ACCEPTED_CONTENT_TYPES = frozenset({"application/x-www-form-urlencoded", "application/json"})
"""Slash commands and interactivity are form-encoded; the Events API posts JSON."""

_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_SIGNATURE = re.compile(r"v0=[0-9a-f]{64}")

log = structlog.get_logger("release_bot.request_guard")


class Rejected(Exception):
    """A request refused before Bolt: the HTTP status and a short reason for the answer."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


Dispatch = Callable[[BoltRequest], BoltResponse]
"""Bolt's App.dispatch: runs the listeners of a request, returns the acknowledgement."""


def guard_slack_events(
    dispatch: Dispatch, *, signing_secret: str, clock: Callable[[], float] = time.time
) -> WSGIApplication:
    """Bolt's `dispatch` behind the checks above; `signing_secret` is SLACK_SIGNING_SECRET."""
    return SlackEventsGuard(dispatch, signing_secret=signing_secret, clock=clock)


class SlackEventsGuard:
    """The WSGI application that checks a request, then dispatches it (see the module doc)."""

    def __init__(
        self,
        dispatch: Dispatch,
        *,
        signing_secret: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._dispatch = dispatch
        self._secret = signing_secret.encode()
        self._clock = clock

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        try:
            request = self._checked_request(environ)
        except Rejected as rejected:
            log.warning("slack_request_rejected", status=rejected.status, reason=rejected.reason)
            headers = [("Allow", "POST")] if rejected.status.startswith("405") else []
            return _respond(start_response, rejected.status, {"error": rejected.reason}, headers)
        return _answer(start_response, self._dispatch(request))

    def _checked_request(self, environ: WSGIEnvironment) -> BoltRequest:
        if environ.get("REQUEST_METHOD") != "POST":
            raise Rejected("405 Method Not Allowed", "only POST is accepted")
        body = _read_body(environ)
        self._verify_signature(environ, body)
        return _parsed(environ, body)

    def _verify_signature(self, environ: WSGIEnvironment, body: bytes) -> None:
        timestamp = environ.get("HTTP_X_SLACK_REQUEST_TIMESTAMP", "")
        signature = environ.get("HTTP_X_SLACK_SIGNATURE", "")
        if not self._secret or not _TIMESTAMP.fullmatch(timestamp):
            raise Rejected("401 Unauthorized", "invalid request signature")
        if abs(self._clock() - int(timestamp)) > MAX_CLOCK_SKEW_S:
            raise Rejected("401 Unauthorized", "stale request timestamp")
        if not _SIGNATURE.fullmatch(signature):
            raise Rejected("401 Unauthorized", "invalid request signature")
        base = b"v0:" + timestamp.encode() + b":" + body
        expected = "v0=" + hmac.new(self._secret, base, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected.encode(), signature.encode()):
            raise Rejected("401 Unauthorized", "invalid request signature")


def _read_body(environ: WSGIEnvironment) -> bytes:
    declared = environ.get("CONTENT_LENGTH") or "0"
    if not declared.isdigit():
        raise Rejected("400 Bad Request", "invalid Content-Length")
    length = int(declared)
    if length > MAX_BODY_BYTES:
        raise Rejected("400 Bad Request", f"request body over {MAX_BODY_BYTES} bytes")
    stream = environ.get("wsgi.input")
    body: bytes = stream.read(length) if stream is not None and length else b""
    return body


def _parsed(environ: WSGIEnvironment, body: bytes) -> BoltRequest:
    """Bolt's own parsing of the request, done here so its failure is a 400, not a crash."""
    content_type = environ.get("CONTENT_TYPE", "")
    if content_type.split(";", 1)[0].strip().lower() not in ACCEPTED_CONTENT_TYPES:
        raise Rejected("400 Bad Request", "unsupported Content-Type")
    try:
        text = body.decode("utf-8")
        request = BoltRequest(
            body=text, query=environ.get("QUERY_STRING", ""), headers=_headers(environ)
        )
    except Exception as error:  # whatever Bolt's parser trips on: a JSON error, a wrong shape
        raise Rejected("400 Bad Request", "malformed request body") from error
    if not isinstance(request.body, dict):
        raise Rejected("400 Bad Request", "malformed request body")
    return request


def _headers(environ: WSGIEnvironment) -> dict[str, str | Sequence[str]]:
    """The request's headers as Bolt names them (lower case, dashes), as its WSGI adapter does."""
    headers: dict[str, str | Sequence[str]] = {"content-type": environ.get("CONTENT_TYPE", "")}
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            headers[key[5:].lower().replace("_", "-")] = value
    return headers


def _answer(start_response: StartResponse, response: BoltResponse) -> list[bytes]:
    """Bolt's acknowledgement as the WSGI answer."""
    payload = response.body.encode()
    headers = [
        (name, value)
        for name, values in response.headers.items()
        if name.lower() != "content-length"
        for value in values
    ]
    status = HTTPStatus(response.status)
    start_response(
        f"{status.value} {status.phrase}", [*headers, ("Content-Length", str(len(payload)))]
    )
    return [payload]


def _respond(
    start_response: StartResponse,
    status: str,
    body: dict[str, str],
    extra_headers: list[tuple[str, str]],
) -> list[bytes]:
    payload = json.dumps(body).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))]
    start_response(status, [*headers, *extra_headers])
    return [payload]
