"""CustomResourceDefinitions taken from their Go modules at test time (never copied into the repo).

Called by tests/infra/kube.py when the control plane starts. Argo Rollouts' CRDs are those of the
release scripts/build-argo-rollouts.sh builds the controller from (tests/infra/argo.py runs it):
every kind that controller watches, so the real controller finds them all.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.infra.processes import REPO_ROOT

# libyaml's loader: Argo's five CRDs are 3 MB of YAML, 3 s to parse in pure Python, 0.3 s in C.
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class CrdSource:
    module_dir: Callable[[], Path]  # downloads the module (Go caches it) and returns its directory
    files: Mapping[str, tuple[str, ...]]  # path in the module -> metadata.name of its CRDs


def go_module(module: str, version: str) -> Callable[[], Path]:
    return lambda: module_dir(module, version)


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


def argo_rollouts_module() -> Path:
    """The release scripts/build-argo-rollouts.sh builds the controller from (it names it, and the
    Go toolchain that release needs, in one place)."""
    completed = subprocess.run(
        ["bash", str(REPO_ROOT / "scripts/build-argo-rollouts.sh"), "--module-dir"],
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"downloading Argo Rollouts' module failed:\n{completed.stderr[-4000:]}")
    return Path(completed.stdout.strip())


CRD_SOURCES = (
    CrdSource(
        go_module("istio.io/api", "v1.31.4"),
        files={
            "kubernetes/customresourcedefinitions.gen.yaml": (
                "virtualservices.networking.istio.io",
                "destinationrules.networking.istio.io",
            )
        },
    ),
    CrdSource(
        go_module("sigs.k8s.io/gateway-api", "v1.4.1"),
        files={
            "config/crd/standard/gateway.networking.k8s.io_httproutes.yaml": (
                "httproutes.gateway.networking.k8s.io",
            )
        },
    ),
    CrdSource(
        argo_rollouts_module,
        files={
            f"manifests/crds/{file}-crd.yaml": (f"{plural}.argoproj.io",)
            for file, plural in (
                ("rollout", "rollouts"),
                ("analysis-run", "analysisruns"),
                ("analysis-template", "analysistemplates"),
                ("cluster-analysis-template", "clusteranalysistemplates"),
                ("experiment", "experiments"),
            )
        },
    ),
)


def load_crds(source: CrdSource) -> list[dict[str, Any]]:
    directory = source.module_dir()
    return [crd for path, names in source.files.items() for crd in crds_in(directory, path, names)]


def crds_in(directory: Path, path: str, names: tuple[str, ...]) -> list[dict[str, Any]]:
    documents = [
        doc
        for doc in yaml.load_all((directory / path).read_text(), Loader=SAFE_LOADER)
        if doc and doc.get("kind") == "CustomResourceDefinition"
    ]
    wanted = [doc for doc in documents if doc["metadata"]["name"] in names]
    found = {doc["metadata"]["name"] for doc in wanted}
    if missing := set(names) - found:
        raise RuntimeError(f"{directory}/{path} lacks CRDs {sorted(missing)}")
    for doc in wanted:
        doc["metadata"].pop("creationTimestamp", None)
        doc.pop("status", None)
    return wanted


def all_crds() -> list[dict[str, Any]]:
    return [crd for source in CRD_SOURCES for crd in load_crds(source)]
