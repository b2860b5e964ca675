"""Workers split the quota evenly without Redis, and share it with Redis."""

from __future__ import annotations

from classify_gateway.config import from_env
from classify_gateway.edge.server import server_options
from classify_gateway.workers import split_for_workers, worker_slot


def test_split_without_redis() -> None:
    s = from_env(
        {},
        api_key="k",
        upstream_rps=10.0,
        upstream_burst=5,
        upstream_max_concurrency=64,
        upstream_daily_quota=101,
        workers=2,
    )
    w = split_for_workers(s, 2)
    assert (w.upstream_rps, w.upstream_burst, w.upstream_max_concurrency) == (5.0, 2, 32)
    assert w.upstream_daily_quota == 51


def test_the_v13_endpoints_own_rates_are_split_too() -> None:
    s = from_env(
        {},
        api_key="k",
        upstream_rps=10.0,
        upstream_burst=6,
        v13_embed_rps=4.0,
        v13_embed_burst=8,
        workers=2,
    )
    w = split_for_workers(s, 2)
    assert w.endpoint_rates == {"embed": (2.0, 4), "videos": (5.0, 3)}
    assert s.endpoint_rates == {"embed": (4.0, 8), "videos": (10.0, 6)}


def test_shared_with_redis() -> None:
    s = from_env({}, api_key="k", upstream_rps=10.0, redis_url="redis://r:6379/0", workers=4)
    assert split_for_workers(s, 4) == s


def test_slot_and_reuseport() -> None:
    assert worker_slot({"CLASSIFY_GATEWAY_WORKER_SLOT": "1/3"}) == (1, 3)
    assert worker_slot({}) is None
    options = dict(server_options(from_env({}, api_key="k", workers=2)))
    assert options["grpc.so_reuseport"] == 1
    assert dict(server_options(from_env({}, api_key="k")))["grpc.so_reuseport"] == 0
