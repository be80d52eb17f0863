"""The shared-state interface behaves the same in this process and in Redis."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from aimsguard.collectors import Count, MemoryState, RedisState, State, StateError, open_state
from tests.redis_server import PrivateRedis, shared_redis


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", "redis"])
def state(request: pytest.FixtureRequest) -> Iterator[State]:
    if request.param == "memory":
        yield MemoryState()
        return
    url, prefix = shared_redis()
    store = open_state(url, prefix=prefix)
    yield store
    store.close()


def run(coroutine):  # type: ignore[no-untyped-def]
    return asyncio.run(coroutine)


def test_values_flags_and_counters(state: State) -> None:
    async def scenario() -> None:
        assert await state.get("a") is None
        await state.put("a", b"1", ttl_s=60)
        assert await state.get("a") == b"1"
        assert await state.add("a", b"2", ttl_s=60) is False
        assert await state.add("b", b"2", ttl_s=60) is True
        assert await state.exists("b") and not await state.exists("c")
        await state.delete("b")
        assert not await state.exists("b")
        first = await state.count("n", window_s=60)
        second = await state.count("n", window_s=60, amount=5)
        peek = await state.count("n", window_s=60, amount=0)
        assert (first.value, second.value, peek.value) == (1, 6, 6)
        assert 0 < peek.expires_in_s <= 60
        assert await state.get("n") == b"6"

    run(scenario())


def test_maps_add_once_and_count(state: State) -> None:
    async def scenario() -> None:
        assert await state.map_get("m", ["x"], ttl_s=60) == [None]
        assert await state.map_add("m", {"x": b"1", "y": b"2"}, ttl_s=60) == [True, True]
        assert await state.map_add("m", {"x": b"9", "z": b"3"}, ttl_s=60) == [False, True]
        assert await state.map_get("m", ["x", "y", "z", "w"], ttl_s=60) == [b"1", b"2", b"3", None]
        assert [await state.map_count("m", {"n:EMAIL": 1}, ttl_s=60) for _ in range(3)] == [{"n:EMAIL": 1}, {"n:EMAIL": 2}, {"n:EMAIL": 3}]
        assert await state.map_count("m", {"n": 3, "n:EMAIL": 2}, ttl_s=60) == {"n": 3, "n:EMAIL": 5}

    run(scenario())


def test_messages_reach_subscribers(state: State) -> None:
    async def scenario() -> list[bytes]:
        got: list[bytes] = []
        ready = asyncio.Event()
        task = asyncio.create_task(state.subscribe("stop", got.append, ready=ready.set))
        await asyncio.wait_for(ready.wait(), 5)
        await state.publish("stop", b"support-bot")
        for _ in range(100):
            if got:
                break
            await asyncio.sleep(0.02)
        task.cancel()
        return got

    assert run(scenario()) == [b"support-bot"]


def test_in_process_entries_expire_with_their_window() -> None:
    clock = Clock()
    state = MemoryState(clock=clock)

    async def scenario() -> None:
        await state.put("flag", b"1", ttl_s=10)
        assert await state.count("n", window_s=10) == Count(1, 10.0)
        await state.map_add("m", {"x": b"1"}, ttl_s=10)
        clock.now += 9
        await state.map_get("m", ["x"], ttl_s=10)  # a use refreshes a map's time to live
        clock.now += 2
        assert await state.get("flag") is None
        assert (await state.count("n", window_s=10)).value == 1  # a new window
        assert await state.map_get("m", ["x"], ttl_s=10) == [b"1"]

    run(scenario())


def test_in_process_state_is_bounded() -> None:
    state = MemoryState(max_keys=3)

    async def scenario() -> None:
        for key in "abcd":
            await state.put(key, b"1", ttl_s=60)
        assert [await state.exists(key) for key in "abcd"] == [False, True, True, True]

    run(scenario())


def test_an_unreachable_redis_is_a_state_error_and_recovery_needs_nothing(tmp_path: Path) -> None:
    server = PrivateRedis(tmp_path)
    state = RedisState(server.url, timeout_s=0.2)

    async def scenario() -> None:
        with pytest.raises(StateError):
            await state.put("a", b"1", ttl_s=60)
        server.start()
        try:
            await state.put("a", b"1", ttl_s=60)
            server.stop()
            with pytest.raises(StateError):
                await state.get("a")
            server.start()  # empty again: Redis here keeps nothing on disk
            assert await state.get("a") is None
        finally:
            server.stop()

    run(scenario())
    assert "127.0.0.1" not in repr(state)
