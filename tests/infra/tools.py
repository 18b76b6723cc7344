"""A pytest plugin (listed in tests/conftest.py) whose fixture tests/test_install.py uses.

Fixture `kube_tools`: the helm and kubectl built by scripts/build-tools.sh, never the machine's.

helm runs with its cache, config and data homes in a temporary directory, and kubectl with its
discovery cache there, so the tests neither read nor write the user's ~/.kube or helm setup.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.infra.processes import REPO_ROOT, built_bin_dir


def ensure_tools() -> Path:
    """Build (or find cached) helm and kubectl; return their directory."""
    return built_bin_dir("build-tools.sh", what="helm and kubectl")


@dataclass(frozen=True)
class KubeTools:
    bin_dir: Path
    home: Path

    def env(self) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if key != "KUBECONFIG"}
        env.update(
            HELM_CACHE_HOME=str(self.home / "helm-cache"),
            HELM_CONFIG_HOME=str(self.home / "helm-config"),
            HELM_DATA_HOME=str(self.home / "helm-data"),
            KUBECACHEDIR=str(self.home / "kube-cache"),
        )
        return env

    def run(
        self,
        tool: str,
        *args: str,
        stdin: str | None = None,
        kubeconfig: Path | None = None,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """Run helm or kubectl; with check, a failure raises with the tool's own output."""
        command: Sequence[str] = [str(self.bin_dir / tool), *args]
        if kubeconfig is not None:
            command = [*command, f"--kubeconfig={kubeconfig}"]
        completed = subprocess.run(
            command,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
            env=self.env(),
            cwd=REPO_ROOT,
            check=False,
        )
        if check and completed.returncode != 0:
            raise AssertionError(
                f"{' '.join(command)} exited {completed.returncode}:\n"
                f"{completed.stdout[-3000:]}\n{completed.stderr[-3000:]}"
            )
        return completed

    def helm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run("helm", *args, check=check)

    def kubectl(
        self,
        *args: str,
        stdin: str | None = None,
        kubeconfig: Path | None = None,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        return self.run("kubectl", *args, stdin=stdin, kubeconfig=kubeconfig, check=check)


@pytest.fixture(scope="session")
def kube_tools(tmp_path_factory: pytest.TempPathFactory) -> KubeTools:
    return KubeTools(bin_dir=ensure_tools(), home=Path(tmp_path_factory.mktemp("kube-tools")))
