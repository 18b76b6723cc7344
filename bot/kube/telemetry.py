"""The Kubernetes adapter's Prometheus metrics; recorded by bot.kube.client's NamespacedResources.

- release_bot_kube_call_seconds{verb,resource}: each HTTP request to the apiserver (every retry
  is one), by verb (get, list, create, update, patch, delete) and resource (kubectl's name:
  deployments.apps, services, virtualservices.networking.istio.io, ...).
- release_bot_kube_call_errors_total{verb,resource,error_class}: requests that failed, by the
  class of the translated error: "temporary" (retried) or "permanent". A 404 to a get or a delete
  is an answer (absent, already gone), not an error.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

KUBE_CALL_SECONDS = Histogram(
    "release_bot_kube_call_seconds",
    "Duration of each Kubernetes API request, by verb and resource",
    ["verb", "resource"],
)
KUBE_CALL_ERRORS = Counter(
    "release_bot_kube_call_errors",
    "Kubernetes API requests that failed, by verb, resource and error class",
    ["verb", "resource", "error_class"],
)
