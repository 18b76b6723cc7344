"""`release-bot serve`: runs the Slack app in HTTP mode or Socket Mode, plus health and metrics.

Called by bot.entrypoints.cli. It wires the adapters to the release service and the service to
the Slack listeners (handlers.app.build_app), then serves one WSGI application on PORT
(bot.entrypoints.http_server: aiohttp's event loop): `/slack/events` (HTTP mode only),
`/healthz` (the process lives), `/readyz` (Readiness: the token verified, releases configured,
Redis and the apiserver answering) and `/metrics`. Logs are JSON lines on stdout, and every
secret in them is replaced by [REDACTED]; a fatal error ends in one plain line on stderr and an
exit code of bot.entrypoints.exit_codes.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

import structlog
from prometheus_client import Histogram, make_wsgi_app
from slack_bolt import App
from slack_bolt.adapter.socket_mode import SocketModeHandler
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.web import SlackResponse
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_never
from tenacity.wait import wait_exponential

from bot.application.apps_file import ConfigError, load_config
from bot.application.checks import CanaryChecks
from bot.application.home import AppHome
from bot.application.scheduler import Scheduler
from bot.application.service import CrashPoint, ReleaseService
from bot.charts.render import MatplotlibCharts
from bot.core.errors import ReleaseBotError
from bot.core.text import REDACTED, SLACK_TOKEN_PATTERN
from bot.entrypoints.exit_codes import (
    EXIT_BAD_CONFIG,
    EXIT_OK,
    EXIT_PORT_UNAVAILABLE,
    EXIT_SLACK_REFUSED,
    EXIT_SLACK_UNREACHABLE,
)
from bot.entrypoints.http_server import HttpServer
from bot.entrypoints.request_guard import MAX_BODY_BYTES, Dispatch, guard_slack_events
from bot.entrypoints.settings import Settings, SettingsError, load_settings
from bot.kube.client import apiserver_ready, build_api_client
from bot.kube.reconciler import KubernetesCluster
from bot.metrics.prometheus import PrometheusMetrics
from bot.redis.clock import ServerClock
from bot.redis.home import HomeViewers
from bot.redis.leases import Leases
from bot.redis.store import ReleaseStore, connect
from bot.slack.announcer import SlackAnnouncer
from bot.slack.client import build_web_client
from bot.slack.home import SlackHome
from bot.slack.membership import SlackMembership
from handlers.app import build_app

READINESS_TIMEOUT_S = 0.5
"""How long /readyz waits for Redis or the apiserver before counting it as down."""
READINESS_MAX_AGE_S = 1.0
"""How long one answer of Redis or the apiserver stands for /readyz, so probes stay cheap."""

SLACK_EVENTS_PATH = "/slack/events"
"""Where Slack sends commands, clicks and events in HTTP mode (deploy/slack-app-manifest.yaml)."""

SECRET_VARIABLES = ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN")
"""Dropped from os.environ once read: nothing after Settings reads them behind its back (Bolt's
App takes SLACK_BOT_TOKEN from there and warns that it is unused beside our client), and no
child process inherits them."""

REJECTED_TOKEN_ERRORS = frozenset(
    {"invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired"}
)
"""auth.test errors that no retry can fix: the operator must change SLACK_BOT_TOKEN."""


SLACK_EVENT_SECONDS = Histogram(
    "release_bot_slack_event_seconds",
    "Time to answer a request on /slack/events, by HTTP status",
    ["status"],
)

log = structlog.get_logger("release_bot.server")


def serve() -> int:
    """Run until SIGTERM or SIGINT; return the process exit code."""
    try:
        settings = load_settings()
    except SettingsError as error:
        print(f"release-bot: {error}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    for name in SECRET_VARIABLES:
        os.environ.pop(name, None)
    configure_logging(level=settings.log_level, secrets=settings.secret_values())
    client = build_web_client(
        token=settings.slack_bot_token.get_secret_value(), base_url=settings.slack_api_url
    )
    readiness = Readiness()
    try:
        wired = build_service(settings=settings, client=client, readiness=readiness)
    except (ConfigError, ReleaseBotError) as error:
        return fatal(str(error), EXIT_BAD_CONFIG)
    service, home = wired if wired else (None, None)
    app = build_app(client=client, service=service, home=home)
    scheduler = (
        Scheduler(tick=_pass(service, home), interval_s=settings.release_bot_tick_seconds)
        if service and home
        else None
    )
    return _run(app, settings, scheduler, readiness)


def fatal(reason: str, exit_code: int) -> int:
    """Why the bot stops, as the last log line and as one plain line on stderr; the exit code."""
    log.error("fatal", reason=reason, exit_code=exit_code)
    print(f"release-bot: {reason}", file=sys.stderr, flush=True)
    return exit_code


def _pass(service: ReleaseService, home: AppHome) -> Callable[[float], None]:
    """One scheduler pass (waiting at most `wait_s` for its releases): the releases, then the
    App Home refreshes their changes made due."""

    def run(wait_s: float) -> None:
        service.tick(wait_s)
        home.publish_due()

    return run


def build_service(
    *, settings: Settings, client: WebClient, readiness: Readiness
) -> tuple[ReleaseService, AppHome] | None:
    """The release service on the configured apps file, Redis, cluster and Slack, with their
    readiness checks, and the App Home beside it; None (and a warning) when the apps file or
    Redis is not configured: the bot then only answers help, and /readyz says
    releases_configured false and what is missing."""
    config_path, redis = settings.release_bot_config, settings.redis_url or settings.redis_sentinels
    if config_path is None or redis is None:
        unset = (("RELEASE_BOT_CONFIG", config_path), ("REDIS_URL or REDIS_SENTINELS", redis))
        missing = [name for name, value in unset if value is None]
        log.warning("releases_disabled", missing=missing)
        readiness.add("releases_configured", lambda: False, detail={"missing": missing})
        return None
    config = load_config(*str(config_path).split(":"))
    kubeconfig = str(settings.kubeconfig) if settings.kubeconfig else None
    metrics = PrometheusMetrics(default_url=settings.prometheus_url)
    redis_client = _connect_redis(settings)
    store = ReleaseStore(
        redis_client,
        replicas_to_wait=settings.redis_replicas_to_wait,
        wait_ms=settings.release_bot_redis_wait_ms,
        audit_retention_days=settings.release_bot_audit_retention_days,
    )
    api = build_api_client(kubeconfig)
    readiness.add("releases_configured", lambda: True)
    readiness.add("redis", _probe(store.ping))
    readiness.add(
        "kube_apiserver", _probe(lambda: apiserver_ready(api, timeout_s=READINESS_TIMEOUT_S))
    )
    crash_at = settings.release_bot_crash_at
    clock = ServerClock(store=store)
    viewers = HomeViewers(redis_client)
    service = ReleaseService(
        config=config,
        store=store,
        leases=Leases(store=store, ttl_s=settings.release_bot_lease_seconds),
        clock=clock,
        home_viewers=viewers,
        crash_at=CrashPoint(crash_at) if crash_at else None,
        cluster=KubernetesCluster(api),
        announcer=SlackAnnouncer(client=client, config=config),
        membership=SlackMembership(client=client),
        checks=CanaryChecks(metrics=metrics, charts=MatplotlibCharts()),
        workers=settings.release_bot_workers,
        resync_s=settings.release_bot_resync_seconds,
    )
    home = AppHome(
        service=service, viewers=viewers, publisher=SlackHome(client=client), clock=clock
    )
    return service, home


def _connect_redis(settings: Settings) -> Any:
    """REDIS_URL's Redis, or the master REDIS_SENTINELS name for REDIS_SENTINEL_MASTER."""
    password, sentinel_password = settings.redis_password, settings.redis_sentinel_password
    return connect(
        settings.redis_url,
        sentinels=settings.sentinel_addresses,
        master=settings.redis_sentinel_master,
        password=password.get_secret_value() if password else None,
        sentinel_password=sentinel_password.get_secret_value() if sentinel_password else None,
    )


