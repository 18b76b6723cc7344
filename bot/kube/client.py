"""Kubernetes API access, called by every bot/kube module; the server builds its ApiClient.

The server (bot.entrypoints.server) builds the ApiClient at start-up with `build_api_client`
and asks `apiserver_ready` for its /readyz;
workloads, routers and preflight read and write objects through `NamespacedResources`.

Objects travel as plain dicts (the JSON the apiserver speaks), so no field a typed model does
not know is ever dropped on a write. This is the one translator of Kubernetes API failures into
the bot's taxonomy (`_failure`): every failure leaves as a TemporaryError (408, 409 conflict,
425, 429, 5xx, apiserver unreachable: retried here with backoff, then raised for the next tick;
a Retry-After header sets `retry_after_s`) or a PermanentError (401, 403 as a `ForbiddenError`
naming the missing permission, 404 on a write, 422 invalid objects, any other 4xx). A 404 on a
read is an answer: `get` returns None. Each request is timed and each failure counted by verb
and resource (bot.kube.telemetry).
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

import tenacity
import urllib3
from kubernetes import client as k8s
from kubernetes import config as kube_config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

from bot.core.errors import PermanentError, ReleaseBotError, TemporaryError
from bot.kube.telemetry import KUBE_CALL_ERRORS, KUBE_CALL_SECONDS

Object = dict[str, Any]

REQUEST_TIMEOUT_S = (3.0, 10.0)  # (connect, read): a hung apiserver must not hang a release
RETRY_ATTEMPTS = 4
RETRY_BUDGET_S = 15.0
"""No retry starts once this long has passed since the first attempt: one call holds its
caller (one release's worker, bot.application.service) for at most about this plus one read
timeout, even while an admission webhook or the apiserver itself hangs."""
TEMPORARY_STATUSES = frozenset({408, 425, 429})  # and every 5xx; a 409 conflict too
_ABSENCE_IS_AN_ANSWER = frozenset({"get", "delete"})  # their 404 is no error (bot.kube.telemetry)

# Only TemporaryError is retried: a PermanentError (or any other exception) leaves at once.
_retry_temporary = tenacity.retry(
    retry=tenacity.retry_if_exception_type(TemporaryError),
    stop=tenacity.stop_after_attempt(RETRY_ATTEMPTS) | tenacity.stop_after_delay(RETRY_BUDGET_S),
    wait=tenacity.wait_exponential(multiplier=0.1, max=2),
    reraise=True,
)


def build_api_client(kubeconfig: str | None = None) -> k8s.ApiClient:
    """An ApiClient for `kubeconfig` (a path, or several joined by ':' as in KUBECONFIG), or for
    the pod's service account when it is None. Nothing global is configured."""
    try:
        configuration = k8s.Configuration()
        if kubeconfig:
            kube_config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=kubeconfig, client_configuration=configuration, persist_config=False
            )
        else:
            kube_config.load_incluster_config(  # type: ignore[no-untyped-call]
                client_configuration=configuration
            )
        return k8s.ApiClient(configuration)
    except (ConfigException, OSError) as error:
        source = (
            f"kubeconfig {kubeconfig}"
            if kubeconfig
            else "the in-cluster service account (outside a cluster, set KUBECONFIG)"
        )
        raise PermanentError(
            f"cannot configure the Kubernetes client from {source}: {error}"
        ) from error


def apiserver_ready(api: k8s.ApiClient, *, timeout_s: float) -> bool:
    """True when the apiserver answers GET /readyz with 200 within `timeout_s`: the server's
    readiness check (every identity may read /readyz: the system:public-info-viewer role)."""
    request = api.param_serialize(
        "GET", "/readyz", header_params={"Accept": "text/plain"}, auth_settings=["BearerToken"]
    )
    try:
        response = api.call_api(*request, _request_timeout=timeout_s)
        response.read()  # type: ignore[no-untyped-call]  # all of it: the connection is reused
    except (ApiException, urllib3.exceptions.HTTPError, OSError):
        return False
    return bool(response.status == 200)


