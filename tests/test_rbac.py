"""Least privilege, on the real apiserver: release-bot's ServiceAccount, bound by deploy/rbac.yaml
(cluster-wide) or by deploy/overlays/namespace-scoped/roles.yaml (one Role + RoleBinding per
namespace an app names), runs whole canary and blue-green releases with a TokenRequest token of
its own, and may do nothing the releases do not need (read Secrets, delete Namespaces, exec into
pods, touch Deployments where no app lives). tests/test_install.py keeps the four copies of the
rules equal. Argo Rollouts will need its own rules and its own releases here.

A verification Job runs with the app's ServiceAccount: the bot names it in the Job's pod
template, which the apiserver allows to whoever may create Jobs (no `use` or `impersonate` right
exists or is needed), and the account has no right on ServiceAccounts at all.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s

from bot.core.release import Phase
from bot.kube.client import JOBS, SERVICES
from bot.kube.routers import TrafficSplit
from bot.kube.workloads import MANAGED_BY, MANAGED_BY_LABEL
from bot.slack.cards import ACTION_APPROVE
from tests.infra.argo import ArgoController
from tests.infra.kube import KubeCluster, create_namespace
from tests.infra.kwok_config import LOG_LINES, smoke_job
from tests.infra.processes import wait_until
from tests.infra.release_world import APP, STABLE_IMAGE, World
from tests.infra.slack_requests import ALICE
from tests.kube_objects import stable_deployment
from tests.test_argo_flow import (
    STEPS,
    abort_from_outside,
    installs,
    paused_at,
    rollout_of,
    status,
    wait_status,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
CLUSTER_WIDE = REPO_ROOT / "deploy/rbac.yaml"
NAMESPACE_SCOPED = REPO_ROOT / "deploy/overlays/namespace-scoped/roles.yaml"

HEADER_STAGE = "    - {weight: 0, duration: 1s, header_routed: true}\n"
PLAN = "    - {weight: 25, duration: 1s}\n    - {weight: 50, duration: 1s, approval: true}\n"


def manifests(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [copy.deepcopy(o) for o in objects if o["kind"] == kind]


# ---------------------------------------------------------------- the bot's own account


@dataclass
class BotAccount:
    """release-bot's ServiceAccount in a namespace of its own, with a token for it."""

    namespace: str
    name: str
    token: str
    kubeconfig: Path
    api: k8s.ApiClient

    @property
    def username(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.name}"


@pytest.fixture
def bot_account(kube_cluster: KubeCluster, kube_admin: k8s.ApiClient) -> Iterator[BotAccount]:
    """The ServiceAccount of deploy/rbac.yaml, moved to a fresh namespace, bound to nothing."""
    account = of_kind(manifests(CLUSTER_WIDE), "ServiceAccount")[0]
    namespace = "rb-" + uuid.uuid4().hex[:10]
    create_namespace(kube_admin, namespace)
    account["metadata"]["namespace"] = namespace
    core = k8s.CoreV1Api(kube_admin)
    core.create_namespaced_service_account(namespace, account)
    name = account["metadata"]["name"]
    token = core.create_namespaced_service_account_token(
        name, namespace, {"spec": {"expirationSeconds": 3600}}
    ).status.token
    api = kube_cluster.api_client(token)
    yield BotAccount(
        namespace=namespace,
        name=name,
        token=token,
        kubeconfig=kube_cluster.kubeconfig(token=token, name=f"sa-{namespace}"),
        api=api,
    )
    api.close()


def _subject(account: BotAccount) -> dict[str, str]:
    return {"kind": "ServiceAccount", "name": account.name, "namespace": account.namespace}


