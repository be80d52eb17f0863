import threading
import time

from aimsguard.collectors import EventBus, ExportResult, InMemoryExporter


class _Gate:
    """An exporter that waits until released, to fill the queue behind it."""

    name = "gate"

    def __init__(self) -> None:
        self.release = threading.Event()
        self.batches: list[list] = []

    def export(self, batch):
        self.release.wait(5)
        self.batches.append(list(batch))
        return ExportResult.SUCCESS

    def force_flush(self, timeout: float = 10.0) -> bool:
        return True

    def shutdown(self) -> None:
        pass


class _Broken:
    name = "broken"

    def export(self, batch):
        raise OSError("sink is down")

    def force_flush(self, timeout: float = 10.0) -> bool:
        return True

    def shutdown(self) -> None:
        pass


def test_every_exporter_gets_every_event_in_order() -> None:
    one, two = InMemoryExporter(), InMemoryExporter()
    bus = EventBus([one, two], batch_size=7)
    for i in range(100):
        bus.emit({"event": "e", "n": i})
    assert bus.force_flush(5)
    assert [e["n"] for e in one.events()] == list(range(100)) == [e["n"] for e in two.events()]
    bus.shutdown()


def test_a_full_queue_drops_the_oldest_and_counts_it() -> None:
    gate = _Gate()
    drops: list[str] = []
    bus = EventBus([gate], max_queue=10, batch_size=1, flush_interval_s=0.01, on_drop=drops.append)
    bus.emit({"n": -1})
    time.sleep(0.1)  # the worker is now stuck in the gate with event -1
    started = time.perf_counter()
    for i in range(50):
        bus.emit({"n": i})
    assert time.perf_counter() - started < 0.05  # emit never waits on the exporter
    gate.release.set()
    assert bus.force_flush(5)
    delivered = [e["n"] for batch in gate.batches for e in batch]
    assert delivered == [-1, *range(40, 50)]
    assert bus.dropped == 40 and drops == ["queue_full"] * 40
    bus.shutdown()


def test_a_failing_exporter_is_counted_and_does_not_stop_the_others() -> None:
    good = InMemoryExporter()
    failures: list[str] = []
    bus = EventBus([_Broken(), good], on_export_failure=failures.append)
    bus.emit({"n": 1})
    assert bus.force_flush(5)
    assert [e["n"] for e in good.events()] == [1]
    assert bus.export_failures["broken"] == 1 and failures == ["broken"]
    bus.shutdown()
    bus.shutdown()  # idempotent
    bus.emit({"n": 2})  # after shutdown: dropped and counted, never raised
    assert bus.dropped == 1