def _probe(check: Callable[[], bool]) -> CachedCheck:
    return CachedCheck(check, timeout_s=READINESS_TIMEOUT_S, max_age_s=READINESS_MAX_AGE_S)


def _run(app: App, settings: Settings, scheduler: Scheduler | None, readiness: Readiness) -> int:
    stopper = Stopper()
    verifier = SlackTokenVerifier(app.client, on_rejected=stopper.fail)
    readiness.add("slack_auth", verifier.verified.is_set)
    app_token = settings.slack_app_token
    socket_mode = SocketModeHandler(app, app_token.get_secret_value()) if app_token else None
    mode = "socket" if socket_mode else "http"
    log.info("starting", mode=mode, port=settings.port, slack_api_url=settings.slack_api_url)
    wsgi_app = build_wsgi_app(
        slack_events=None if socket_mode else app.dispatch,
        signing_secret=settings.signing_secret,
        readiness=readiness,
    )
    try:  # bind first: a taken port fails at once, before anything talks to Slack
        server = HttpServer(
            wsgi_app,
            host="0.0.0.0",
            port=settings.port,
            max_body_bytes=MAX_BODY_BYTES,
        )
    except OSError as error:
        return fatal(
            f"cannot listen on PORT {settings.port}: {error.strerror or error}; another process "
            "holds it (stop it or choose another PORT)",
            EXIT_PORT_UNAVAILABLE,
        )
    if socket_mode is not None:
        failure = _connect_socket_mode(socket_mode, readiness, settings.slack_api_url)
        if failure is not None:
            # Its threads would go on reconnecting, and logging, after the fatal line.
            socket_mode.client.logger.disabled = True
            socket_mode.client.close()
            server.close()
            return fatal(*failure)
    verifier.start()
    if scheduler is not None:
        scheduler.start()
        readiness.add("scheduler", scheduler.is_alive)
    try:
        server.run(stop_on=(signal.SIGTERM, signal.SIGINT), on_stop=stopper.on_signal)
    finally:
        verifier.stop()
        if scheduler is not None:
            scheduler.stop()
        if socket_mode is not None:
            socket_mode.client.close()
    log.info("stopped", exit_code=stopper.exit_code)
    return stopper.exit_code


