"""A real Kubernetes control plane for the tests: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler and kwok (fake nodes whose pods turn Running and Ready, whose Jobs' pods complete
or fail, and whose kubelet API serves logs: tests/infra/kwok_config.py), built by
scripts/build-control-plane.sh.

A pytest plugin (listed in tests/conftest.py): fixtures `kube_cluster`, `kube_admin`,
`namespace`.
"""

from __future__ import annotations

import os
import ssl
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from tests.infra.crds import all_crds
from tests.infra.kwok_config import write_kwok_config
from tests.infra.processes import ManagedProcess, built_bin_dir, free_port, wait_until

ADMIN_TOKEN = "admin-" + uuid.uuid4().hex
RESTRICTED_TOKEN = "restricted-" + uuid.uuid4().hex
RESTRICTED_USER = "restricted-viewer"
FAKE_NODE = "kwok-node-0"


def ensure_control_plane() -> Path:
    """Build (or find cached) control-plane binaries; return their directory."""
    return built_bin_dir("build-control-plane.sh", what="the control plane")


@dataclass
class KubeCluster:
    work_dir: Path
    bin_dir: Path = field(default_factory=ensure_control_plane)
    processes: list[ManagedProcess] = field(default_factory=list)
    apiserver_port: int = 0
    startup_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.apiserver_port}"

    @property
    def ca_file(self) -> Path:
        return self.work_dir / "certs" / "apiserver.crt"

    def configuration(self, token: str = ADMIN_TOKEN) -> k8s.Configuration:
        config = k8s.Configuration()
        config.host = self.server
        config.ssl_ca_cert = str(self.ca_file)
        config.api_key = {"authorization": token}
        config.api_key_prefix = {"authorization": "Bearer"}
        return config

    def api_client(self, token: str = ADMIN_TOKEN) -> k8s.ApiClient:
        return k8s.ApiClient(self.configuration(token))

    def kubeconfig(self, token: str = ADMIN_TOKEN, name: str = "admin") -> Path:
        """A kubeconfig file for processes (the bot, controllers) that take KUBECONFIG."""
        path = self.work_dir / f"{name}.kubeconfig"
        document = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "test",
                    "cluster": {"server": self.server, "certificate-authority": str(self.ca_file)},
                }
            ],
            "users": [{"name": name, "user": {"token": token}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": name}}],
            "current-context": "test",
        }
        path.write_text(yaml.safe_dump(document))
        return path

    def start(self) -> KubeCluster:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self._write_credentials()
        self._timed("etcd", self._start_etcd)
        self._timed("kube-apiserver", self._start_apiserver)
        admin_kubeconfig = self.kubeconfig()
        self._timed("crds", self._install_crds)
        self._start_controllers(admin_kubeconfig)
        self._timed("node", self._register_fake_node)
        self._grant_restricted_user()
        return self

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()

    def _timed(self, what: str, step: Any) -> None:
        started = time.monotonic()
        step()
        self.startup_seconds[what] = round(time.monotonic() - started, 2)

    def _write_credentials(self) -> None:
        (self.work_dir / "certs").mkdir(exist_ok=True)
        key = self.work_dir / "sa.key"
        subprocess.run(
            ["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True
        )
        subprocess.run(
            ["openssl", "rsa", "-in", str(key), "-pubout", "-out", str(self.work_dir / "sa.pub")],
            check=True,
            capture_output=True,
        )
        (self.work_dir / "tokens.csv").write_text(
            f'{ADMIN_TOKEN},admin,admin-uid,"system:masters"\n{RESTRICTED_TOKEN},{RESTRICTED_USER},restricted-uid\n'
        )

    def _spawn(self, name: str, *args: str) -> ManagedProcess:
        process = ManagedProcess(
            name, [str(self.bin_dir / name), *args], self.work_dir / f"{name}.log"
        ).start()
        self.processes.append(process)
        return process

    def _start_etcd(self) -> None:
        client_port, peer_port = free_port(), free_port()
        client_url, peer_url = f"http://127.0.0.1:{client_port}", f"http://127.0.0.1:{peer_port}"
        self.etcd_url = client_url
        etcd = self._spawn(
            "etcd",
            f"--data-dir={self.work_dir / 'etcd'}",
            f"--listen-client-urls={client_url}",
            f"--advertise-client-urls={client_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=default={peer_url}",
            "--unsafe-no-fsync",
            "--log-level=warn",
        )

        def healthy() -> bool:
            etcd.ensure_alive()
            with urllib.request.urlopen(f"{client_url}/health", timeout=2) as response:
                return b'"health":"true"' in response.read()

        wait_until(healthy, timeout_s=30, what="etcd")

    def _start_apiserver(self) -> None:
        self.apiserver_port = free_port()
        apiserver = self._spawn(
            "kube-apiserver",
            f"--etcd-servers={self.etcd_url}",
            "--bind-address=127.0.0.1",
            f"--secure-port={self.apiserver_port}",
            f"--cert-dir={self.work_dir / 'certs'}",
            f"--token-auth-file={self.work_dir / 'tokens.csv'}",
            "--authorization-mode=RBAC",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={self.work_dir / 'sa.pub'}",
            f"--service-account-signing-key-file={self.work_dir / 'sa.key'}",
            "--service-cluster-ip-range=10.96.0.0/16",
            "--disable-admission-plugins=ServiceAccount,TaintNodesByCondition",
            "--enable-priority-and-fairness=false",
            # pods/log reaches kwok's kubelet API on the fake node's loopback address
            "--kubelet-preferred-address-types=InternalIP",
            "--v=0",
        )
        context = ssl.create_default_context(cafile=None)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # only for the readiness probe; clients verify the CA

        def ready() -> bool:
            apiserver.ensure_alive()
            request = urllib.request.Request(
                f"{self.server}/readyz", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
            )
            with urllib.request.urlopen(request, timeout=2, context=context) as response:
                return response.status == 200

        wait_until(ready, timeout_s=90, what="kube-apiserver /readyz", interval_s=0.25)

    def _start_controllers(self, kubeconfig: Path) -> None:
        self._spawn(
            "kube-controller-manager",
            f"--kubeconfig={kubeconfig}",
            "--leader-elect=false",
            "--controllers=deployment-controller,replicaset-controller,garbage-collector-controller,"
            "namespace-controller,serviceaccount-controller,resourcequota-controller,endpointslice-controller,"
            "job-controller,ttl-after-finished-controller",
            f"--service-account-private-key-file={self.work_dir / 'sa.key'}",
            f"--root-ca-file={self.ca_file}",
            "--secure-port=0",
            "--concurrent-deployment-syncs=10",
            "--concurrent-replicaset-syncs=10",
        )
        self._spawn(
            "kube-scheduler",
            f"--kubeconfig={kubeconfig}",
            "--leader-elect=false",
            "--secure-port=0",
        )
        kubelet_port = free_port()
        kwok_version = self.bin_dir.name.rsplit("-kwok-", 1)[1]
        self._spawn(
            "kwok",
            f"--kubeconfig={kubeconfig}",
            f"--config={write_kwok_config(self.work_dir, kwok_version)}",
            "--manage-all-nodes=true",
            f"--server-address=127.0.0.1:{kubelet_port}",
            "--node-ip=127.0.0.1",
            f"--node-port={kubelet_port}",
        )

    def _register_fake_node(self) -> None:
        core = k8s.CoreV1Api(self.api_client())
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": FAKE_NODE,
                "annotations": {"kwok.x-k8s.io/node": "fake"},
                "labels": {"type": "kwok", "kubernetes.io/hostname": FAKE_NODE},
            },
            # Room for every pod of the whole suite: namespaces are never deleted (so a failed
            # test leaves its objects to look at), and the suite's pods add up past 500.
            "status": {
                "allocatable": {"cpu": "1000", "memory": "4Ti", "pods": "5000"},
                "capacity": {"cpu": "1000", "memory": "4Ti", "pods": "5000"},
            },
        }
        core.create_node(node)

        def node_ready() -> bool:
            for process in self.processes:
                process.ensure_alive()
            conditions = core.read_node(FAKE_NODE).status.conditions or []
            return any(c.type == "Ready" and c.status == "True" for c in conditions)

        wait_until(node_ready, timeout_s=60, what="kwok fake node Ready", interval_s=0.25)

    def _install_crds(self) -> None:
        extensions = k8s.ApiextensionsV1Api(self.api_client())
        crds = all_crds()
        for crd in crds:
            extensions.create_custom_resource_definition(crd)

        def established() -> bool:
            for crd in crds:
                status = extensions.read_custom_resource_definition(crd["metadata"]["name"]).status
                if not any(
                    c.type == "Established" and c.status == "True" for c in status.conditions or []
                ):
                    return False
            return True

        wait_until(established, timeout_s=30, what="CRDs established")

    def _grant_restricted_user(self) -> None:
        """The restricted user may only read Deployments and Pods in namespace `default`."""
        rbac = k8s.RbacAuthorizationV1Api(self.api_client())
        rbac.create_namespaced_role(
            "default",
            {
                "metadata": {"name": "deployment-reader"},
                "rules": [
                    {
                        "apiGroups": ["", "apps"],
                        "resources": ["deployments", "pods"],
                        "verbs": ["get", "list"],
                    }
                ],
            },
        )
        rbac.create_namespaced_role_binding(
            "default",
            {
                "metadata": {"name": "deployment-reader"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Role",
                    "name": "deployment-reader",
                },
                "subjects": [
                    {
                        "apiGroup": "rbac.authorization.k8s.io",
                        "kind": "User",
                        "name": RESTRICTED_USER,
                    }
                ],
            },
        )