@pytest.fixture
def bind_cluster_wide(
    kube_admin: k8s.ApiClient, bot_account: BotAccount
) -> Iterator[Callable[[], None]]:
    """Apply deploy/rbac.yaml's ClusterRole and ClusterRoleBinding for `bot_account` (under
    names of this test's own: cluster objects outlive a test's namespace)."""
    rbac = k8s.RbacAuthorizationV1Api(kube_admin)
    created: list[str] = []

    def bind() -> None:
        objects = manifests(CLUSTER_WIDE)
        role = of_kind(objects, "ClusterRole")[0]
        binding = of_kind(objects, "ClusterRoleBinding")[0]
        name = f"{role['metadata']['name']}-{bot_account.namespace}"
        role["metadata"]["name"] = name
        binding["metadata"]["name"] = name
        binding["roleRef"]["name"] = name
        binding["subjects"] = [_subject(bot_account)]
        rbac.create_cluster_role(role)
        created.append(name)
        rbac.create_cluster_role_binding(binding)
        _wait_in_effect(bot_account, "default")

    yield bind
    for name in created:
        rbac.delete_cluster_role_binding(name)
        rbac.delete_cluster_role(name)


def bind_in_namespace(kube_admin: k8s.ApiClient, account: BotAccount, namespace: str) -> None:
    """The overlay's first Role + RoleBinding pair, granted in `namespace` (its copies for other
    namespaces are the same objects but for the namespace)."""
    objects = manifests(NAMESPACE_SCOPED)
    role = of_kind(objects, "Role")[0]
    binding = next(
        b
        for b in of_kind(objects, "RoleBinding")
        if b["metadata"]["namespace"] == role["metadata"]["namespace"]
    )
    for obj in (role, binding):
        obj["metadata"]["namespace"] = namespace
    binding["subjects"] = [_subject(account)]
    rbac = k8s.RbacAuthorizationV1Api(kube_admin)
    rbac.create_namespaced_role(namespace, role)
    rbac.create_namespaced_role_binding(namespace, binding)
    _wait_in_effect(account, namespace)


def _wait_in_effect(account: BotAccount, namespace: str) -> None:
    """The apiserver's authorizer sees a new binding through its informers, a moment after
    the create returns (a CI run once asked in between)."""
    wait_until(
        lambda: can(account.api, "get", "deployments", namespace, group="apps"),
        timeout_s=10,
        what=f"{account.name}'s new binding in effect in {namespace}",
    )


def can(
    api: k8s.ApiClient,
    verb: str,
    resource: str,
    namespace: str = "",
    *,
    group: str = "",
    subresource: str = "",
    name: str = "",
) -> bool:
    """The apiserver's own answer (SelfSubjectAccessReview) for whoever `api` authenticates as."""
    attributes = {"verb": verb, "resource": resource, "group": group}
    attributes |= {"namespace": namespace} if namespace else {}
    attributes |= {"subresource": subresource} if subresource else {}
    attributes |= {"name": name} if name else {}
    review = k8s.AuthorizationV1Api(api).create_self_subject_access_review(
        {"spec": {"resourceAttributes": attributes}}
    )
    return bool(review.status.allowed)


def whoami(api: k8s.ApiClient) -> str:
    review = k8s.AuthenticationV1Api(api).create_self_subject_review({})
    return str(review.status.user_info.username)


# ---------------------------------------------------------------- a whole canary with the account


def run_canary(world: World) -> None:
    """A canary to 100 % with one approval, checked with the admin's client."""
    answer = world.command(f"canary {APP} v2", user=ALICE)
    assert answer.startswith(":white_check_mark: Started a canary of shop-api v2"), answer
    last = 1 if world.provider == "replicas" else 2
    world.wait_for(Phase.AWAITING_APPROVAL, last)
    world.wait_split(TrafficSplit(50, 50, header_routed=False))
    assert world.image("shop-api-canary") == "registry.example/shop/api:v2"
    assert world.image(APP) == STABLE_IMAGE
    world.post(world.click(ACTION_APPROVE))
    world.wait_for(Phase.SUCCEEDED)
    assert world.image(APP) == "registry.example/shop/api:v2"
    assert world.image("shop-api-canary") is None
    world.wait_split(TrafficSplit(100, 0, header_routed=False))
    if world.provider == "gateway-api":  # the account created the canary's Service
        canary_service = world.cluster.read(SERVICES, "shop-api-canary")
        assert canary_service["metadata"]["labels"][MANAGED_BY_LABEL] == MANAGED_BY
    world.wait_thread("shop-api v2 is released")