def _connect_socket_mode(
    handler: SocketModeHandler, readiness: Readiness, api_url: str
) -> tuple[str, int] | None:
    """Open the Socket Mode WebSocket; (why not, exit code) when that fails."""
    try:
        handler.client.connect()
    except SlackApiError as error:
        reason = (
            f"Slack refused the Socket Mode connection (SLACK_APP_TOKEN): {_slack_error(error)}"
        )
        return reason, EXIT_SLACK_REFUSED
    except OSError as error:  # urllib's URLError, after the client's retries: no answer at all
        cause = str(getattr(error, "reason", None) or error)
        return (
            f"Slack unreachable at SLACK_API_URL {api_url} to open Socket Mode "
            f"(apps.connections.open): {cause}; check SLACK_API_URL and the network",
            EXIT_SLACK_UNREACHABLE,
        )
    if not handler.client.is_connected():  # slack_sdk logs the WebSocket's failure and goes on
        return (
            "Slack's Socket Mode WebSocket could not be opened (the URL apps.connections.open "
            "gave is unreachable); check the network and proxies",
            EXIT_SLACK_UNREACHABLE,
        )
    readiness.add("slack_socket_mode", handler.client.is_connected)
    return None


class Stopper:
    """The exit code of a stop by SIGTERM or SIGINT, or by a fatal error in a worker thread
    (which sends the process SIGTERM, so the server's loop ends as on an operator's)."""

    def __init__(self) -> None:
        self.exit_code = EXIT_OK

    def on_signal(self, signum: signal.Signals) -> None:
        log.info("stopping", signal=signum.name)

    def fail(self, reason: str) -> None:
        self.exit_code = fatal(reason, EXIT_SLACK_REFUSED)
        os.kill(os.getpid(), signal.SIGTERM)  # a real one: the loop's handler wakes on it


