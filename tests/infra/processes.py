"""Building, starting and stopping the real server processes the tests talk to.

Called by the service modules in tests/infra (redis_server, prometheus_server, kube, tools, argo).
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def built_bin_dir(script: str, *, what: str) -> Path:
    """Run a scripts/build-*.sh (it builds only what is not cached); return the directory it
    prints last, where the binaries are."""
    completed = subprocess.run(
        ["bash", str(REPO_ROOT / "scripts" / script)], capture_output=True, text=True, check=False
    )
    if completed.returncode != 0:
        raise RuntimeError(f"building {what} failed:\n{completed.stderr[-4000:]}")
    return Path(completed.stdout.strip().splitlines()[-1])


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(
    check: Callable[[], bool], *, timeout_s: float, what: str, interval_s: float = 0.1
) -> float:
    """Poll `check` until it is True; return the seconds waited, or raise TimeoutError."""
    started = time.monotonic()
    deadline = started + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if check():
                return time.monotonic() - started
        except Exception as error:  # the service is still coming up
            last_error = error
        time.sleep(interval_s)
    raise TimeoutError(f"{what} not ready after {timeout_s} s (last error: {last_error!r})")


@dataclass
class ManagedProcess:
    """A server process whose output goes to a log file, stopped with SIGTERM then SIGKILL."""

    name: str
    argv: Sequence[str]
    log_path: Path
    cwd: Path | None = None
    env: Mapping[str, str] | None = None  # added to this process's environment
    popen: subprocess.Popen[bytes] | None = field(default=None, init=False)

    def start(self) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.popen = subprocess.Popen(
            list(self.argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.cwd,
            env={**os.environ, **self.env} if self.env else None,
            start_new_session=True,
        )
        log.close()
        return self

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def ensure_alive(self) -> None:
        if not self.alive():
            raise RuntimeError(f"{self.name} exited early; last log lines:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout_s: float = 10) -> None:
        if self.popen is None or self.popen.poll() is not None:
            return
        self.popen.terminate()
        try:
            self.popen.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()

    def kill(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()
