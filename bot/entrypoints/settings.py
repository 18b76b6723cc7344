"""The bot's configuration from environment variables (12-factor).

Called by bot.entrypoints.server (`release-bot serve`) through `load_settings()`, and by the Slack
app factory (handlers.app), which receives the `Settings` it returns. Secrets are `SecretStr`, so
printing or logging a `Settings` never shows them."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from bot.application.service import RESYNC_S_DEFAULT, WORKERS_DEFAULT

SLACK_API_URL_DEFAULT = "https://slack.com/api/"
PORT_DEFAULT = 3000
TICK_SECONDS_DEFAULT = 5.0
LEASE_SECONDS_DEFAULT = 30.0
REDIS_WAIT_MS_DEFAULT = 500

_HELP = {
    "SLACK_BOT_TOKEN": "the bot token (xoxb-...) from the Slack app's OAuth page",
    "SLACK_SIGNING_SECRET": "the signing secret from the Slack app's Basic Information page "
    "(HTTP mode only)",
    "SLACK_APP_TOKEN": "an app-level token (xapp-...) with connections:write, for Socket Mode",
    "SLACK_API_URL": "the Slack Web API base URL",
    "PROMETHEUS_URL": "metrics for the apps that name no prometheus_url of their own",
    "KUBECONFIG": "outside a cluster only; in a pod the service account is used",
    "RELEASE_BOT_CONFIG": "the apps and plans file, a directory of them, or several joined by :",
    "PORT": "the HTTP port to listen on",
    "RELEASE_BOT_TICK_SECONDS": "seconds between two scheduler passes over the active releases",
    "RELEASE_BOT_LEASE_SECONDS": "how long a replica's claim on a release outlives the replica",
    "RELEASE_BOT_WORKERS": "releases one replica works at once (a hanging one holds only its own)",
    "RELEASE_BOT_RESYNC_SECONDS": "the longest a release goes without a pass (drift repair)",
    "REDIS_URL": "release state, locks, leases and audit trail (redis://host:port/db; use AOF "
    "persistence); or REDIS_SENTINELS for Sentinel",
    "REDIS_SENTINELS": "Sentinel addresses, host:port,host:port,... (instead of REDIS_URL)",
    "REDIS_SENTINEL_MASTER": "the master name the Sentinels monitor (with REDIS_SENTINELS)",
    "REDIS_PASSWORD": "optional: the password of the Redis primary and replicas (requirepass)",
    "REDIS_SENTINEL_PASSWORD": "optional: the password of the Sentinels",
    "RELEASE_BOT_REDIS_REPLICAS_TO_WAIT": "replicas that must confirm each saved transition",
    "RELEASE_BOT_REDIS_WAIT_MS": "how long a save waits for the replicas to confirm it",
    "RELEASE_BOT_CRASH_AT": "recovery drills only: saved or reconciled",
    "RELEASE_BOT_AUDIT_RETENTION_DAYS": "days an audit entry is kept (trimmed as entries append)",
    "LOG_LEVEL": "one of DEBUG, INFO, WARNING, ERROR",
}


class SettingsError(ValueError):
    """The environment does not describe a runnable bot; the message names each bad variable."""


class Settings(BaseSettings):
    """Every environment variable the bot reads; the field name upper-cased is the variable."""

    model_config = SettingsConfigDict(case_sensitive=False, env_ignore_empty=True, extra="ignore")

    slack_bot_token: SecretStr
    slack_app_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = Field(default=None, validate_default=True)
    """Required in HTTP mode; validated after slack_app_token, which decides the mode."""
    slack_api_url: str = SLACK_API_URL_DEFAULT
    redis_url: str | None = None
    redis_sentinels: str | None = None
    """host:port,host:port,...: the Sentinels to ask for the master (instead of REDIS_URL)."""
    redis_sentinel_master: str | None = None
    redis_password: SecretStr | None = None
    redis_sentinel_password: SecretStr | None = None
    release_bot_redis_replicas_to_wait: int | None = Field(default=None, ge=0, le=16)
    """None: 1 with Sentinel, 0 with a plain REDIS_URL (see `redis_replicas_to_wait`)."""
    release_bot_redis_wait_ms: int = Field(default=REDIS_WAIT_MS_DEFAULT, ge=1, le=1500)
    """Below the 2 s socket timeout of `connect`, and well inside Slack's 3 s to answer."""
    prometheus_url: str | None = None
    kubeconfig: Path | None = None
    release_bot_config: Path | None = None
    release_bot_tick_seconds: float = Field(default=TICK_SECONDS_DEFAULT, gt=0, le=3600)
    release_bot_lease_seconds: float = Field(default=LEASE_SECONDS_DEFAULT, gt=0, le=3600)
    release_bot_workers: int = Field(default=WORKERS_DEFAULT, ge=1, le=256)
    """The release service's worker pool (bot.application.service.ReleaseService `workers`)."""
    release_bot_resync_seconds: float = Field(default=RESYNC_S_DEFAULT, gt=0, le=86400)
    """ReleaseService `resync_s`: a release nothing is due for is still reconciled this often."""
    release_bot_crash_at: Literal["saved", "reconciled"] | None = None
    """Recovery drills only: die at that point of the next transition (see
    bot.application.service)."""
    release_bot_audit_retention_days: int = Field(default=400, ge=1)
    """Audit entries older than this are trimmed as new ones are appended (bot.redis.store)."""
    port: int = Field(default=PORT_DEFAULT, ge=1, le=65535)
    log_level: str = "INFO"

    @property
    def socket_mode(self) -> bool:
        """Socket Mode when an app-level token is configured, else HTTP mode (/slack/events)."""
        return self.slack_app_token is not None

    @property
    def signing_secret(self) -> str:
        """SLACK_SIGNING_SECRET's value; '' in Socket Mode, where none is needed."""
        secret = self.slack_signing_secret
        return secret.get_secret_value() if secret else ""

    @property
    def redis_configured(self) -> bool:
        return self.redis_url is not None or self.redis_sentinels is not None

    @property
    def sentinel_addresses(self) -> list[tuple[str, int]]:
        """REDIS_SENTINELS as (host, port) pairs; [] without Sentinel."""
        return parse_host_ports(self.redis_sentinels) if self.redis_sentinels else []

    @property
    def redis_replicas_to_wait(self) -> int:
        """Replicas each state-changing write waits for (Redis WAIT); 0: no WAIT at all."""
        if self.release_bot_redis_replicas_to_wait is not None:
            return self.release_bot_redis_replicas_to_wait
        return 1 if self.redis_sentinels else 0

    def secret_values(self) -> tuple[str, ...]:
        """The plain values that must never appear in a log line."""
        secrets = (
            self.slack_bot_token,
            self.slack_signing_secret,
            self.slack_app_token,
            self.redis_password,
            self.redis_sentinel_password,
        )
        return tuple(secret.get_secret_value() for secret in secrets if secret is not None)

    @field_validator("slack_bot_token")
    @classmethod
    def _bot_token_shape(cls, token: SecretStr) -> SecretStr:
        if not token.get_secret_value().startswith("xoxb-"):
            raise ValueError("must be a bot token starting with xoxb-")
        return token

    @field_validator("slack_app_token")
    @classmethod
    def _app_token_shape(cls, token: SecretStr | None) -> SecretStr | None:
        if token is not None and not token.get_secret_value().startswith("xapp-"):
            raise ValueError("must be an app-level token starting with xapp-")
        return token

    @field_validator("slack_api_url")
    @classmethod
    def _api_url_shape(cls, url: str) -> str:
        if not url.startswith(("https://", "http://")):
            raise ValueError(f"must be an http(s) URL, got {url!r}")
        return url if url.endswith("/") else url + "/"

    @field_validator("log_level")
    @classmethod
    def _known_log_level(cls, level: str) -> str:
        name = level.upper()
        if name not in logging.getLevelNamesMapping():
            raise ValueError(f"must be a logging level name, got {level!r}")
        return name

    @field_validator("redis_sentinels")
    @classmethod
    def _sentinels_shape(cls, sentinels: str | None) -> str | None:
        if sentinels is not None:
            parse_host_ports(sentinels)
        return sentinels

    @model_validator(mode="after")
    def _one_redis(self) -> Settings:
        if self.redis_url is not None and self.redis_sentinels is not None:
            raise ValueError(
                "REDIS_URL and REDIS_SENTINELS are both set: set REDIS_URL for one Redis, or "
                "REDIS_SENTINELS (with REDIS_SENTINEL_MASTER) for Redis behind Sentinel"
            )
        if self.redis_sentinels is not None and self.redis_sentinel_master is None:
            raise ValueError(
                "REDIS_SENTINELS is set but REDIS_SENTINEL_MASTER is not: name the master the "
                "Sentinels monitor"
            )
        if self.redis_sentinel_master is not None and self.redis_sentinels is None:
            raise ValueError("REDIS_SENTINEL_MASTER is set but REDIS_SENTINELS is not")
        return self

    @field_validator("slack_signing_secret")
    @classmethod
    def _http_mode_needs_signing_secret(
        cls, secret: SecretStr | None, info: ValidationInfo
    ) -> SecretStr | None:
        """A field validator, not a model one, so it is reported with every other bad variable;
        a bad SLACK_APP_TOKEN (absent from info.data) is reported alone."""
        http_mode = "slack_app_token" in info.data and info.data["slack_app_token"] is None
        if secret is None and http_mode:
            raise ValueError("is required in HTTP mode (no SLACK_APP_TOKEN is set)")
        return secret


