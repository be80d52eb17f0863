"""The vault a fleet shares: numbering in one round trip, and two replicas racing on a value."""

import asyncio

import pytest

from aimsguard.collectors._state import MemoryState
from aimsguard.guardrails.pii._vault import SharedVault, SharedVaultConfig, VaultFull

KEY = bytes(range(32))


def _vault(state: MemoryState, max_values: int = 1_000) -> SharedVault:
    return SharedVault(SharedVaultConfig(state=state, key=KEY, namespace="bot", fail_closed=True), ttl_s=60, max_values=max_values)


class _CountingState(MemoryState):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    async def map_get(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.calls.append("get")
        return await super().map_get(*args, **kwargs)

    async def map_count(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.calls.append("count")
        return await super().map_count(*args, **kwargs)

    async def map_add(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.calls.append("add")
        return await super().map_add(*args, **kwargs)


def test_new_values_are_numbered_per_type_in_three_round_trips_whatever_their_number() -> None:
    async def scenario() -> None:
        state = _CountingState()
        vault = _vault(state)
        items = [("EMAIL_ADDRESS", "a@x.example"), ("PERSON", "Jane Doe"), ("EMAIL_ADDRESS", "b@x.example"), ("PERSON", "Jane Doe")]
        first = await vault.placeholders("c1", items)
        assert first == {
            ("EMAIL_ADDRESS", "a@x.example"): "<EMAIL_ADDRESS_1>", ("PERSON", "Jane Doe"): "<PERSON_1>",
            ("EMAIL_ADDRESS", "b@x.example"): "<EMAIL_ADDRESS_2>",
        }
        assert state.calls == ["get", "count", "add"]
        again = await vault.placeholders("c1", [("EMAIL_ADDRESS", "b@x.example"), ("EMAIL_ADDRESS", "c@x.example")])
        assert again == {("EMAIL_ADDRESS", "b@x.example"): "<EMAIL_ADDRESS_2>", ("EMAIL_ADDRESS", "c@x.example"): "<EMAIL_ADDRESS_3>"}
        restored, known = await vault.lookup("c1", ["<EMAIL_ADDRESS_3>", "<PERSON_1>", "<PERSON_9>"], ["Jane Doe", "nobody"])
        assert restored == {"<EMAIL_ADDRESS_3>": "c@x.example", "<PERSON_1>": "Jane Doe"} and known == {"Jane Doe"}

    asyncio.run(scenario())


def test_two_replicas_numbering_the_same_value_at_once_agree_on_the_first_ones_placeholder() -> None:
    async def scenario() -> None:
        shared = MemoryState()
        release = asyncio.Event()

        class Slow(MemoryState):  # replica A's view: its add waits until B has numbered and added
            def __getattr__(self, name):  # type: ignore[no-untyped-def]
                return getattr(shared, name)

            async def map_get(self, *a, **k):  # type: ignore[no-untyped-def]
                return await shared.map_get(*a, **k)

            async def map_count(self, *a, **k):  # type: ignore[no-untyped-def]
                return await shared.map_count(*a, **k)

            async def map_add(self, *a, **k):  # type: ignore[no-untyped-def]
                await release.wait()
                return await shared.map_add(*a, **k)

        a, b = _vault(Slow()), _vault(shared)
        item = [("PERSON", "Jane Doe")]
        racing = asyncio.create_task(a.placeholders("c1", item))
        await asyncio.sleep(0)  # A has its number (1) and waits to add
        won = await b.placeholders("c1", item)  # B numbers it 2 and adds first
        release.set()
        lost = await racing
        assert won == lost == {("PERSON", "Jane Doe"): "<PERSON_2>"}
        restored, _ = await b.lookup("c1", ["<PERSON_2>"], [])
        assert restored == {"<PERSON_2>": "Jane Doe"}

    asyncio.run(scenario())


def test_a_conversation_over_its_value_limit_is_refused() -> None:
    async def scenario() -> None:
        vault = _vault(MemoryState(), max_values=2)
        await vault.placeholders("c1", [("PERSON", "A B"), ("PERSON", "C D")])
        with pytest.raises(VaultFull):
            await vault.placeholders("c1", [("PERSON", "E F")])

    asyncio.run(scenario())
