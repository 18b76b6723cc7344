"""kwok's configuration for the tests: how fake pods live and end, and the logs they serve.

Called by tests/infra/kube.py when it starts kwok. The pod Stages are kwok's own, read from its
Go module at test time (never copied): `fast` pod-ready, pod-complete and pod-delete, and the
`chaos` pod-container-running-failed. So a Job's pod turns Running, then Succeeded at once (or
after the annotation POD_COMPLETE_DELAY says), while one labelled FAIL_LABEL: "true" fails after
a second (exit code and message from kwok's annotations). pod-complete is narrowed to pods
without that label, so which way a pod ends is never left to kwok's weighted draw.

`smoke_job` is an app's verification block whose Job template `smoke` ends either way.

A ClusterLogs serves LOG_LINES as the log of every container named LOGGED_CONTAINER, through
kwok's kubelet API (the apiserver's `pods/log`).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from tests.infra.crds import module_dir

KWOK_MODULE = "sigs.k8s.io/kwok"
FAIL_LABEL = "pod-container-running-failed.stage.kwok.x-k8s.io"
FAIL_MESSAGE = "pod-container-running-failed.stage.kwok.x-k8s.io/message"
FAIL_EXIT_CODE = "pod-container-running-failed.stage.kwok.x-k8s.io/exit-code"
POD_COMPLETE_DELAY = "pod-complete.stage.kwok.x-k8s.io/delay"
LOGGED_CONTAINER = "smoke"
SMOKE_IMAGE = "registry.example/shop/smoke:v1"
LOG_LINES = (
    "GET /healthz 200 3ms",
    "GET /api/cart 200 12ms",
    "GET /api/checkout 500 41ms",
    "FAIL checkout: expected 200, got 500",
    "smoke test: 1 of 3 checks failed",
)
_STAGES = (
    "kustomize/stage/pod/fast/pod-ready.yaml",
    "kustomize/stage/pod/fast/pod-complete.yaml",
    "kustomize/stage/pod/fast/pod-delete.yaml",
    "kustomize/stage/pod/chaos/pod-container-running-failed.yaml",
)


def write_kwok_config(directory: Path, kwok_version: str) -> Path:
    """The config file for `kwok --config`: the pod Stages and the ClusterLogs."""
    source = module_dir(KWOK_MODULE, kwok_version)
    stages = [yaml.safe_load((source / path).read_text()) for path in _STAGES]
    for stage in stages:
        if stage["metadata"]["name"] == "pod-complete":
            _narrow_pod_complete(stage)
    log_file = directory / "verification.log"
    log_file.write_text(_cri_log(LOG_LINES))
    cluster_logs = {
        "apiVersion": "kwok.x-k8s.io/v1alpha1",
        "kind": "ClusterLogs",
        "metadata": {"name": "verification-logs"},
        "spec": {"logs": [{"containers": [LOGGED_CONTAINER], "logsFile": str(log_file)}]},
    }
    path = directory / "kwok.yaml"
    path.write_text(yaml.safe_dump_all([*stages, cluster_logs]))
    return path


def _narrow_pod_complete(stage: dict[str, Any]) -> None:
    """Not the pods meant to fail; and as late as their POD_COMPLETE_DELAY annotation says."""
    stage["spec"]["selector"]["matchExpressions"].append(
        {"key": f'.metadata.labels["{FAIL_LABEL}"]', "operator": "DoesNotExist"}
    )
    stage["spec"]["delay"] = {
        "durationMilliseconds": 0,
        "durationFrom": {"expressionFrom": f'.metadata.annotations["{POD_COMPLETE_DELAY}"]'},
    }


def _cri_log(lines: tuple[str, ...]) -> str:
    """The kubelet's (CRI) log file format, which kwok reads: time, stream, tag, text."""
    stamp = datetime(2026, 1, 1, tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%S.%f000Z")
    return "".join(f"{stamp} stdout F {line}\n" for line in lines)


def smoke_job(*, fails: bool, runs_for: str) -> str:
    """The app's verification block (YAML flow, as JSON): a Job template `smoke` whose pod
    kwok ends after `runs_for`, failed with exit code 1 when `fails`."""
    if fails:
        labels = {FAIL_LABEL: "true"}
        annotations = {
            f"{FAIL_LABEL}/delay": runs_for,
            FAIL_MESSAGE: "smoke checks failed",
            FAIL_EXIT_CODE: "1",
        }
    else:
        labels, annotations = {}, {POD_COMPLETE_DELAY: runs_for}
    container = {"name": LOGGED_CONTAINER, "image": SMOKE_IMAGE}
    template = {
        "template": {
            "metadata": {"labels": labels, "annotations": annotations},
            "spec": {"containers": [container]},
        }
    }
    return json.dumps({"jobs": {"smoke": template}})
