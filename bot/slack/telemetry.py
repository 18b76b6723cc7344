"""The Slack adapter's Prometheus metrics; recorded by bot.slack.announcer's _slack_call.

- release_bot_slack_call_seconds{method}: each Web API call (chat.postMessage, chat.update,
  chat.getPermalink), the Web API client's own waits and retries (429s, resets) included.
- release_bot_slack_call_errors_total{method,error_class}: calls that still failed, by the class
  of the error the announcer raised: "temporary" (every Slack failure is, today) or "permanent".
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

SLACK_CALL_SECONDS = Histogram(
    "release_bot_slack_call_seconds",
    "Duration of each Slack Web API call the announcer makes, retries included, by method",
    ["method"],
)
SLACK_CALL_ERRORS = Counter(
    "release_bot_slack_call_errors",
    "Slack Web API calls that failed, by method and error class (temporary or permanent)",
    ["method", "error_class"],
)
