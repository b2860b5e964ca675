"""Redis as platform teams run it, for tests: Sentinel and Cluster from real processes.

Every process is a tests/support/redis_server.py `RedisServer` on free loopback ports
(redis-server with `--sentinel`, or `--cluster-enabled yes`; `redis-cli --cluster create`
joins a cluster). Timeouts are short (a master is "down" after DOWN_AFTER_MS, a cluster
node after NODE_TIMEOUT_MS) so that a failover fits in a test of seconds.

    with sentinel_setup() as s:     # one master, one replica, three sentinels
        s.url                       # redis+sentinel://127.0.0.1:P1,...,127.0.0.1:P3/gw/0
        s.kill_master(); s.wait_promoted()

    with cluster_setup() as c:      # three masters, no replicas
        c.url                       # redis+cluster://127.0.0.1:P1,...
        c.node_for(b"key").kill(); c.wait_state("fail")

Orchestration (readiness, who is master) uses redis-py's synchronous client, never the
gateway's code under test.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator

import redis
from redis.cluster import key_slot

from tests.support.processes import free_port
from tests.support.redis_server import RedisServer

SERVICE = "gw"
DOWN_AFTER_MS = 500
FAILOVER_TIMEOUT_MS = 2000
NODE_TIMEOUT_MS = 1000
READY_TIMEOUT = 20.0


def _client(port: int) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=port, socket_timeout=2, socket_connect_timeout=2)


def _until(what: str, check: object, timeout: float = READY_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(redis.RedisError, OSError):
            if check():  # type: ignore[operator]
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


class SentinelSetup:
    """One master, one replica and `sentinels` sentinels watching them (quorum 2)."""

    def __init__(self, sentinels: int = 3) -> None:
        self.master = RedisServer()
        self.replica = RedisServer(args=["--replicaof", "127.0.0.1", str(self.master.port)])
        quorum = min(2, sentinels)
        conf = (
            f"sentinel monitor {SERVICE} 127.0.0.1 {self.master.port} {quorum}\n"
            f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}\n"
            f"sentinel parallel-syncs {SERVICE} 1\n"
        )
        self.sentinels = [RedisServer(config=conf, args=["--sentinel"]) for _ in range(sentinels)]

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{SERVICE}/0"

    @property
    def servers(self) -> list[RedisServer]:
        return [self.master, self.replica]

    def start(self) -> SentinelSetup:
        self.master.start()
        self.replica.start()
        for s in self.sentinels:
            s.start()
        _until("the replica's link to its master", self._replica_linked)
        # Sentinels find the replica from the master's INFO and each other through the
        # master's hello channel (every 2 s): a failover needs both.
        _until("sentinels that know the replica and each other", self._sentinels_ready)
        return self

    def _replica_linked(self) -> bool:
        info = _client(self.replica.port).info("replication")
        return bool(info.get("master_link_status") == "up")

    def _sentinels_ready(self) -> bool:
        for s in self.sentinels:
            state = _client(s.port).sentinel_master(SERVICE)
            if state["num-slaves"] < 1 or state["num-other-sentinels"] < len(self.sentinels) - 1:
                return False
        return True

    def master_port(self) -> int:
        """The master's port as the sentinels say it (the first that answers)."""
        for s in self.sentinels:
            if s.alive():
                with contextlib.suppress(redis.RedisError):
                    _, port = _client(s.port).sentinel_get_master_addr_by_name(SERVICE)
                    return int(port)
        raise RuntimeError("no sentinel answers")

    def current_master(self) -> RedisServer:
        port = self.master_port()
        return next(s for s in self.servers if s.port == port)

    def kill_master(self) -> RedisServer:
        """SIGKILL the current master (a crash); returns it."""
        old = self.current_master()
        old.kill()
        return old

    def failover(self) -> None:
        """SENTINEL FAILOVER: the graceful switch an operator makes."""
        alive = next(s for s in self.sentinels if s.alive())
        _client(alive.port).execute_command("SENTINEL", "FAILOVER", SERVICE)

    def wait_promoted(self, old_port: int, timeout: float = 20.0) -> int:
        """Wait until every live sentinel names a master other than `old_port` and that
        server says it is a master; returns its port."""

        def promoted() -> bool:
            ports = {
                int(_client(s.port).sentinel_get_master_addr_by_name(SERVICE)[1])
                for s in self.sentinels
                if s.alive()
            }
            if len(ports) != 1 or old_port in ports:
                return False
            role = _client(ports.pop()).execute_command("ROLE")[0]
            return bool(role in (b"master", "master"))

        _until("the promoted replica", promoted, timeout)
        return self.master_port()

    def stop(self) -> None:
        for s in [*self.sentinels, self.replica, self.master]:
            s.stop()


@contextlib.contextmanager
def sentinel_setup(sentinels: int = 3) -> Iterator[SentinelSetup]:
    setup = SentinelSetup(sentinels)
    try:
        yield setup.start()
    finally:
        setup.stop()


def redis_cli_path() -> str:
    path = shutil.which("redis-cli")
    if path is None:
        raise RuntimeError("redis-cli is not installed: run `make redis-server` (redis-tools)")
    return path


class ClusterSetup:
    """`masters` cluster nodes (no replicas), all 16384 slots assigned by redis-cli."""

    def __init__(self, masters: int = 3) -> None:
        self.nodes = [
            RedisServer(
                args=[
                    "--cluster-enabled",
                    "yes",
                    # The bus port is port + 10000 unless set: a free port of its own.
                    "--cluster-port",
                    str(free_port()),
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    str(NODE_TIMEOUT_MS),
                ]
            )
            for _ in range(masters)
        ]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def start(self) -> ClusterSetup:
        for n in self.nodes:
            n.start()
        subprocess.run(
            [
                redis_cli_path(),
                "--cluster",
                "create",
                *(f"127.0.0.1:{n.port}" for n in self.nodes),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=60,
        )
        self.wait_state("ok")
        return self

    def wait_state(self, state: str, timeout: float = READY_TIMEOUT) -> None:
        """Until every live node reports `cluster_state:<state>` (ok or fail)."""

        def reached() -> bool:
            return all(
                _client(n.port).cluster("info")["cluster_state"] == state
                for n in self.nodes
                if n.alive()
            )

        _until(f"cluster_state:{state}", reached, timeout)

    def node_for(self, key: bytes | str) -> RedisServer:
        """The node serving `key`'s hash slot."""
        slot = key_slot(key.encode() if isinstance(key, str) else key)
        live = next(n for n in self.nodes if n.alive())
        for start, end, master, *_ in _client(live.port).execute_command("CLUSTER", "SLOTS"):
            if start <= slot <= end:
                return next(n for n in self.nodes if n.port == int(master[1]))
        raise RuntimeError(f"slot {slot} is not served")

    def flush(self) -> None:
        for n in self.nodes:
            if n.alive():
                _client(n.port).flushall()

    def stop(self) -> None:
        for n in self.nodes:
            n.stop()


@contextlib.contextmanager
def cluster_setup(masters: int = 3) -> Iterator[ClusterSetup]:
    setup = ClusterSetup(masters)
    try:
        yield setup.start()
    finally:
        setup.stop()