@dataclass(frozen=True, slots=True)
class ResourceType:
    """A REST resource: `group` is "" for the core API. A cluster-scoped one (`namespaced`
    False) ignores the namespace given to NamespacedResources (pass "")."""

    group: str
    version: str
    plural: str
    namespaced: bool = True

    @property
    def qualified_name(self) -> str:
        """The name RBAC and kubectl use: `deployments.apps`, `services`."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def path(self, namespace: str, name: str | None = None) -> str:
        root = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        collection = (
            f"{root}/namespaces/{quote(namespace, safe='')}/{self.plural}"
            if self.namespaced
            else f"{root}/{self.plural}"
        )
        return collection if name is None else f"{collection}/{quote(name, safe='')}"


DEPLOYMENTS = ResourceType("apps", "v1", "deployments")
SERVICES = ResourceType("", "v1", "services")
PODS = ResourceType("", "v1", "pods")
JOBS = ResourceType("batch", "v1", "jobs")
VIRTUAL_SERVICES = ResourceType("networking.istio.io", "v1", "virtualservices")
DESTINATION_RULES = ResourceType("networking.istio.io", "v1", "destinationrules")
HTTP_ROUTES = ResourceType("gateway.networking.k8s.io", "v1", "httproutes")
CONFIG_MAPS = ResourceType("", "v1", "configmaps")
RESOURCE_QUOTAS = ResourceType("", "v1", "resourcequotas")
LIMIT_RANGES = ResourceType("", "v1", "limitranges")
ENDPOINT_SLICES = ResourceType("discovery.k8s.io", "v1", "endpointslices")
REPLICA_SETS = ResourceType("apps", "v1", "replicasets")
ROLLOUTS = ResourceType("argoproj.io", "v1alpha1", "rollouts")
ANALYSIS_RUNS = ResourceType("argoproj.io", "v1alpha1", "analysisruns")
NAMESPACES = ResourceType("", "v1", "namespaces", namespaced=False)


class ForbiddenError(PermanentError):
    """A 403: release-bot's RBAC lacks `verb` on `resource` (kubectl's name) in `namespace`."""

    def __init__(self, message: str, *, verb: str, resource: str, namespace: str) -> None:
        super().__init__(message)
        self.verb = verb
        self.resource = resource
        self.namespace = namespace


class NamespacedResources:
    """Objects of one type in one namespace, as dicts; each public method retries
    TemporaryError a few times with backoff and then lets it propagate."""

    def __init__(self, api: k8s.ApiClient, kind: ResourceType, namespace: str) -> None:
        self._api = api
        self.kind = kind
        self.namespace = namespace

    def describe(self, name: str) -> str:
        return f"{self.kind.qualified_name} {self.namespace}/{name}"

    @_retry_temporary
    def get(self, name: str) -> Object | None:
        """The object, or None when it does not exist."""
        return self._get_once(name)

    @_retry_temporary
    def list_matching(self, *, label_selector: str) -> list[Object]:
        """The objects whose labels match `label_selector` (kubectl's `-l` syntax)."""
        return self._list_once([("labelSelector", label_selector)])

    @_retry_temporary
    def list_all(self) -> list[Object]:
        """Every object of the type in the namespace."""
        return self._list_once([])

    @_retry_temporary
    def reconcile(self, name: str, render: Callable[[Object | None], Object]) -> Object:
        """Create the object or bring it to `render(current)`, writing only when that differs.

        `render` gets a private copy of the current object (None when absent) and returns the
        desired one; it may raise PermanentError to refuse. The write carries the resourceVersion
        it was rendered from, so a concurrent change makes it fail with 409; the whole
        read-render-write is then retried on the fresh object.
        """
        current = self._get_once(name)
        desired = render(copy.deepcopy(current))
        if current is None:
            return self._send("POST", "create", None, body=desired)
        if desired == current:
            return current
        return self._send("PUT", "update", name, body=desired)

    @_retry_temporary
    def merge_patch(self, name: str, patch: Object, *, subresource: str = "") -> Object:
        """A JSON merge patch of the object, or of its `subresource` (`status`): a patch that
        carries metadata.resourceVersion fails with a 409 if the object changed meanwhile."""
        return self._send(
            "PATCH",
            "patch",
            name,
            subresource=subresource,
            body=patch,
            content_type="application/merge-patch+json",
        )

    @_retry_temporary
    def delete(self, name: str) -> bool:
        """Delete the object; False when it was already gone."""
        try:
            self._send("DELETE", "delete", name, query=[("propagationPolicy", "Background")])
        except _NotFoundError:
            return False
        return True

    @_retry_temporary
    def log_tail(self, name: str, *, container: str, lines: int) -> list[str]:
        """The last `lines` lines of a container's log: the `log` subresource of a pod."""
        query = [("container", container), ("tailLines", str(lines))]
        text = self._send_text("GET", "get", name, subresource="log", query=query)
        return text.splitlines()[-lines:]

    def _list_once(self, query: list[tuple[str, str]]) -> list[Object]:
        listing = self._send("GET", "list", None, query=query)
        items: list[Object] = listing.get("items") or []
        return items

    def _get_once(self, name: str) -> Object | None:
        try:
            return self._send("GET", "get", name)
        except _NotFoundError:
            return None

    def _send(
        self,
        method: str,
        verb: str,
        name: str | None,
        *,
        subresource: str = "",
        body: Object | None = None,
        query: list[tuple[str, str]] | None = None,
        content_type: str = "application/json",
    ) -> Object:
        text = self._send_text(
            method,
            verb,
            name,
            subresource=subresource,
            body=body,
            query=query,
            content_type=content_type,
        )
        result: Object = json.loads(text) if text else {}
        return result

    def _send_text(
        self,
        method: str,
        verb: str,
        name: str | None,
        *,
        subresource: str = "",
        body: Object | None = None,
        query: list[tuple[str, str]] | None = None,
        content_type: str = "application/json",
    ) -> str:
        path = self.kind.path(self.namespace, name)
        request = self._api.param_serialize(
            method,
            f"{path}/{subresource}" if subresource else path,
            query_params=query,
            header_params={"Accept": "application/json, */*", "Content-Type": content_type},
            body=body,
            auth_settings=["BearerToken"],
        )
        resource = self.kind.qualified_name + (f"/{subresource}" if subresource else "")
        target = self.describe(name) if name else f"{self.kind.qualified_name} in {self.namespace}"
        started = time.perf_counter()
        try:
            return self._answer(verb, target, request, subresource=subresource)
        except ReleaseBotError as error:
            if not (isinstance(error, _NotFoundError) and verb in _ABSENCE_IS_AN_ANSWER):
                error_class = "permanent" if isinstance(error, PermanentError) else "temporary"
                KUBE_CALL_ERRORS.labels(verb=verb, resource=resource, error_class=error_class).inc()
            raise
        finally:
            KUBE_CALL_SECONDS.labels(verb=verb, resource=resource).observe(
                time.perf_counter() - started
            )

    def _answer(
        self,
        verb: str,
        target: str,
        request: tuple[str, str, dict[str, str], Any, list[str]],
        *,
        subresource: str,
    ) -> str:
        try:
            response = self._api.call_api(*request, _request_timeout=REQUEST_TIMEOUT_S)
            payload: bytes = response.response.data
        except ApiException as error:
            raise self._failure(
                verb, target, error.status, error.body or error.reason, error.headers, subresource
            ) from error
        except urllib3.exceptions.HTTPError as error:
            raise TemporaryError(
                f"Kubernetes API unreachable to {verb} {target}: {error}"
            ) from error
        text = payload.decode("utf-8", errors="replace") if payload else ""
        if not 200 <= response.status <= 299:
            raise self._failure(verb, target, response.status, text, response.headers, subresource)
        return text

    def _failure(  # noqa: PLR0917 (private; every part of the answer)
        self,
        verb: str,
        target: str,
        status: int,
        body: str | None,
        headers: Mapping[str, str] | None,
        subresource: str = "",
    ) -> ReleaseBotError:
        """The one translation of an apiserver's error answer into the bot's taxonomy."""
        detail = _apiserver_message(body)
        if status == 403:
            group = self.kind.group or 'the core API group ""'
            below = f"/{subresource}" if subresource else ""
            return ForbiddenError(
                f"forbidden: release-bot may not {verb} {self.kind.qualified_name}{below} in "
                f"namespace {self.namespace} (grant verb {verb!r} on resource "
                f"{self.kind.plural + below!r} in API group {group}); apiserver: {detail}",
                verb=verb,
                resource=self.kind.qualified_name + below,
                namespace=self.namespace,
            )
        if status == 404:
            return _NotFoundError(f"{target} not found: {detail}")
        if status == 409:
            return TemporaryError(f"conflict on {verb} {target} (changed meanwhile): {detail}")
        if status in TEMPORARY_STATUSES or status >= 500:
            return TemporaryError(
                f"kube-apiserver answered {status} to {verb} {target}: {detail}",
                retry_after_s=_retry_after_s(headers),
            )
        if status == 401:
            return PermanentError(
                f"Kubernetes API rejected the bot's credentials (401) to {verb} {target}: {detail}"
            )
        return PermanentError(f"cannot {verb} {target} (HTTP {status}): {detail}")


class _NotFoundError(PermanentError):
    """404 on a read is an answer (None); on a write it is permanent."""


def _apiserver_message(body: str | None) -> str:
    if not body:
        return "(no details)"
    try:
        status = json.loads(body)
    except ValueError:
        return body[:500]
    return str(status.get("message", body[:500])) if isinstance(status, dict) else body[:500]


def _retry_after_s(headers: Mapping[str, str] | None) -> float | None:
    """Retry-After in seconds (it is a number of seconds or an HTTP date), None when absent."""
    value = (headers or {}).get("Retry-After", "").strip()
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)
