"""The Slack side of the release service: a release's card, its thread replies, its channel alerts.

Built by bot.entrypoints.server with the bot's Web API client (bot.slack.client.build_web_client,
which already waits out 429s and retries connection errors) and handed to
bot.application.service.ReleaseService as its AnnouncerPort. The messages themselves come from
bot.slack.cards. Any call Slack still refuses becomes a TemporaryError naming the Web API method and
Slack's error code; the service logs it and the release's next change tries again."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import structlog
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.models.blocks import ContextBlock, MarkdownTextObject

from bot.core.apps import BotConfig
from bot.core.chart import ChartImage
from bot.core.errors import PermanentError, ReleaseBotError, TemporaryError
from bot.core.machine import Notify
from bot.core.ports import SlackRefs
from bot.core.release import Release
from bot.slack.cards import CardMessage, is_alarm, release_card, rollback_alert, thread_notice
from bot.slack.telemetry import SLACK_CALL_ERRORS, SLACK_CALL_SECONDS

log = structlog.get_logger(__name__)

# What a person can do about the Slack errors an announcer meets in practice.
_REMEDIES = {
    "channel_not_found": "check the app's slack_channel in the apps file",
    "not_in_channel": "invite the bot to the channel (/invite @release-bot)",
    "is_archived": "unarchive the channel or give the app another slack_channel",
    "message_not_found": "the card message is gone (deleted?); the release goes on without it",
    "ratelimited": "Slack kept rate-limiting the bot through its retries; the next change retries",
    "invalid_auth": "check SLACK_BOT_TOKEN",
    "token_revoked": "reinstall the Slack app and update SLACK_BOT_TOKEN",
    "missing_scope": "add the scopes of deploy/slack-app-manifest.yaml (chat:write, files:write) "
    "to the Slack app and reinstall it",
}


class SlackAnnouncer:
    """Posts a release's card once, then edits it; replies in its thread; alerts its channel."""

    def __init__(
        self,
        *,
        client: WebClient,
        config: BotConfig,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._client = client
        self._config = config
        self._clock = clock

    def show_card(self, release: Release) -> SlackRefs:
        """Post the card when the release has none yet (its ts starts the thread), else edit it."""
        card = release_card(release, now=self._clock()).payload()
        if release.card_ts is None:
            with _slack_call("chat.postMessage", f"posting the card of {_name(release)}"):
                posted = self._client.chat_postMessage(channel=release.channel, **card)
            ts = str(posted["ts"])
            return SlackRefs(card_ts=ts, thread_ts=ts)
        with _slack_call("chat.update", f"updating the card of {_name(release)}"):
            self._client.chat_update(channel=release.channel, ts=release.card_ts, **card)
        return SlackRefs(card_ts=release.card_ts, thread_ts=release.thread_ts or release.card_ts)

    def notify(self, release: Release, notice: Notify) -> None:
        """A reply in the release's thread; an `in_channel` notice is also posted in the channel:
        an alarm opened by the app's alert_mention, an approval request without it.

        The thread must exist: the service posts the card first. The alert goes out even when
        the thread reply failed, since it is what tells people the release stopped.
        """
        if release.thread_ts is None:
            raise TemporaryError(
                f"the {notice.kind} notice of {_name(release)} was not posted: the release has "
                "no card yet, so no thread to reply in; its next change posts the card again"
            )
        try:
            with _slack_call("chat.postMessage", f"replying in the thread of {_name(release)}"):
                self._client.chat_postMessage(
                    channel=release.channel,
                    thread_ts=release.thread_ts,
                    **thread_notice(notice, release).payload(),
                )
        finally:
            if notice.in_channel:
                self._alert(release, notice, thread_ts=release.thread_ts)

    def share_chart(self, release: Release, chart: ChartImage, *, in_channel: bool) -> None:
        """The 3-step external upload (files_upload_v2) into the thread, or into the channel
        under the alert it belongs to; a failure is logged, never raised: the text went out."""
        thread_ts = None if in_channel else release.thread_ts
        where = "the channel" if thread_ts is None else "the thread"
        try:
            with _slack_call("files_upload_v2", f"sharing a chart of {_name(release)}"):
                self._client.files_upload_v2(
                    channel=release.channel,
                    thread_ts=thread_ts,
                    content=chart.png,
                    filename=chart.filename,
                    title=chart.title,
                    alt_txt=chart.alt_text,
                )
        except TemporaryError as error:
            log.warning("chart_not_shared", release=release.id, where=where, error=str(error))

    def _alert(self, release: Release, notice: Notify, *, thread_ts: str) -> None:
        mention = (
            (self._config.app(release.app).alert_mention or None) if is_alarm(notice) else None
        )
        alert = rollback_alert(release, notice, mention=mention)
        message = _with_pointer(alert, self._thread_pointer(release, thread_ts))
        with _slack_call("chat.postMessage", f"alerting the channel about {_name(release)}"):
            self._client.chat_postMessage(
                channel=release.channel,
                unfurl_links=False,  # the pointer is enough; a preview of the card is noise
                unfurl_media=False,
                **message.payload(),
            )

    def _thread_pointer(self, release: Release, thread_ts: str) -> str:
        """A link to the release's thread; the alert matters more, so it goes without on failure."""
        try:
            with _slack_call("chat.getPermalink", f"linking the thread of {_name(release)}"):
                permalink = self._client.chat_getPermalink(
                    channel=release.channel, message_ts=thread_ts
                )["permalink"]
        except TemporaryError as error:
            log.warning("alert_without_thread_link", release=release.id, error=str(error))
            return "🧵 Details and buttons: the thread under the release card."
        return f"🧵 <{permalink}|Open the release thread> for details and buttons."


def _with_pointer(alert: CardMessage, pointer: str) -> CardMessage:
    link = ContextBlock(elements=[MarkdownTextObject(text=pointer)])
    return CardMessage(text=alert.text, blocks=(*alert.blocks, link))


def _name(release: Release) -> str:
    return f"{release.app} {release.version} (channel {release.channel})"


@contextmanager
def _slack_call(method: str, doing: str) -> Iterator[None]:
    """Turns a refused or unreachable Web API call into a TemporaryError people can act on;
    times every call and counts the failed ones (bot.slack.telemetry)."""
    started = time.perf_counter()
    try:
        with _translated(method, doing):
            yield
    except ReleaseBotError as error:
        error_class = "permanent" if isinstance(error, PermanentError) else "temporary"
        SLACK_CALL_ERRORS.labels(method=method, error_class=error_class).inc()
        raise
    finally:
        SLACK_CALL_SECONDS.labels(method=method).observe(time.perf_counter() - started)


@contextmanager
def _translated(method: str, doing: str) -> Iterator[None]:
    try:
        yield
    except SlackApiError as error:
        raise TemporaryError(_refusal(method, doing, error)) from error
    except SlackClientError as error:  # files_upload_v2's upload step answering other than 200
        raise TemporaryError(f"Slack {method} failed while {doing}: {error}") from error
    except OSError as error:  # urllib's URLError, timeouts, resets, after the client's retries
        raise TemporaryError(
            f"Slack {method} failed while {doing}: Slack could not be reached ({error}); "
            "check SLACK_API_URL and the network, the next change tries again"
        ) from error


def _refusal(method: str, doing: str, error: SlackApiError) -> str:
    response = error.response
    code = str(response.get("error") or "no error code")
    if response.status_code != 200:
        code += f" (HTTP {response.status_code})"
    remedy = _REMEDIES.get(str(response.get("error")), "the next change tries again")
    return f"Slack {method} failed while {doing}: {code}; {remedy}"