def run_blue_green(world: World) -> None:
    """A blue-green release to blue retired, checked with the admin's client: green and the
    preview Service created, the switch (a Service update), the EndpointSlices waited on, blue
    scaled down and deleted, the preview Service deleted."""
    answer = world.command(f"bluegreen {APP} v2", user=ALICE)
    assert answer.startswith(":white_check_mark: Started a blue-green release of shop-api v2"), (
        answer
    )
    world.wait_for(Phase.AWAITING_APPROVAL, 0)
    assert world.cluster.read(SERVICES, "shop-api-green")["spec"]["selector"]["version"] == "v2"
    world.post(world.click(ACTION_APPROVE))
    world.wait_thread("Switched production to green in")
    world.wait_for(Phase.SUCCEEDED)
    # blue retired: green's slot is the only one left, so production drops its version pin
    assert world.cluster.read(SERVICES, APP)["spec"]["selector"] == {"app": APP}
    assert world.image(APP) is None
    assert world.image("shop-api-green") == "registry.example/shop/api:v2"
    assert world.cluster.of(SERVICES).get("shop-api-green") is None


BLUE_GREEN = "{watch_window: 1s, retention: 1s, scale_down_grace: 0s}"


def test_a_blue_green_release_runs_with_the_cluster_wide_rules(
    world_for: Any, bot_account: BotAccount, bind_cluster_wide: Callable[[], None]
) -> None:
    bind_cluster_wide()
    world: World = world_for(
        "bluegreen", PLAN, bluegreen=BLUE_GREEN, kubeconfig=bot_account.kubeconfig
    )
    run_blue_green(world)


def test_a_blue_green_release_runs_with_the_namespace_scoped_rules(
    world_for: Any, bot_account: BotAccount, kube_admin: k8s.ApiClient, namespace: str
) -> None:
    bind_in_namespace(kube_admin, bot_account, namespace)
    world: World = world_for(
        "bluegreen", PLAN, bluegreen=BLUE_GREEN, kubeconfig=bot_account.kubeconfig
    )
    run_blue_green(world)


def test_an_argo_rollout_runs_with_the_cluster_wide_rules(
    world_for: Any,
    bot_account: BotAccount,
    bind_cluster_wide: Callable[[], None],
    argo_controller: ArgoController,
) -> None:
    """Every call bot/kube/argo.py makes: the image set (update), the pause resumed and the full
    promotion (status patches), the stable ReplicaSet and an abort's AnalysisRuns listed."""
    bind_cluster_wide()
    install = installs(rollout_of({"canary": {"steps": STEPS}}), APP)
    world: World = world_for("argo", PLAN, install=install, kubeconfig=bot_account.kubeconfig)
    world.command(f"canary {APP} v2", user=ALICE)
    world.wait_for(Phase.AWAITING_APPROVAL, 1)
    world.post(world.click(ACTION_APPROVE))
    world.wait_for(Phase.AWAITING_APPROVAL, 2)
    wait_status(world, "the Rollout resumed to its 60 % pause", paused_at(5))
    world.command(f"promote {APP} --full", user=ALICE)
    world.wait_for(Phase.SUCCEEDED)
    world.command(f"canary {APP} v3", user=ALICE)  # the stable ReplicaSet read for its version
    assert world.release().previous_version == "v2"
    world.wait_for(Phase.AWAITING_APPROVAL, 1)
    abort_from_outside(world)
    world.wait_for(Phase.ROLLED_BACK)  # the abort's AnalysisRuns listed: none
    assert status(world)["abort"] is True


def plan_for(provider: str) -> str:
    return PLAN if provider == "replicas" else HEADER_STAGE + PLAN