class Readiness:
    """Named checks behind /readyz; the bot is ready when every check passes."""

    def __init__(self) -> None:
        self._checks: dict[str, Callable[[], bool]] = {}
        self._details: dict[str, Any] = {}

    def add(self, name: str, check: Callable[[], bool], *, detail: Any = None) -> None:
        """`detail` (JSON) is shown under /readyz's "details" while the check fails."""
        self._checks[name] = check
        if detail is not None:
            self._details[name] = detail

    def report(self) -> dict[str, bool]:
        return {name: _passes(check) for name, check in self._checks.items()}

    def body(self) -> dict[str, Any]:
        """/readyz's JSON: ready, every check's result, and the details of the failing ones."""
        checks = self.report()
        body: dict[str, Any] = {"ready": all(checks.values()), "checks": checks}
        details = {
            name: self._details[name]
            for name, ok in checks.items()
            if not ok and name in self._details
        }
        if details:
            body["details"] = details
        return body


class CachedCheck:
    """A check that asks another system (Redis, the apiserver), cheap enough for every probe.

    Its answer stands for `max_age_s`; a fresh one is asked for in a worker thread, one at a
    time, and a caller waits at most `timeout_s` for it: a check still running (a hung server)
    counts as failing, and callers never pile up threads behind it."""

    def __init__(
        self,
        check: Callable[[], bool],
        *,
        timeout_s: float,
        max_age_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._check = check
        self._timeout_s = timeout_s
        self._max_age_s = max_age_s
        self._clock = clock
        self._lock = threading.Lock()
        self._passed = False
        self._checked_at: float | None = None
        self._running: threading.Event | None = None  # set when the running check is done

    def __call__(self) -> bool:
        with self._lock:
            if self._checked_at is not None and self._clock() - self._checked_at < self._max_age_s:
                return self._passed
            done = self._running
            if done is None:
                done = self._running = threading.Event()
                threading.Thread(
                    target=self._refresh, args=(done,), name="readiness-check", daemon=True
                ).start()
        if not done.wait(self._timeout_s):
            return False
        with self._lock:
            return self._passed

    def _refresh(self, done: threading.Event) -> None:
        passed = _passes(self._check)
        with self._lock:
            self._passed, self._checked_at, self._running = passed, self._clock(), None
        done.set()


def _passes(check: Callable[[], bool]) -> bool:
    try:
        return check()
    except Exception:
        log.warning("readiness check raised", exc_info=True)
        return False


class SlackTokenVerifier:
    """Calls auth.test in the background until Slack answers; a rejected token stops the bot.

    tenacity retries a failed auth.test (Slack unreachable, or an error other than a rejected
    token) after 1 s, doubling up to MAX_BACKOFF_S; it sleeps on the stop event, so stop() ends
    the retries within one wait."""

    MAX_BACKOFF_S = 30.0

    def __init__(self, client: WebClient, *, on_rejected: Callable[[str], None]) -> None:
        self._client = client
        self._on_rejected = on_rejected
        self._stopping = threading.Event()
        self.verified = threading.Event()

    def start(self) -> None:
        threading.Thread(target=self._run, name="slack-auth-test", daemon=True).start()

    def stop(self) -> None:
        self._stopping.set()

    def _run(self) -> None:
        until_slack_answers = Retrying(
            retry=retry_if_exception(_worth_retrying_auth_test),
            stop=stop_never,
            wait=wait_exponential(multiplier=1.0, max=self.MAX_BACKOFF_S),
            sleep=self._sleep,
            before_sleep=_log_auth_test_retry,
        )
        try:
            response = until_slack_answers(self._auth_test)
        except SlackApiError as error:  # not retried: the token is rejected
            self._on_rejected(f"Slack rejected SLACK_BOT_TOKEN: {_slack_error(error)}")
            return
        if response is None:  # stopped before Slack answered
            return
        log.info("slack token verified", team=response.get("team"), bot=response.get("user"))
        self.verified.set()

    def _auth_test(self) -> SlackResponse | None:
        if self._stopping.is_set():
            return None
        return self._client.auth_test()

    def _sleep(self, seconds: float) -> None:
        self._stopping.wait(seconds)  # stop() wakes it


def _slack_error(error: SlackApiError) -> str:
    return str(error.response.get("error"))


def _worth_retrying_auth_test(error: BaseException) -> bool:
    """Slack unreachable, or any auth.test error but a rejected token (REJECTED_TOKEN_ERRORS)."""
    if isinstance(error, SlackApiError):
        return _slack_error(error) not in REJECTED_TOKEN_ERRORS
    return isinstance(error, OSError)


def _log_auth_test_retry(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome is not None else None
    if isinstance(error, SlackApiError):
        log.warning(
            "auth.test failed, retrying", error=_slack_error(error), retry_in_s=state.upcoming_sleep
        )
    else:
        log.warning(
            "Slack unreachable, retrying", error=repr(error), retry_in_s=state.upcoming_sleep
        )


def build_wsgi_app(
    *, slack_events: Dispatch | None, signing_secret: str, readiness: Readiness
) -> WSGIApplication:
    """Route /healthz, /readyz, /metrics and (when given Bolt's dispatch) /slack/events; 404 for
    anything else. /slack/events goes through request_guard first (signature, size and body
    checks), which hands Bolt the request it parsed."""
    metrics = make_wsgi_app()
    events = None
    if slack_events is not None:
        events = _timed(guard_slack_events(slack_events, signing_secret=signing_secret))

    def application(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/healthz":
            return _respond(start_response, "200 OK", {"status": "ok"})
        if path == "/readyz":
            body = readiness.body()
            status = "200 OK" if body["ready"] else "503 Service Unavailable"
            return _respond(start_response, status, body)
        if path == "/metrics":
            exposition: Iterable[bytes] = metrics(environ, start_response)
            return exposition
        if path == SLACK_EVENTS_PATH and events is not None:
            return events(environ, start_response)
        return _respond(start_response, "404 Not Found", {"error": f"no route for {path}"})

    return application


def _respond(start_response: StartResponse, status: str, body: dict[str, Any]) -> list[bytes]:
    payload = json.dumps(body).encode()
    start_response(
        status, [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))]
    )
    return [payload]


def _timed(app: WSGIApplication) -> WSGIApplication:
    """Record each answer's latency and status (Slack gives up after 3 s) in the histogram."""

    def application(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        started = time.perf_counter()
        statuses: list[str] = []

        def recording_start_response(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Callable[[bytes], object]:
            statuses.append(status.split(" ", 1)[0])
            return start_response(status, headers, exc_info)

        body = app(environ, recording_start_response)
        status = statuses[0] if statuses else "none"
        SLACK_EVENT_SECONDS.labels(status=status).observe(time.perf_counter() - started)
        return body

    return application


def configure_logging(*, level: str, secrets: Sequence[str]) -> None:
    """JSON lines on stdout for structlog and stdlib loggers (Bolt, slack_sdk, aiohttp) alike."""
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            SecretRedactor(secrets),
            structlog.processors.JSONRenderer(),
        ],
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


class SecretRedactor:
    """A structlog processor: replaces the given secrets and anything shaped like a Slack token."""

    def __init__(self, secrets: Sequence[str]) -> None:
        alternatives = [re.escape(secret) for secret in secrets if secret]
        self._pattern = re.compile("|".join([*alternatives, SLACK_TOKEN_PATTERN]))

    def __call__(
        self, logger: Any, method_name: str, event_dict: structlog.types.EventDict
    ) -> structlog.types.EventDict:
        return {key: self._redact(value) for key, value in event_dict.items()}

    def _redact(self, value: Any) -> Any:
        if value is None or isinstance(value, bool | int | float):
            return value
        text = value if isinstance(value, str) else str(value)
        return self._pattern.sub(REDACTED, text)
