"""`release-bot demo`, run as a newcomer runs it (a subprocess, real redis-server), judged by its
output: the Slack messages in order, the simulated person's approval, the outcome, exit codes."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DEMO_TIMEOUT_S = 60


@dataclass(frozen=True)
class DemoRun:
    returncode: int
    stdout: str
    stderr: str

    def position(self, text: str, *, after: int = 0) -> int:
        """Where `text` first appears after offset `after`; fails the test when it does not."""
        found = self.stdout.find(text, after)
        assert found >= 0, f"{text!r} not in the demo's output after offset {after}:\n{self.stdout}"
        return found

    def in_order(self, *texts: str) -> None:
        offset = 0
        for text in texts:
            offset = self.position(text, after=offset) + len(text)


def _demo_process(*args: str, path: str | None = None) -> subprocess.Popen[str]:
    env = None if path is None else {"PATH": path}
    return subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "demo", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
    )


def _finish(process: subprocess.Popen[str]) -> DemoRun:
    stdout, stderr = process.communicate(timeout=DEMO_TIMEOUT_S)
    return DemoRun(process.returncode, stdout, stderr)


@pytest.fixture(scope="module")
def runs() -> Iterator[dict[str, DemoRun]]:
    """Both scenarios, run side by side to halve the wait (each has its own redis-server)."""
    processes = {
        "canary": _demo_process(),
        "rollback": _demo_process("--scenario", "rollback"),
    }
    try:
        yield {scenario: _finish(process) for scenario, process in processes.items()}
    finally:
        for process in processes.values():
            process.kill()


@pytest.mark.parametrize("scenario", ["canary", "rollback"])
def test_each_scenario_exits_0_without_a_traceback(runs: dict[str, DemoRun], scenario: str) -> None:
    run = runs[scenario]
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stdout + run.stderr
    assert run.stderr == ""


@pytest.mark.parametrize("scenario", ["canary", "rollback"])
def test_says_what_is_real_and_what_is_simulated(runs: dict[str, DemoRun], scenario: str) -> None:
    run = runs[scenario]
    run.in_order(
        "a real, temporary redis-server at redis://127.0.0.1:",
        "cluster:     simulated",
        "metrics:     simulated",
        "Slack:       not connected",
        "· simulated cluster: created Deployment shop-api-canary (v1.1.0, 1 pod)",
    )


def test_canary_shows_the_card_then_every_stage_then_the_release(
    runs: dict[str, DemoRun],
) -> None:
    run = runs["canary"]
    run.in_order(
        "@U0DEMODEV (a simulated person) types: /release canary shop-api v1.1.0",
        "[card posted] in C0DEMOCHAN, ts 1700000000.000100",
        "│ shop-api v1.1.0 · canary release",
        "↳ [thread]",
        "started a canary of shop-api v1.1.0 (replacing v1.0.0)",
        "Preflight on the simulated cluster passed",
        "[card updated] ts 1700000000.000100",
        "➡️ stage 1/4 (0 %) for 2s: no public traffic, the canary is reachable by header",
        "➡️ stage 2/4 (5 %) for 2s: 5 % of traffic goes to the canary",
        "➡️ stage 3/4 (50 %) for 2s: 50 % of traffic goes to the canary, then it waits for approval",
        "✋ stage 3/4 (50 %) is done and needs approval from someone other than @U0DEMODEV",
        "@U0DEMOLEAD (a simulated person) clicks [ Approve ]",
        "👍 @U0DEMOLEAD approved stage 3/4 (50 %)",
        "➡️ stage 4/4 (100 %): 100 % of traffic goes to the canary",
        "🚀 promoting v1.1.0 (all 4 stages passed)",
        "│ ✅ Succeeded",
        "✅ shop-api v1.1.0 is released: stable runs it and the canary is removed",
        "Demo finished in ",
    )
    last_lines = run.stdout.strip().splitlines()[-2:]
    assert "shop-api v1.1.0 released, stable runs it (all 4 stages passed)" in last_lines[0]
    assert last_lines[1] == "To see a bad canary rolled back: release-bot demo --scenario rollback"
    assert "[channel alert]" not in run.stdout


def test_thread_replies_are_indented_under_the_card(runs: dict[str, DemoRun]) -> None:
    lines = runs["canary"].stdout.splitlines()
    replies = [line for line in lines if "[thread]" in line]
    assert len(replies) >= 8  # start, preflight, 4 stages, approval request, approval, ...
    assert all(
        line.startswith("    ↳ [thread] reply under the card, ts 1700000000.") for line in replies
    )
    assert "      │ 👍 @U0DEMOLEAD approved stage 3/4 (50 %)" in lines


def test_rollback_alerts_the_channel_and_goes_back_to_stable(runs: dict[str, DemoRun]) -> None:
    run = runs["rollback"]
    run.in_order(
        "➡️ stage 2/4 (5 %) for 2s",
        "· simulated metrics: error rate canary 12.4 % · stable 0.3 % (threshold 5 %)",
        "· simulated cluster: VirtualService shop-api: stable v1.0.0 100 %",
        "│ ↩️ Rolling back",
        "🚨 shop-api v1.1.0 is rolling back automatically at stage 2/4 (5 %): "
        "error rate is 12.4 % against a threshold of 5 %",
        "[channel alert] in C0DEMOCHAN",
        "! @here 🚨 shop-api v1.1.0: automatic rollback",
        "! shop-api v1.1.0 is rolling back automatically at stage 2/4 (5 %): "
        "error rate is 12.4 % against a threshold of 5 %",
        "· simulated cluster: deleted Deployment shop-api-canary; stable v1.0.0 only",
        "│ ⏪ Rolled back",
        "⏪ shop-api is back on v1.0.0 for all traffic; canary v1.1.0 is removed",
    )
    assert run.stdout.strip().splitlines()[-1].startswith("Demo finished in ")
    assert "shop-api v1.1.0 rolled back, stable v1.0.0 serves all traffic" in run.stdout
    assert "stage 3/4 (50 %) for" not in run.stdout  # never widened past the bad stage
    assert "clicks [ Approve ]" not in run.stdout


def test_without_redis_server_it_says_how_to_install_it(tmp_path: Path) -> None:
    run = _finish(_demo_process(path=str(tmp_path)))  # an empty directory: no redis-server
    assert run.returncode == 2
    assert "redis-server is not on PATH" in run.stderr
    assert "apt-get install redis-server" in run.stderr
    assert "Traceback" not in run.stderr
    assert run.stdout == ""
