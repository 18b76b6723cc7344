"""Redis behind Sentinel, for real: Debian's redis-server as a primary and one replica, and three
Sentinels watching them (quorum 2, down after 1 s), all on free loopback ports in a temporary
directory. Failover drills SIGKILL the primary and wait for the Sentinels to promote the replica.

A pytest plugin (listed in tests/conftest.py): fixture `redis_sentinels` (a fresh set per test,
since a drill leaves it failed over).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from bot.redis.store import connect
from tests.infra.processes import ManagedProcess, free_port, wait_until

MASTER_NAME = "release-bot"
QUORUM = 2
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 5000
READY_TIMEOUT_S = 30
PROMOTION_TIMEOUT_S = 30


def _binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} not found: install Debian's {name} (scripts/setup.sh does)")
    return found


@dataclass
class RedisNode:
    """One redis-server, without persistence: the replica holds the copy a failover keeps."""

    name: str
    data_dir: Path
    port: int = field(default_factory=free_port)
    process: ManagedProcess | None = None

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, decode_responses=True, socket_timeout=5)

    def start(self, *, replica_of: int | None = None) -> RedisNode:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            _binary("redis-server"), "--port", str(self.port), "--bind", "127.0.0.1",
            "--dir", str(self.data_dir), "--appendonly", "no", "--save", "",
            "--daemonize", "no", "--repl-diskless-sync-delay", "0",
        ]  # fmt: skip
        if replica_of is not None:
            argv += ["--replicaof", "127.0.0.1", str(replica_of)]
        log = self.data_dir / f"{self.name}.log"
        self.process = ManagedProcess(self.name, argv, log).start()
        wait_until(self._answers_ping, timeout_s=15, what=self.name)
        return self

    def _answers_ping(self) -> bool:
        assert self.process is not None
        self.process.ensure_alive()
        return bool(self.client().ping())

    def role(self) -> str:
        return str(self.client().info("replication")["role"])

    def linked(self) -> bool:
        """A replica whose link to its primary is up and synced."""
        info = self.client().info("replication")
        return info["role"] == "slave" and info.get("master_link_status") == "up"

    def kill(self) -> None:
        """SIGKILL: no shutdown, no last write to anyone, as when its node dies."""
        if self.process is not None:
            self.process.kill()

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


@dataclass
class SentinelNode:
    name: str
    data_dir: Path
    primary_port: int
    port: int = field(default_factory=free_port)
    process: ManagedProcess | None = None

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, decode_responses=True, socket_timeout=5)

    def start(self) -> SentinelNode:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self.data_dir / f"{self.name}.conf"  # Sentinel rewrites it: one per Sentinel
        config.write_text(
            f"port {self.port}\nbind 127.0.0.1\nprotected-mode no\ndir {self.data_dir}\n"
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.primary_port} {QUORUM}\n"
            f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}\n"
            f"sentinel parallel-syncs {MASTER_NAME} 1\n"
        )
        # Debian's redis-sentinel is redis-server in Sentinel mode; this works without it too.
        sentinel = shutil.which("redis-sentinel")
        argv = [sentinel, str(config)] if sentinel else [_binary("redis-server"), str(config)]
        argv.append("--sentinel")
        log = self.data_dir / f"{self.name}.log"
        self.process = ManagedProcess(self.name, argv, log).start()
        wait_until(self._answers_ping, timeout_s=15, what=self.name)
        return self

    def _answers_ping(self) -> bool:
        assert self.process is not None
        self.process.ensure_alive()
        return bool(self.client().ping())

    def master_state(self) -> dict[str, object]:
        return dict(self.client().sentinel_master(MASTER_NAME))

    def master_port(self) -> int:
        _host, port = self.client().sentinel_get_master_addr_by_name(MASTER_NAME)
        return int(port)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


@dataclass
class SentinelCluster:
    """A primary, its replica and three Sentinels. After a failover `primary` and `replica` keep
    naming the processes they were started as; `master()` is whoever Sentinel says it is now."""

    primary: RedisNode
    replica: RedisNode
    sentinels: list[SentinelNode]

    @property
    def nodes(self) -> list[RedisNode]:
        return [self.primary, self.replica]

    @property
    def addresses(self) -> list[tuple[str, int]]:
        return [("127.0.0.1", sentinel.port) for sentinel in self.sentinels]

    @property
    def environment(self) -> dict[str, str]:
        """The bot's variables for this cluster (instead of REDIS_URL)."""
        return {
            "REDIS_SENTINELS": ",".join(f"{host}:{port}" for host, port in self.addresses),
            "REDIS_SENTINEL_MASTER": MASTER_NAME,
        }

    def client(self) -> redis.Redis:
        """A client through the Sentinels, made as the bot makes its own."""
        return connect(sentinels=self.addresses, master=MASTER_NAME)

    def node_on(self, port: int) -> RedisNode:
        return next(node for node in self.nodes if node.port == port)

    def master(self) -> RedisNode:
        return self.node_on(self.sentinels[0].master_port())

    def start(self) -> SentinelCluster:
        self.primary.start()
        self.replica.start(replica_of=self.primary.port)
        wait_until(self.replica.linked, timeout_s=READY_TIMEOUT_S, what="the replica's sync")
        for sentinel in self.sentinels:
            sentinel.start()
        wait_until(self._watched, timeout_s=READY_TIMEOUT_S, what="the Sentinels to meet")
        return self

    def _watched(self) -> bool:
        """Every Sentinel knows the replica and both other Sentinels: a failover can happen."""
        for sentinel in self.sentinels:
            state = sentinel.master_state()
            if int(str(state["num-other-sentinels"])) != len(self.sentinels) - 1:
                return False
            if int(str(state["num-slaves"])) < 1:
                return False
        return True

    def wait_promoted(self, old_port: int) -> float:
        """Wait until every Sentinel names a new master that answers as one; seconds waited."""

        def promoted() -> bool:
            ports = {sentinel.master_port() for sentinel in self.sentinels}
            if len(ports) != 1 or old_port in ports:
                return False
            return self.node_on(ports.pop()).role() == "master"

        return wait_until(
            promoted, timeout_s=PROMOTION_TIMEOUT_S, what="a new master", interval_s=0.05
        )

    def rejoin(self, node: RedisNode) -> float:
        """Restart a dead node as a replica of the current master, as its pod would come back;
        seconds until it is in sync."""
        started = time.monotonic()
        master = self.master()
        node.start(replica_of=master.port)
        wait_until(node.linked, timeout_s=READY_TIMEOUT_S, what=f"{node.name} to resync")
        # the replica sees its link up a moment before the master counts it online for WAIT
        wait_until(
            lambda: _online_replicas(master) >= 1,
            timeout_s=READY_TIMEOUT_S,
            what=f"{master.name} to count {node.name} as an online replica",
        )
        return time.monotonic() - started

    def stop(self) -> None:
        for sentinel in self.sentinels:
            sentinel.stop()
        for node in self.nodes:
            node.stop()

    def log_tails(self) -> str:
        parts = [self.primary, self.replica, *self.sentinels]
        return "\n".join(
            f"--- {part.name}\n{part.process.log_tail()}" for part in parts if part.process
        )


@pytest.fixture
def redis_sentinels(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelCluster]:
    root = Path(tmp_path_factory.mktemp("sentinel"))
    primary = RedisNode("redis-a", root / "redis-a")
    replica = RedisNode("redis-b", root / "redis-b")
    sentinels = [
        SentinelNode(f"sentinel-{index}", root / f"sentinel-{index}", primary.port)
        for index in range(3)
    ]
    cluster = SentinelCluster(primary, replica, sentinels)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def _online_replicas(master: RedisNode) -> int:
    """Replicas the master reports connected and online (`slaveN: ...,state=online,...`)."""
    info = master.client().info("replication")
    return sum(
        1
        for key, value in info.items()
        if key.startswith("slave") and isinstance(value, dict) and value.get("state") == "online"
    )
