"""SharedLimiter: deadlines, continuations first, fair share, learning from the upstream."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import pytest

from classify_gateway.config import from_env
from classify_gateway.core.errors import GatewayError
from classify_gateway.quota.limiter import SharedLimiter
from classify_gateway.state.redis_conn import connect
from classify_gateway.state.shared_state import InProcessState, RedisState

KEY = "tlk_QUOTA_TEST_KEY"


@dataclass(frozen=True)
class Call:
    deadline: float
    api_key: str = KEY
    caller: str = ""


def call(seconds: float, **kw: Any) -> Call:
    """A call whose deadline is `seconds` from now."""
    return Call(time.monotonic() + seconds, **kw)


class Recorder:
    def __init__(self) -> None:
        self.waits: list[float] = []
        self.rejected: list[tuple[str, str]] = []

    def quota_wait(self, seconds: float) -> None:
        self.waits.append(seconds)

    def quota_rejected(self, caller: str, reason: str) -> None:
        self.rejected.append((caller, reason))


@pytest.fixture(params=["in-process", "redis"])
async def make(request: pytest.FixtureRequest) -> Any:
    made: list[Any] = []

    def build(**kw: Any) -> tuple[SharedLimiter, Recorder]:
        if request.param == "in-process":
            state: Any = InProcessState()
        else:
            server = request.getfixturevalue("redis")
            client = connect(from_env({}, api_key=KEY, redis_url=server.url, redis_timeout_ms=2000))
            state = RedisState(client)  # type: ignore[arg-type]
            made.append(state)
        hooks = Recorder()
        args = {"rps": 10.0, "burst": 2, "max_concurrency": 64, **kw}
        return SharedLimiter(state, hooks=hooks, **args), hooks

    yield build
    for s in made:
        await s.aclose()


async def test_deadline_that_cannot_be_met_fails_at_once(make: Any) -> None:
    limiter, hooks = make(rps=1.0, burst=1)
    await limiter.acquire(call(5))
    limiter.release()
    started = time.monotonic()
    with pytest.raises(GatewayError) as err:
        await limiter.acquire(call(0.3, caller="svc"))
    assert time.monotonic() - started < 0.2
    assert err.value.reason == "GATEWAY_RATE_LIMITED" and 0.5 < (err.value.retry_delay or 0) <= 1
    assert hooks.rejected == [("svc", "rate")]


async def test_first_pages_wait_their_turn_within_the_deadline(make: Any) -> None:
    limiter, hooks = make(rps=10.0, burst=2)
    deadline = time.monotonic() + 5
    started = time.monotonic()
    for _ in range(6):
        await limiter.acquire(Call(deadline))
        limiter.release()
    # 2 at once, then one per 100 ms.
    assert 0.35 < time.monotonic() - started < 1.5
    assert len(hooks.waits) == 6


async def test_continuations_finish_before_new_streams_start(make: Any) -> None:
    limiter, _ = make(rps=5.0, burst=1)
    order: list[str] = []
    deadline = time.monotonic() + 5

    async def one(name: str, first_page: bool) -> None:
        await limiter.acquire(Call(deadline), first_page=first_page)
        order.append(name)
        limiter.release()

    await one("p1", True)  # spends the burst
    await asyncio.gather(
        *(one(f"new{i}", True) for i in range(3)), *(one(f"cont{i}", False) for i in range(3))
    )
    assert sorted(order[1:4]) == ["cont0", "cont1", "cont2"]


async def test_a_quiet_caller_gets_its_share(make: Any) -> None:
    limiter, _ = make(rps=20.0, burst=2)
    counts = {"busy": 0, "quiet": 0}
    stop = time.monotonic() + 1.5

    async def loop(caller: str) -> None:
        while time.monotonic() < stop:
            try:
                await limiter.acquire(call(0.5, caller=caller))
            except GatewayError:
                continue
            if time.monotonic() <= stop:
                counts[caller] += 1
            limiter.release()
            await asyncio.sleep(0.01)  # the upstream answers

    await asyncio.gather(*(loop("busy") for _ in range(12)), loop("quiet"))
    total = counts["busy"] + counts["quiet"]
    assert total <= 20 * 1.5 + 2 + 1
    assert counts["quiet"] >= 0.3 * total, counts


async def test_rotating_identities_cannot_crowd_out_a_listed_caller(make: Any) -> None:
    """A caller that sends a new identity on every call (metadata:<key> is caller-written)
    draws on the one pool of unlisted identities, not on a fresh share per call."""
    limiter, _ = make(rps=20.0, burst=2, weights={"victim": 3.0})
    counts = {"victim": 0, "rotator": 0}
    stop = time.monotonic() + 1.5
    rotations = iter(range(1_000_000))

    async def loop(who: str) -> None:
        while time.monotonic() < stop:
            caller = who if who == "victim" else f"rotator-{next(rotations)}"
            try:
                await limiter.acquire(call(0.5, caller=caller))
            except GatewayError:
                continue
            if time.monotonic() <= stop:
                counts[who] += 1
            limiter.release()
            await asyncio.sleep(0.01)  # the upstream answers

    await asyncio.gather(*(loop("rotator") for _ in range(12)), *(loop("victim") for _ in range(3)))
    total = counts["victim"] + counts["rotator"]
    assert total <= 20 * 1.5 + 2 + 1
    # Weighted 3 against one pooled share of 1: at least its 3/4 less the slack the
    # work-conserving rule gives away.
    assert counts["victim"] >= 0.6 * total, counts


async def test_a_429_stops_everyone_until_its_reset(make: Any) -> None:
    limiter, hooks = make(rps=100.0, burst=10)
    now = time.time()
    blocked = await limiter.learn(KEY, 429, {"x-ratelimit-reset": str(now + 0.4)}, now)
    assert 0.35 < blocked <= 0.41
    with pytest.raises(GatewayError) as err:
        await limiter.acquire(call(0.2), first_page=False)
    assert "reset" in err.value.message and hooks.rejected[-1][1] == "upstream"
    started = time.monotonic()
    await limiter.acquire(call(2))
    assert time.monotonic() - started > 0.2
    limiter.release()


async def test_remaining_zero_blocks_until_reset_and_other_answers_do_not(make: Any) -> None:
    limiter, _ = make(rps=100.0, burst=10)
    now = time.time()
    assert (
        await limiter.learn(
            KEY, 200, {"x-ratelimit-remaining": "5", "x-ratelimit-reset": str(now + 60)}, now
        )
        == 0
    )
    assert (
        await limiter.learn(
            KEY, 200, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(now + 60)}, now
        )
        == 60
    )
    with pytest.raises(GatewayError):
        await limiter.acquire(call(1))
    # Another API key has a quota of its own.
    await limiter.acquire(call(1, api_key="another-key"))
    limiter.release()


async def test_each_endpoint_has_its_own_rate_and_its_own_block(make: Any) -> None:
    """v1.3's categories: `embed` at 2/s (burst 1), `videos` at the limiter's 10/s."""
    limiter, _ = make(rps=10.0, burst=2, endpoints={"embed": (2.0, 1)})
    await limiter.acquire(call(0.2), endpoint="embed")  # the embed burst
    limiter.release()
    with pytest.raises(GatewayError):
        await limiter.acquire(call(0.2), endpoint="embed")  # next slot in 0.5 s
    # The videos bucket is another: admitted at once, where embed's next slot is 0.5 s
    # away. (One call: a second within 0.2 s would wait on videos' own 10/s, a race
    # with DEADLINE_MARGIN.)
    await limiter.acquire(call(0.2), endpoint="videos")
    limiter.release()
    now = time.time()
    await limiter.learn(KEY, 429, {"retry-after": "30"}, now, endpoint="videos")
    with pytest.raises(GatewayError) as err:
        await limiter.acquire(call(1), endpoint="videos")
    assert "reset" in err.value.message
    await limiter.acquire(call(1))  # the key's own bucket and the embed one are not blocked
    limiter.release()
    await limiter.acquire(call(1), endpoint="embed")
    limiter.release()


@pytest.mark.parametrize(
    ("status", "headers"),
    [
        (429, {"retry-after": "nan"}),
        (429, {"retry-after": "inf"}),
        (429, {"x-ratelimit-reset": "nan"}),
        (429, {"retry-after": "1e12"}),
        (200, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "nan"}),
        (200, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "inf"}),
        (200, {"x-ratelimit-remaining": "nan", "x-ratelimit-reset": "1e15"}),
    ],
)
async def test_non_finite_or_absurd_quota_headers_block_nobody_for_long(
    make: Any, status: int, headers: dict[str, str]
) -> None:
    """`Retry-After: nan` once blocked every replica for 24 hours (`min(cap, nan)` is
    the cap). A 429 that says nothing usable waits the default second; a 200 none."""
    limiter, _ = make(rps=100.0, burst=10)
    blocked = await limiter.learn(KEY, status, headers, time.time())
    assert blocked <= 1.0
    await limiter.acquire(call(3.0))  # served within the default wait
    limiter.release()


async def test_daily_budget(make: Any) -> None:
    limiter, _ = make(rps=0.0, burst=1, daily_quota=3)
    for _ in range(3):
        await limiter.acquire(call(1))
        limiter.release()
    with pytest.raises(GatewayError) as err:
        await limiter.acquire(call(1))
    assert "DAILY_QUOTA" in err.value.message


async def test_caller_labels_are_bounded() -> None:
    hooks = Recorder()
    limiter = SharedLimiter(
        InProcessState(), rps=1.0, burst=1, max_concurrency=8, weights={"vip": 2}, hooks=hooks
    )
    await limiter.acquire(call(5))
    limiter.release()
    for i in range(105):
        with pytest.raises(GatewayError):
            await limiter.acquire(call(0.2, caller=f"svc-{i}"))
    with pytest.raises(GatewayError):
        await limiter.acquire(call(0.2, caller="vip"))
    labels = [c for c, _ in hooks.rejected]
    assert len(set(labels[:100])) == 100 and set(labels[100:105]) == {"other"}
    assert labels[-1] == "vip"
