"""bot.entrypoints.http_server on a real socket: what a WSGI application sees of a request, and
what the client gets back (the bot's own routes are tested through `release-bot serve`)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterable, Iterator
from typing import Any

import pytest
import requests
from structlog.testing import capture_logs

from bot.entrypoints.http_server import HttpServer
from tests.infra.processes import free_port

LIMIT = 64


def _echo(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    if environ["PATH_INFO"] == "/boom":
        raise RuntimeError("the application failed")
    body = environ["wsgi.input"].read()
    seen = {
        "method": environ["REQUEST_METHOD"],
        "query": environ["QUERY_STRING"],
        "content_type": environ["CONTENT_TYPE"],
        "content_length": environ["CONTENT_LENGTH"],
        "signature": environ.get("HTTP_X_SLACK_SIGNATURE"),
        "body": body.decode(),
    }
    payload = json.dumps(seen).encode()
    start_response(
        "201 Created",
        [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))],
    )
    return [payload]


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    port = free_port()
    server = HttpServer(_echo, host="127.0.0.1", port=port, max_body_bytes=LIMIT)
    threading.Thread(target=server.run, name="http-server-under-test", daemon=True).start()
    yield f"http://127.0.0.1:{port}"


def test_the_application_sees_method_query_headers_and_body(base_url: str) -> None:
    response = requests.post(
        f"{base_url}/slack/events?a=1",
        data=b"text=status",
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Signature": "v0=abc",
        },
        timeout=5,
    )

    assert response.status_code == 201
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == {
        "method": "POST",
        "query": "a=1",
        "content_type": "application/x-www-form-urlencoded",
        "content_length": "11",
        "signature": "v0=abc",
        "body": "text=status",
    }


def test_a_body_declared_over_the_limit_is_left_unread(base_url: str) -> None:
    response = requests.post(f"{base_url}/x", data=b"y" * (LIMIT + 1), timeout=5)

    assert response.json()["content_length"] == str(LIMIT + 1)
    assert response.json()["body"] == ""


def test_a_chunked_body_is_read_up_to_one_byte_past_the_limit(base_url: str) -> None:
    chunks = iter([b"z" * LIMIT, b"z" * LIMIT])

    response = requests.post(f"{base_url}/x", data=chunks, timeout=5)

    assert response.json()["body"] == "z" * (LIMIT + 1)
    assert response.json()["content_length"] == str(LIMIT + 1)


def test_a_failing_application_answers_500_and_the_server_goes_on(base_url: str) -> None:
    failed = requests.get(f"{base_url}/boom", timeout=5)
    after = requests.get(f"{base_url}/fine", timeout=5)

    assert failed.status_code == 500
    assert failed.json() == {"error": "internal error"}
    assert after.status_code == 201


def test_a_taken_port_fails_when_the_server_is_built() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(OSError):
            HttpServer(_echo, host="127.0.0.1", port=port, max_body_bytes=LIMIT)


def test_a_request_the_parser_refuses_is_400_and_logged_in_one_line_without_its_bytes(
    base_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    port = int(base_url.rsplit(":", 1)[1])
    secret = b"xoxb-1-in-a-header"
    raw = b"POST /x HTTP/1.1\r\nHost: x\r\nContent-Type: \xb1\x7f" + secret + b"\r\n\r\n"

    with capture_logs() as logged, socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(raw)
        answer = sock.recv(4096)

    assert answer.split(b" ", 2)[1] == b"400"  # aiohttp answers it, its message quoting the header
    assert logged == [
        {
            "event": "http_request_unparsable",
            "status": 400,
            "reason": "Invalid header value char",
            "log_level": "warning",
        }
    ]
    assert not [record for record in caplog.records if record.exc_info]
    assert secret.decode() not in caplog.text