def wait_for_deployment_ready(
    api: k8s.ApiClient, *, namespace: str, name: str, timeout_s: float = 60
) -> k8s.V1Deployment:
    """Wait until every replica of the Deployment's current template is updated and Ready.

    There is no kubelet: kwok plays one on a fake node, so the pods the real controllers create
    turn Running and Ready by themselves. This is the one helper the tests use to wait for that.
    """
    apps = k8s.AppsV1Api(api)

    def rolled_out() -> bool:
        deployment = apps.read_namespaced_deployment(name, namespace)
        status, wanted = deployment.status, deployment.spec.replicas
        return bool(
            (status.observed_generation or 0) >= deployment.metadata.generation
            and (status.updated_replicas or 0) == wanted
            and (status.ready_replicas or 0) == wanted
            and (status.replicas or 0) == wanted
        )

    wait_until(
        rolled_out,
        timeout_s=timeout_s,
        what=f"deployment {namespace}/{name} rolled out",
        interval_s=0.2,
    )
    return apps.read_namespaced_deployment(name, namespace)


def create_namespace(api: k8s.ApiClient, name: str) -> None:
    try:
        k8s.CoreV1Api(api).create_namespace({"metadata": {"name": name}})
    except ApiException as error:
        if error.status != 409:
            raise


@pytest.fixture(scope="session")
def kube_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeCluster]:
    cluster = KubeCluster(work_dir=Path(tmp_path_factory.mktemp("kube"))).start()
    if os.environ.get("RELEASE_BOT_TEST_TIMINGS"):
        print(f"\ncontrol plane startup: {cluster.startup_seconds}")
    yield cluster
    cluster.stop()


@pytest.fixture
def kube_admin(kube_cluster: KubeCluster) -> Iterator[k8s.ApiClient]:
    api = kube_cluster.api_client()
    yield api
    api.close()


@pytest.fixture
def namespace(kube_admin: k8s.ApiClient, request: pytest.FixtureRequest) -> str:
    """A fresh namespace per test, so tests never see each other's objects."""
    name = "t-" + uuid.uuid4().hex[:10]
    create_namespace(kube_admin, name)
    return name