@pytest.mark.parametrize("provider", ["replicas", "istio", "gateway-api"])
def test_a_canary_runs_with_the_cluster_wide_rules(
    world_for: Any,
    provider: str,
    bot_account: BotAccount,
    bind_cluster_wide: Callable[[], None],
) -> None:
    bind_cluster_wide()
    assert whoami(bot_account.api) == bot_account.username
    world: World = world_for(provider, plan_for(provider), kubeconfig=bot_account.kubeconfig)
    assert bot_account.token in Path(world.environment["KUBECONFIG"]).read_text()
    run_canary(world)


@pytest.mark.parametrize("provider", ["replicas", "istio"])
def test_a_canary_runs_with_the_namespace_scoped_rules(
    world_for: Any,
    provider: str,
    bot_account: BotAccount,
    kube_admin: k8s.ApiClient,
    namespace: str,
) -> None:
    bind_in_namespace(kube_admin, bot_account, namespace)
    world: World = world_for(provider, plan_for(provider), kubeconfig=bot_account.kubeconfig)
    run_canary(world)


VERIFIED_PLAN = (
    "    - {weight: 25, duration: 1s}\n"
    "    - {weight: 50, duration: 1s, verification: {job: smoke, timeout: 1m, log_lines: 2}}\n"
)


def test_a_failing_verification_job_rolls_back_with_the_cluster_wide_rules(
    world_for: Any, bot_account: BotAccount, bind_cluster_wide: Callable[[], None]
) -> None:
    """The account creates the Job, reads how it ended and its pod's log, deletes it: every
    verb of the verification rules, and nothing on ServiceAccounts."""
    bind_cluster_wide()
    world: World = world_for(
        "gateway-api",
        VERIFIED_PLAN,
        verification=smoke_job(fails=True, runs_for="500ms"),
        kubeconfig=bot_account.kubeconfig,
    )
    assert world.command(f"canary {APP} v2", user=ALICE).startswith(":white_check_mark:")
    verifying = world.wait_for(Phase.VERIFYING, 1)
    assert verifying.verification is not None
    done = world.wait_for(Phase.ROLLED_BACK)
    assert (
        done.outcome_reason is not None and verifying.verification.job_name in done.outcome_reason
    )
    world.wait_thread(LOG_LINES[-1])  # read through pods/log with the account's token
    assert world.cluster.of(JOBS).list_matching(label_selector="") == []  # deleted by it
    assert not can(bot_account.api, "get", "serviceaccounts", world.cluster.namespace)


def test_without_the_rules_the_account_cannot_start_a_canary(
    world_for: Any, bot_account: BotAccount
) -> None:
    """The control: the same account and bot with no binding is refused, so the releases above
    ran on the rules and not on some other grant."""
    world: World = world_for("replicas", PLAN, kubeconfig=bot_account.kubeconfig)
    answer = world.command(f"canary {APP} v2", user=ALICE)
    assert not answer.startswith(":white_check_mark:"), answer
    assert "forbidden" in answer.lower() or "permission" in answer.lower(), answer
    assert world.store.active(APP) is None
    assert world.image("shop-api-canary") is None


# ---------------------------------------------------------------- what the account may not do


