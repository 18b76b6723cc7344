"""CustomResourceDefinitions taken from their Go modules at test time (never copied into the repo).

Called by tests/infra/kube.py when the control plane starts.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


@dataclass(frozen=True)
class CrdSource:
    module: str
    version: str
    path: str
    names: tuple[str, ...]  # metadata.name of the CRDs to install from that file


CRD_SOURCES = (
    CrdSource(
        module="istio.io/api",
        version="v1.31.4",
        path="kubernetes/customresourcedefinitions.gen.yaml",
        names=("virtualservices.networking.istio.io", "destinationrules.networking.istio.io"),
    ),
    CrdSource(
        module="sigs.k8s.io/gateway-api",
        version="v1.4.1",
        path="config/crd/standard/gateway.networking.k8s.io_httproutes.yaml",
        names=("httproutes.gateway.networking.k8s.io",),
    ),
    CrdSource(
        module="github.com/argoproj/argo-rollouts",
        version="v1.8.3",
        path="manifests/crds/rollout-crd.yaml",
        names=("rollouts.argoproj.io",),
    ),
)


def module_dir(module: str, version: str) -> Path:
    """Download a Go module through the module proxy (cached by Go) and return its directory."""
    completed = subprocess.run(
        ["go", "mod", "download", "-json", f"{module}@{version}"],
        capture_output=True,
        text=True,
        check=False,
    )
    info = json.loads(completed.stdout or "{}")
    if completed.returncode != 0 or "Dir" not in info:
        raise RuntimeError(
            f"go mod download {module}@{version} failed: {info.get('Error') or completed.stderr}"
        )
    return Path(info["Dir"])


def load_crds(source: CrdSource) -> list[dict[str, Any]]:
    text = (module_dir(source.module, source.version) / source.path).read_text()
    documents = [
        doc
        for doc in yaml.safe_load_all(text)
        if doc and doc.get("kind") == "CustomResourceDefinition"
    ]
    wanted = [doc for doc in documents if doc["metadata"]["name"] in source.names]
    found = {doc["metadata"]["name"] for doc in wanted}
    if missing := set(source.names) - found:
        raise RuntimeError(
            f"{source.module}@{source.version}/{source.path} lacks CRDs {sorted(missing)}"
        )
    for doc in wanted:
        doc["metadata"].pop("creationTimestamp", None)
        doc.pop("status", None)
    return wanted


def all_crds() -> list[dict[str, Any]]:
    return [crd for source in CRD_SOURCES for crd in load_crds(source)]
