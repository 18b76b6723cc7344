"""`release-bot demo`, run as a newcomer runs it (a subprocess, real redis-server), judged by its
output: the Slack messages in order, the simulated person's approval, the outcome, exit codes."""

from __future__ import annotations

import itertools
import re
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

    def between(self, start: str, end: str) -> str:
        """The output from the first `start` up to the first `end` after it."""
        begin = self.position(start)
        return self.stdout[begin : self.position(end, after=begin)]


def _demo_process(*args: str, path: str | None = None) -> subprocess.Popen[str]:
    env = None if path is None else {"PATH": path}
    return subprocess.Popen(
        [sys.executable, "-m", "bot.entrypoints.cli", "demo", *args],
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
    """Every scenario, run side by side to cut the wait (each has its own redis-server)."""
    processes = {
        "canary": _demo_process(),
        "rollback": _demo_process("--scenario", "rollback"),
        "bluegreen": _demo_process("--scenario", "bluegreen"),
        "hybrid": _demo_process("--scenario", "hybrid"),
    }
    try:
        yield {scenario: _finish(process) for scenario, process in processes.items()}
    finally:
        for process in processes.values():
            process.kill()


@pytest.mark.parametrize("scenario", ["canary", "rollback", "bluegreen", "hybrid"])
def test_each_scenario_exits_0_without_a_traceback(runs: dict[str, DemoRun], scenario: str) -> None:
    run = runs[scenario]
    assert run.returncode == 0, run.stderr
    assert "Traceback" not in run.stdout + run.stderr
    assert run.stderr == ""  # the bot logged no warning
    assert "[info" not in run.stdout  # its info log stays out of the transcript


@pytest.mark.parametrize("scenario", ["canary", "rollback"])
def test_says_what_is_real_and_what_is_simulated(runs: dict[str, DemoRun], scenario: str) -> None:
    run = runs[scenario]
    run.in_order(
        "a real, temporary redis-server at redis://127.0.0.1:",
        "cluster:     simulated",
        "metrics:     simulated, no Prometheus is asked; the bot's real analysis judges canary",
        "against stable every 1s over the last 5s and rolls back above 5 % errors",
        "Slack:       not connected",
        "· simulated cluster: created Deployment shop-api-canary (v1.1.0, 1 pod)",
        "· simulated metrics: canary 2 req/s, ",
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
        "➡️ stage 2/4 (5 %) for 5s: 5 % of traffic goes to the canary",
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


STAGE_STARTS = (
    "➡️ stage 1/4 (0 %)",
    "➡️ stage 2/4 (5 %)",
    "➡️ stage 3/4 (50 %)",
    "➡️ stage 4/4 (100 %)",
    "🚀 promoting",
)


def test_canary_posts_a_passing_snapshot_in_every_stage(runs: dict[str, DemoRun]) -> None:
    run = runs["canary"]
    stages = [run.between(start, end) for start, end in itertools.pairwise(STAGE_STARTS)]
    assert all("      │ 📊 ✅ Passed: " in stage for stage in stages)
    header_only, five, fifty, full = stages
    assert (
        "📊 ✅ Passed: not judged: only 10 canary requests in 5s, need 20, "
        "and the canary takes no public traffic" in header_only
    )
    assert "✅ QPS: canary 10 req/s · stable 190 req/s · min 1 req/s · trend canary " in five
    assert "✅ QPS: canary 100 req/s · stable 100 req/s · min 1 req/s · trend canary " in fifty
    assert "✅ QPS: canary 200 req/s · stable 0 req/s · min 1 req/s · trend canary " in full
    assert re.search(r"✅ error rate: canary 0\.[234] % · stable no data · max 5 % · trend ", full)
    assert "❌" not in run.stdout and "❔" not in run.stdout


def test_canary_snapshots_compare_canary_with_stable(runs: dict[str, DemoRun]) -> None:
    run = runs["canary"]
    five = run.between(STAGE_STARTS[1], STAGE_STARTS[2])
    errors = re.findall(
        r"✅ error rate: canary (0\.[234]) % · stable 0\.3 % · max 5 % · trend ", five
    )
    latency = re.findall(
        r"✅ p99 latency: canary 1(18|21|22) ms · stable 110 ms · max 300 ms", five
    )
    assert errors and len(errors) == len(latency)
    assert (
        "_canary vs stable over the last 5s: 50 vs 950 requests · trends oldest → newest_" in five
    )


def test_card_updates_within_a_stage_show_only_what_changed(runs: dict[str, DemoRun]) -> None:
    run = runs["canary"]
    run.in_order(
        "➡️ stage 2/4 (5 %)",
        "· simulated metrics: canary 10 req/s, ",
        "[card updated] ts 1700000000.000100, changed lines only:\n  │ Stage time: ⏱ ",
        "  │ 📊 ✅ passed: all checks passed · canary vs stable over 5s: "
        "QPS 10 req/s vs 190 req/s, error rate 0.",
    )
    whole_cards = run.stdout.count("[card updated] ts 1700000000.000100\n")
    assert whole_cards == 7  # each phase or stage change: 4 stages, approval, promoting, done


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
        "➡️ stage 2/4 (5 %) for 5s",
        "· simulated metrics: canary 10 req/s, 0.6 % errors, p99 124 ms · stable 190 req/s, "
        "0.3 % errors, p99 110 ms",
        "📊 ✅ Passed: all checks passed",
        "✅ error rate: canary 0.6 % · stable 0.3 % · max 5 % · trend",
        "· simulated metrics: canary 10 req/s, 1.8 % errors",
        "· simulated metrics: canary 10 req/s, 4.1 % errors",
        "📊 ✅ Passed: all checks passed",
        "✅ error rate: canary 4.1 % · stable 0.3 % · max 5 % · trend",
        "· simulated metrics: canary 10 req/s, 12.4 % errors",
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
    assert run.stdout.count("12.4 % errors") == 1  # the first check that saw it rolled back


def test_rollback_snapshot_trend_shows_the_error_rate_climbing(runs: dict[str, DemoRun]) -> None:
    run = runs["rollback"]
    snapshot = re.search(
        r"✅ error rate: canary 4\.1 % · stable 0\.3 % · max 5 % · "
        r"trend canary ([·▁-█]+) stable ([·▁-█]+)\n",
        run.stdout,
    )
    assert snapshot is not None, run.stdout
    canary, stable = snapshot.groups()
    readings = canary.replace("·", "")
    assert readings[-1] == max(readings) == "▇"  # 4.1 %, the newest, near the 5 % limit (█)
    assert min(readings) <= "▂"  # 0.6 % and below earlier in the window: a climb, not a plateau
    assert set(stable) == {"▁"}  # stable's flat 0.3 % on the same scale, far below the limit


def test_without_redis_server_it_says_how_to_install_it(tmp_path: Path) -> None:
    run = _finish(_demo_process(path=str(tmp_path)))  # an empty directory: no redis-server
    assert run.returncode == 2
    assert "redis-server is not on PATH" in run.stderr
    assert "apt-get install redis-server" in run.stderr
    assert "Traceback" not in run.stderr
    assert run.stdout == ""


def test_bluegreen_switches_a_bad_green_back_by_itself_then_releases_a_good_one(
    runs: dict[str, DemoRun],
) -> None:
    run = runs["bluegreen"]
    run.in_order(
        "release-bot demo (bluegreen scenario): two blue-green releases of shop-api v1.0.0",
        "types: /release bluegreen shop-api v1.1.0",
        "created Deployment shop-api-green (v1.1.0, 4 pods) beside blue",
        "│ 🔵 Blue v1.0.0",
        "│ 🟢 Green v1.1.0",
        "on its preview Service",
        "clicks [ Approve ]",
        "Service shop-api selector now version: v1.1.0 (one update)",
        "│ 🔀 Switched production to green in ",
        "the watch window for 6s",
        "Service shop-api selector now version: v1.0.0 (one update)",  # traffic first
        "switching back to blue v1.0.0 automatically at the watch window: error rate is 12.4 %",
        "! @here 🚨 shop-api v1.1.0: automatic rollback",
        "shop-api is back on blue v1.0.0 for all traffic",
        "types: /release bluegreen shop-api v1.1.1",
        "Switched production to green in ",
        "blue v1.0.0 is kept until",
        "scaled blue Deployment shop-api (v1.0.0) to 0",
        "deleted blue Deployment shop-api",
        "shop-api v1.1.1 is released: green serves production and blue v1.0.0 is deleted",
        "Demo finished in ",
    )
    assert run.stdout.count("[channel alert]") == 1  # the switch-back, nothing else


def test_hybrid_previews_a_full_size_green_then_widens_it_in_canary_stages(
    runs: dict[str, DemoRun],
) -> None:
    run = runs["hybrid"]
    run.in_order(
        "release-bot demo (hybrid scenario): a hybrid release of shop-api v1.0.0 (blue)",
        "types: /release hybrid shop-api v1.1.0",
        "created green Deployment shop-api-canary (v1.1.0, 4 pods, as big as blue)",
        "the preview: green v1.1.0 is ready on its preview Service",
        "clicks [ Approve ]",
        "stable v1.0.0 95 % · canary v1.1.0 5 % (canary 4 of 4 pods)",
        "stage 2/4 (5 %) for 5s: 5 % of traffic goes to green",
        "stage 3/4 (50 %) for 2s: 50 % of traffic goes to green, then it waits for approval",
        "clicks [ Approve ]",
        "Demo finished in ",
    )
    assert "shop-api v1.1.0 released, stable runs it" in run.stdout
    assert "[channel alert]" not in run.stdout
