"""The metrics adapter's own Prometheus metrics; recorded by bot.metrics.prometheus's _Call._result.

- release_bot_prometheus_query_seconds{kind}: each query the bot sends its Prometheus, by API
  kind: "instant" (/api/v1/query, a canary check's reading) or "range" (/api/v1/query_range, a
  snapshot's trend).
- release_bot_prometheus_query_errors_total{kind,error_class}: queries that failed: "permanent"
  when Prometheus rejected the query itself (a 4xx with its JSON error, bad PromQL: no retry
  helps), else "temporary" (unreachable, too slow, 5xx, 429, an answer that is no query result).
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

PROMETHEUS_QUERY_SECONDS = Histogram(
    "release_bot_prometheus_query_seconds",
    "Duration of each Prometheus query the bot sends, by kind (instant or range)",
    ["kind"],
)
PROMETHEUS_QUERY_ERRORS = Counter(
    "release_bot_prometheus_query_errors",
    "Prometheus queries that failed, by kind and error class (temporary or permanent)",
    ["kind", "error_class"],
)