def parse_host_ports(text: str) -> list[tuple[str, int]]:
    """`host:port,host:port,...` as pairs; ValueError naming the first bad item."""
    addresses = []
    for item in (part.strip() for part in text.split(",")):
        host, colon, port = item.rpartition(":")
        if not colon or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError(
                f"must be host:port pairs separated by commas (as in "
                f"sentinel-0:26379,sentinel-1:26379), got {item!r}"
            )
        addresses.append((host.strip("[]"), int(port)))
    return addresses


def load_settings() -> Settings:
    """Read the settings from the environment; raise SettingsError naming every bad variable."""
    try:
        return Settings()  # type: ignore[call-arg]  # pydantic-settings fills fields from the environment
    except ValidationError as error:
        raise SettingsError(_describe(error)) from None


def _describe(error: ValidationError) -> str:
    """One line per problem, naming the variable; never echoes a value (it may be a secret)."""
    lines = []
    for problem in error.errors(include_input=False, include_url=False):
        variable = str(problem["loc"][0]).upper() if problem["loc"] else ""
        reason = problem["msg"].removeprefix("Value error, ")
        if problem["type"] == "missing":
            lines.append(
                f"missing environment variable {variable} ({_HELP.get(variable, 'required')})"
            )
        elif variable:
            lines.append(f"environment variable {variable}: {reason}")
        else:
            lines.append(reason)
    return "invalid configuration:\n  " + "\n  ".join(lines)


def environment_help() -> list[tuple[str, str]]:
    """(variable, one line) for every field of Settings, in order, for `release-bot serve --help`.

    Built from the fields and _HELP, so a field without a line raises KeyError here (and in
    tests/test_serve_cli.py) instead of going undocumented."""
    lines = []
    for name, field in Settings.model_fields.items():
        variable = name.upper()
        text = _HELP[variable]
        if field.is_required():
            text += " (required)"
        elif field.default is not None:
            text += f" (default {field.default})"
        lines.append((variable, text))
    return lines
