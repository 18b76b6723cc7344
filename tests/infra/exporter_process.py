"""The tests' metrics exporter (tests/infra/exporter.py) in a process of its own, steered by pipe.

Used by benchmarks whose exporter renders many series every second (bench/rollback_latency.py
at 100 releases: ~13,000 samples, 2 MB a scrape): in the process that runs the bot, that rendering
would compete with the bot's threads for the GIL, and Prometheus's 1 s scrapes would time out.

`ExporterProcess` starts `python -m tests.infra.exporter_process`, which serves a MetricsExporter
on a free loopback port, writes its scrape target as its first line, then carries out one JSON
command a line from its stdin (`{"set_traffics": [...]}`, `{"reset": true}`) and answers each with
`ok` or `error: ...` once it is done, so a change is in force when the call returns.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, Any

from tests.infra.exporter import MetricsExporter

ROOT = Path(__file__).resolve().parents[2]


class ExporterProcess:
    """Start, steer and stop the exporter child; `set_traffics` and `reset` as MetricsExporter's."""

    def __init__(self) -> None:
        self._child: subprocess.Popen[str] | None = None
        self.target = ""
        """host:port, as a Prometheus scrape config names it."""

    def start(self) -> ExporterProcess:
        self._child = subprocess.Popen(
            [sys.executable, "-m", "tests.infra.exporter_process"],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.target = self._line()
        return self

    def set_traffics(self, changes: Iterable[Mapping[str, Any]]) -> None:
        self._command({"set_traffics": [dict(change) for change in changes]})

    def reset(self) -> None:
        self._command({"reset": True})

    def stop(self) -> None:
        if self._child is None:
            return
        assert self._child.stdin is not None
        self._child.stdin.close()  # the child ends at the end of its input
        self._child.wait(timeout=10)
        self._child = None

    def _command(self, command: Mapping[str, Any]) -> None:
        pipe = self._pipes()[0]
        pipe.write(json.dumps(command) + "\n")
        pipe.flush()
        answer = self._line()
        if answer != "ok":
            raise ValueError(f"the exporter refused {list(command)}: {answer}")

    def _line(self) -> str:
        line = self._pipes()[1].readline()
        if not line:
            raise RuntimeError("the exporter process ended (its errors are on stderr)")
        return line.strip()

    def _pipes(self) -> tuple[IO[str], IO[str]]:
        if self._child is None or self._child.stdin is None or self._child.stdout is None:
            raise RuntimeError("the exporter process is not running: call start() first")
        return self._child.stdin, self._child.stdout


def serve(commands: IO[str], answers: IO[str]) -> None:
    """The child's side: serve the exporter, carry out the commands until the input ends."""
    exporter = MetricsExporter().start()
    print(exporter.target, file=answers, flush=True)
    try:
        for line in commands:
            command = json.loads(line)
            try:
                if "set_traffics" in command:
                    exporter.set_traffics(command["set_traffics"])
                elif command.get("reset"):
                    exporter.reset()
                else:
                    raise ValueError(f"unknown command {sorted(command)}")
            except (ValueError, KeyError) as error:
                print(f"error: {error}", file=answers, flush=True)
                continue
            print("ok", file=answers, flush=True)
    finally:
        exporter.stop()


if __name__ == "__main__":
    serve(sys.stdin, sys.stdout)
