"""Servers that hang, for the isolation tests: a validating admission webhook (HTTPS, its own
self-signed CA) that the real apiserver calls and that makes some callers wait, and a TCP server
that accepts connections and never answers (a hung Prometheus).

Used by tests/test_isolation.py and bench/rollback_latency.py.
"""

from __future__ import annotations

import base64
import json
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from kubernetes import client as k8s

from tests.infra.processes import free_port


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A CA, and a certificate for 127.0.0.1 signed by it: (ca.crt, server.crt, server.key)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_crt = directory / "ca.key", directory / "ca.crt"
    key, csr, crt = directory / "server.key", directory / "server.csr", directory / "server.crt"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key),
             "-out", str(ca_crt), "-days", "1", "-subj", "/CN=hanging-webhook-ca")  # fmt: skip
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr),
             "-subj", "/CN=127.0.0.1")  # fmt: skip
    extensions = directory / "san.ext"
    extensions.write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key),
             "-CAcreateserial", "-out", str(crt), "-days", "1",
             "-extfile", str(extensions))  # fmt: skip
    return ca_crt, crt, key


class HangingWebhook:
    """A validating admission webhook on https://127.0.0.1:PORT/validate that allows every
    request; those `hangs(username)` picks it answers only after `hang_s` (or once stopped)."""

    def __init__(
        self, directory: Path, *, hangs: Callable[[str], bool], hang_s: float = 30.0
    ) -> None:
        self.ca_file, cert, key = make_certificates(directory)
        self._hangs, self._hang_s = hangs, hang_s
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self.held = 0
        """Requests being held right now."""
        self.held_total = 0
        self.seen: list[tuple[str, str, str]] = []  # (user, operation, resource) of each request
        self.port = free_port()
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self._server.daemon_threads = True
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/validate"

    @property
    def ca_bundle(self) -> str:
        return base64.b64encode(self.ca_file.read_bytes()).decode()

    def start(self) -> HangingWebhook:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # held requests are answered now
        self._server.shutdown()
        self._server.server_close()

    def _review(self, review: dict[str, Any]) -> dict[str, Any]:
        request = review["request"]
        user = request.get("userInfo", {}).get("username", "")
        resource = request.get("resource", {}).get("resource", "")
        with self._lock:
            self.seen.append((user, request.get("operation", ""), resource))
        if self._hangs(user):
            with self._lock:
                self.held += 1
                self.held_total += 1
            try:
                self._stopping.wait(self._hang_s)
            finally:
                with self._lock:
                    self.held -= 1
        return {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "response": {"uid": request["uid"], "allowed": True},
        }

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        webhook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                answer = json.dumps(webhook._review(json.loads(self.rfile.read(length)))).encode()
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                except OSError:
                    pass  # the apiserver gave up waiting

            def log_message(self, format: str, *args: Any) -> None:
                return

        return Handler


def register_webhook(
    api: k8s.ApiClient, webhook: HangingWebhook, *, name: str, namespace: str
) -> None:
    """A ValidatingWebhookConfiguration sending every write in `namespace` to `webhook`, failing
    closed, with the longest timeout the apiserver allows (30 s); waits until the apiserver
    calls it."""
    admission = k8s.AdmissionregistrationV1Api(api)
    admission.create_validating_webhook_configuration(
        {
            "metadata": {"name": name},
            "webhooks": [
                {
                    "name": f"{name}.release-bot.test",
                    "clientConfig": {"url": webhook.url, "caBundle": webhook.ca_bundle},
                    "rules": [
                        {
                            "operations": ["CREATE", "UPDATE", "DELETE"],
                            "apiGroups": ["*"],
                            "apiVersions": ["*"],
                            "resources": ["*"],
                            "scope": "Namespaced",
                        }
                    ],
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": namespace}
                    },
                    "failurePolicy": "Fail",
                    "sideEffects": "None",
                    "admissionReviewVersions": ["v1"],
                    "timeoutSeconds": 30,
                }
            ],
        }
    )


def delete_webhook(api: k8s.ApiClient, name: str) -> None:
    k8s.AdmissionregistrationV1Api(api).delete_validating_webhook_configuration(name)


class SilentTcpServer:
    """Accepts every connection and never sends a byte: a Prometheus that hangs."""

    def __init__(self) -> None:
        self.port = free_port()
        self._socket = socket.create_server(("127.0.0.1", self.port))
        self._accepted: list[socket.socket] = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self.connections = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> SilentTcpServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._socket.close()
        for connection in self._accepted:
            connection.close()

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                connection, _ = self._socket.accept()
            except OSError:
                return
            self._accepted.append(connection)  # kept open, never read nor answered
            self.connections += 1


def wait_held(webhook: HangingWebhook, *, timeout_s: float) -> None:
    """Until the webhook holds a request."""
    deadline = time.monotonic() + timeout_s
    while webhook.held == 0:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the webhook held no request within {timeout_s} s: {webhook.seen}")
        time.sleep(0.05)