def _denied_everywhere(api: k8s.ApiClient, namespace: str) -> list[tuple[str, ...]]:
    """Every (verb, resource, ...) of this list the account may do: each must be empty."""
    attempts: list[dict[str, Any]] = [
        {"verb": "get", "resource": "secrets", "namespace": namespace},
        {"verb": "list", "resource": "secrets", "namespace": namespace},
        {"verb": "list", "resource": "secrets"},
        {"verb": "delete", "resource": "namespaces", "name": namespace},
        {"verb": "delete", "resource": "namespaces"},
        {"verb": "create", "resource": "pods", "subresource": "exec", "namespace": namespace},
        {"verb": "get", "resource": "pods", "subresource": "exec", "namespace": namespace},
        {"verb": "create", "resource": "pods", "namespace": namespace},
        {"verb": "delete", "resource": "pods", "namespace": namespace},
        # blue-green deletes its preview Service by name; never all Services at once
        {"verb": "deletecollection", "resource": "services", "namespace": namespace},
        {"verb": "watch", "group": "apps", "resource": "deployments", "namespace": namespace},
        {
            "verb": "update",
            "group": "apps",
            "resource": "deployments",
            "subresource": "scale",
            "namespace": namespace,
        },
        {"verb": "create", "group": "rbac.authorization.k8s.io", "resource": "rolebindings"},
        {"verb": "escalate", "group": "rbac.authorization.k8s.io", "resource": "clusterroles"},
        {"verb": "impersonate", "resource": "serviceaccounts"},
        {"verb": "get", "resource": "serviceaccounts", "namespace": namespace},
        {"verb": "create", "resource": "serviceaccounts", "subresource": "token"},
        {"verb": "update", "group": "batch", "resource": "jobs", "namespace": namespace},
        {"verb": "create", "group": "batch", "resource": "cronjobs", "namespace": namespace},
    ]
    allowed = []
    for attempt in attempts:
        verb, resource = attempt.pop("verb"), attempt.pop("resource")
        if can(api, verb, resource, **attempt):
            allowed.append((verb, resource, *attempt.values()))
    return allowed


def test_cluster_wide_account_cannot_read_secrets_delete_namespaces_or_exec(
    bot_account: BotAccount, bind_cluster_wide: Callable[[], None], namespace: str
) -> None:
    api = bot_account.api
    assert not can(api, "get", "deployments", namespace, group="apps")  # before the binding
    bind_cluster_wide()
    for verb in ("get", "create", "update", "patch", "delete"):
        assert can(api, verb, "deployments", namespace, group="apps"), verb
    assert _denied_everywhere(api, namespace) == []


def test_namespace_scoped_account_cannot_touch_deployments_where_no_app_lives(
    bot_account: BotAccount, kube_admin: k8s.ApiClient, namespace: str
) -> None:
    elsewhere = "rb-other-" + uuid.uuid4().hex[:8]
    create_namespace(kube_admin, elsewhere)
    bind_in_namespace(kube_admin, bot_account, namespace)
    api = bot_account.api
    for verb in ("get", "create", "update", "patch", "delete"):
        assert can(api, verb, "deployments", namespace, group="apps"), verb
        assert not can(api, verb, "deployments", elsewhere, group="apps"), verb
    assert not can(api, "list", "deployments", group="apps")  # nor all namespaces at once
    assert _denied_everywhere(api, namespace) == []
    assert _denied_everywhere(api, elsewhere) == []

    # And for real: the account's own requests are refused there.
    k8s.AppsV1Api(kube_admin).create_namespaced_deployment(
        elsewhere, stable_deployment(image=STABLE_IMAGE)
    )
    apps = k8s.AppsV1Api(api)
    for call in (
        lambda: apps.read_namespaced_deployment(APP, elsewhere),
        lambda: apps.patch_namespaced_deployment(APP, elsewhere, {"spec": {"replicas": 0}}),
        lambda: apps.delete_namespaced_deployment(APP, elsewhere),
    ):
        with pytest.raises(k8s.ApiException) as refused:
            call()
        assert refused.value.status == 403
    assert k8s.AppsV1Api(kube_admin).read_namespaced_deployment(APP, elsewhere).spec.replicas


def test_the_rules_grant_no_wildcard_watch_or_secret() -> None:
    """A static guard next to the live one: what the review list above does not name."""
    for path, kind in ((CLUSTER_WIDE, "ClusterRole"), (NAMESPACE_SCOPED, "Role")):
        for role in of_kind(manifests(path), kind):
            for rule in role["rules"]:
                assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"], rule
                assert "watch" not in rule["verbs"], rule
                assert not {"secrets", "pods/exec", "namespaces"} & set(rule["resources"]), rule
