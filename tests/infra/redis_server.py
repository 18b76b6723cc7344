"""Debian's redis-server on a free loopback port, with AOF on so restart tests keep their data.

A pytest plugin (listed in tests/conftest.py): fixtures `redis_server` and `redis_client`.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from tests.infra.processes import ManagedProcess, free_port, wait_until


@dataclass
class RedisServer:
    data_dir: Path
    port: int = 0
    process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, decode_responses=True)

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(
                "redis-server not found: install Debian's redis-server (scripts/setup.sh does)"
            )
        self.port = self.port or free_port()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.data_dir),
            "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--daemonize", "no",
        ]  # fmt: skip
        self.process = ManagedProcess("redis-server", argv, self.data_dir / "redis.log").start()
        wait_until(self._answers_ping, timeout_s=15, what="redis-server")
        return self

    def _answers_ping(self) -> bool:
        assert self.process is not None
        self.process.ensure_alive()
        return bool(self.client().ping())

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def restart(self) -> None:
        """Stop and start on the same port and data directory (AOF replays the data)."""
        self.stop()
        self.start()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(data_dir=Path(tmp_path_factory.mktemp("redis"))).start()
    yield server
    server.stop()


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A client on an emptied database: every test starts from a clean Redis."""
    client = redis_server.client()
    client.flushall()
    yield client
    client.close()
