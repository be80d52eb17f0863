"""Twenty reviewers (each with its own engine and connection pool, as replicas would be)
drain one queue at once: every ticket is claimed exactly once."""

from __future__ import annotations

import collections
import threading
import time
from pathlib import Path

import pytest

from aimsguard.collectors.records import RecordsStore

from ..records_db import BACKENDS, database_url

WORKERS = 20
TICKETS = 200


@pytest.mark.parametrize("backend", BACKENDS)
def test_twenty_workers_never_claim_a_ticket_twice(backend: str, tmp_path: Path) -> None:
    with database_url(backend, tmp_path) as url:
        setup = RecordsStore(url)
        setup.upgrade()
        created = {
            setup.create_handoff(
                system=f"s{i % 3}", request_id=f"r{i}", conversation_id=f"c{i}", principal=None, reason="test", verdicts=[], conversation=[]
            ).id
            for i in range(TICKETS)
        }
        claims: dict[str, list[str]] = collections.defaultdict(list)
        errors: list[BaseException] = []
        lock = threading.Lock()
        start = threading.Barrier(WORKERS + 1)

        def work(reviewer: str) -> None:
            store = RecordsStore(url)  # its own engine: separate connections, like another replica
            try:
                start.wait()
                while (handoff := store.claim_next(reviewer)) is not None:
                    with lock:
                        claims[handoff.id].append(reviewer)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)
            finally:
                store.dispose()

        threads = [threading.Thread(target=work, args=(f"reviewer-{i}",)) for i in range(WORKERS)]
        for thread in threads:
            thread.start()
        start.wait()
        began = time.perf_counter()
        for thread in threads:
            thread.join(60)
        elapsed = time.perf_counter() - began

        assert not errors, errors
        assert set(claims) == created
        twice = {handoff_id: who for handoff_id, who in claims.items() if len(who) != 1}
        assert not twice, f"claimed more than once: {twice}"
        assert setup.queued_counts() == {}
        stored = {h.id: h.claimed_by for h in setup.list_handoffs(status="claimed", limit=TICKETS + 1)}
        assert stored == {handoff_id: who[0] for handoff_id, who in claims.items()}
        workers_used = len({who[0] for who in claims.values()})
        print(f"\n{backend}: {TICKETS} claims by {WORKERS} workers ({workers_used} got some) in {elapsed:.3f}s = {TICKETS / elapsed:.0f} claims/s")
        setup.dispose()
